// Command bench measures stackseam against the targets of its reliability
// and speed issue, each next to the reference it is judged by, measured in the
// same run on the same machine, and prints one table (Markdown) on stdout;
// progress goes to stderr. It starts what it needs itself — a throwaway
// PostgreSQL cluster, the SQS/S3 emulator, a fake Lambda endpoint — like the
// tests do (`make deps` first). `make bench` runs it.
//
//	go run ./test/bench [-rounds 3] [-seconds 8] [-stacks 200] [-stored 100000] [-only STEP,…] [-cpuprofile FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/test/localenv"
)

type options struct {
	rounds     int
	seconds    int
	stacks     int
	stored     int
	starts     int
	cpuProfile string
	only       string
	baseline   string
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each throughput figure and its reference; the table shows medians")
	flag.IntVar(&o.seconds, "seconds", 8, "length of one throughput round, state manager and pgbench alike")
	flag.IntVar(&o.stacks, "stacks", 200, "stacks whose LAUNCH → RUN latency is measured")
	flag.IntVar(&o.stored, "stored", 100000, "stacks stored in the large database of the scale figure")
	flag.IntVar(&o.starts, "starts", 7, "starts of each binary for the cold-start figure")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the in-process state manager's throughput rounds to this file")
	flag.StringVar(&o.only, "only", "", "run only these steps, comma-separated: throughput, production, roundtrips, scale, latency, coldstart, zips, terraform, handover (default: all)")
	flag.StringVar(&o.baseline, "baseline", "", "a checkout of another revision (git archive REV | tar -x -C DIR): the latency, cold start and zip rows also measure its functions, in the same run, as the reference")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is the environment every measurement shares.
type bench struct {
	o     options
	root  string
	work  string
	pg    *localenv.Postgres
	emu   *localenv.Emulator
	sqs   *sqs.Client
	pgBin string
	// bins are the host builds of the functions, by package name.
	bins map[string]string
	rows []row
}

// row is one line of the table.
type row struct {
	measure, result, reference, target, met string
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, o options) error {
	b := &bench{o: o, bins: map[string]string{}}
	var err error
	if b.root, err = localenv.RepoRoot(); err != nil {
		return err
	}
	if b.work, err = localenv.NewWorkDir("stackseam-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)
	if b.pgBin, err = localenv.FindPGBinDir(); err != nil {
		return err
	}
	progress("starting PostgreSQL and the emulator; building the functions")
	if b.pg, err = localenv.StartPostgres(b.work, "bench"); err != nil {
		return err
	}
	defer b.pg.Shutdown()
	if b.emu, err = localenv.StartEmulator(b.root); err != nil {
		return err
	}
	defer b.emu.Stop()
	b.sqs = sqs.NewFromConfig(localenv.AWSConfig(b.emu.URL))
	for _, fn := range []string{"statemanager", "satisfier"} {
		out := filepath.Join(b.work, "bin", fn)
		if err := localenv.Build(b.root, out, "./functions/"+fn); err != nil {
			return err
		}
		b.bins[fn] = out
		if o.baseline != "" {
			out := filepath.Join(b.work, "bin-baseline", fn)
			if err := localenv.Build(o.baseline, out, "./functions/"+fn); err != nil {
				return fmt.Errorf("building the baseline: %w", err)
			}
			b.bins[fn+baselineSuffix] = out
		}
	}

	steps := []struct {
		id, name string
		fn       func(context.Context) error
	}{
		{"throughput", "throughput against pgbench", b.throughput},
		{"production", "throughput against pgbench on the production shape (TLS-only, durable)", b.productionThroughput},
		{"roundtrips", "database round trips per event", b.roundTrips},
		{"scale", "per-event time with 100 and many stacks stored", b.scale},
		{"latency", "LAUNCH → RUN latency through both binaries", b.latency},
		{"coldstart", "cold start", b.coldStart},
		{"zips", "function zip sizes", b.zipSizes},
		{"terraform", "Terraform task overhead against tofu by hand", b.terraformOverhead},
		{"handover", "hand-over latency to the one-task runner", b.handOverLatency},
	}
	only := map[string]bool{}
	for _, id := range strings.Split(o.only, ",") {
		if id = strings.TrimSpace(id); id != "" {
			only[id] = true
		}
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(only) > 0 && !only[s.id] {
			continue
		}
		progress("%s", s.name)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	b.print(os.Stdout)
	return nil
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }

// baselineSuffix marks the binaries built from -baseline in bench.bins.
const baselineSuffix = "@baseline"

// variants are the builds the latency, cold start and zip rows measure: this tree's, and the
// baseline's when one is given (suffix baselineSuffix).
func (b *bench) variants() []string {
	if b.o.baseline == "" {
		return []string{""}
	}
	return []string{"", baselineSuffix}
}

// print writes the table, and a line saying how it was measured.
func (b *bench) print(w io.Writer) {
	fmt.Fprintln(w, "| measure | result | reference (same run) | target | met |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, r := range b.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.measure, r.result, r.reference, r.target, r.met)
	}
	fmt.Fprintf(w, "\n%d cores (%s/%s); throughput figures are medians of %d rounds of %d s; PostgreSQL 15 throwaway cluster over TCP on 127.0.0.1: plaintext with fsync off, except the rows marked TLS-only (verify-full, SCRAM, fsync, synchronous_commit and full_page_writes on).\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, b.o.rounds, b.o.seconds)
}

// database creates a database on the shared server and returns its name and URL.
func (b *bench) database(label string) (name, url string, err error) {
	name = localenv.DatabaseName("bench_" + label)
	url, err = b.pg.CreateDatabase(name)
	return name, url, err
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	var out strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out.WriteByte(',')
		}
		out.WriteRune(c)
	}
	return out.String()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
