package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/localenv"
)

// tpsPattern finds pgbench's result line.
var tpsPattern = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs pgbench on the database at dbURL with args and returns its
// output.
func (b *bench) pgbench(ctx context.Context, dbURL string, args ...string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	base := []string{"-h", u.Hostname(), "-p", u.Port(), "-U", u.User.Username()}
	cmd := exec.CommandContext(ctx, filepath.Join(b.pgBin, "pgbench"), append(append(base, args...), strings.TrimPrefix(u.Path, "/"))...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	// The TLS-only server's URLs carry a password and sslmode=verify-full
	// with the test CA: libpq takes them from the environment.
	if pw, ok := u.User.Password(); ok {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+pw)
	}
	q := u.Query()
	if m := q.Get("sslmode"); m != "" {
		cmd.Env = append(cmd.Env, "PGSSLMODE="+m)
	}
	if r := q.Get("sslrootcert"); r != "" {
		cmd.Env = append(cmd.Env, "PGSSLROOTCERT="+r)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// pgbenchTPS runs pgbench -N (the simple-update script: per transaction an
// UPDATE, a SELECT and an INSERT between BEGIN and END) with clients
// connections for the round's length.
func (b *bench) pgbenchTPS(ctx context.Context, dbURL string, clients int) (float64, error) {
	c := strconv.Itoa(clients)
	out, err := b.pgbench(ctx, dbURL, "-N", "-n", "-c", c, "-j", c, "-T", strconv.Itoa(b.o.seconds))
	if err != nil {
		return 0, err
	}
	m := tpsPattern.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no tps in pgbench's output:\n%s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// throughput compares the state manager's events per second with pgbench's
// transactions per second at the same concurrency, in alternating rounds on
// the same server.
func (b *bench) throughput(ctx context.Context) error {
	_, pgbenchURL, err := b.database("pgbench")
	if err != nil {
		return err
	}
	if _, err := b.pgbench(ctx, pgbenchURL, "-i", "-q", "-s", "10"); err != nil {
		return err
	}
	st, machines, err := b.newStore(ctx, "throughput", 10)
	if err != nil {
		return err
	}
	defer st.Close()
	// Warm up: connections, prepared statements, the machine cache.
	if _, err := runFor(ctx, st, machines, "warm", 8, time.Second, nil, benchBatch); err != nil {
		return err
	}

	if b.o.cpuProfile != "" {
		f, err := os.Create(b.o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := b.compare(ctx, st, machines, pgbenchURL, ""); err != nil {
		return err
	}
	// The same again with the server's CPUs apart from the clients', as deployed: in AWS the
	// state manager (Lambda) and the database (RDS) do not share CPUs, while above the state
	// manager's own CPU is CPU the database lacks.
	restore, err := separateCPUs(b.pg.PID())
	if err != nil {
		return err
	}
	defer func() { _ = restore() }() // on an early return; the end of the run reports a failure
	progress("the database server on its own CPUs from here on, the state manager and pgbench on the others")
	if err := b.compare(ctx, st, machines, pgbenchURL, ", server and clients on separate CPUs"); err != nil {
		return err
	}
	if err := restore(); err != nil {
		return fmt.Errorf("giving the server and the bench every CPU back: %w", err)
	}
	return nil
}

// benchBatch is the batch size of the batched throughput rows: the event-source mapping's
// batch size as deployed (StateManagerBatchSize), one event per stack.
const benchBatch = 10

// compare runs the state manager on st and pgbench -N on pgbenchURL in
// alternating rounds at 1 and 8 clients — the state manager one event at a
// time, pgbench, the state manager in batches — and adds a row for each; shape,
// if not empty, says how the server differs from the default one.
func (b *bench) compare(ctx context.Context, st *store.Store, machines *catalog.Catalog, pgbenchURL, shape string) error {
	for _, n := range []int{1, 8} {
		target := 0.80
		if n > 1 {
			target = 0.60
		}
		type series struct{ events, ratios, p50s, p99s, trips []float64 }
		var tps []float64
		variants := []struct {
			batch int
			label string
			s     series
		}{{1, "one event at a time", series{}}, {benchBatch, fmt.Sprintf("batches of %d (one event per stack)", benchBatch), series{}}}
		for round := range b.o.rounds {
			for v := range variants {
				if v == 1 {
					t, err := b.pgbenchTPS(ctx, pgbenchURL, n)
					if err != nil {
						return err
					}
					tps = append(tps, t)
					progress("  pgbench -N -c %d, round %d: %.0f tps", n, round+1, t)
				}
				r, err := runFor(ctx, st, machines, fmt.Sprintf("r%d-c%d-b%d", round, n, variants[v].batch), n,
					time.Duration(b.o.seconds)*time.Second, nil, variants[v].batch)
				if err != nil {
					return err
				}
				s := &variants[v].s
				s.events = append(s.events, r.perSecond())
				s.p50s = append(s.p50s, float64(r.p50.Microseconds())/1000)
				s.p99s = append(s.p99s, float64(r.p99.Microseconds())/1000)
				s.trips = append(s.trips, float64(r.trips)/float64(r.events))
				progress("  %d worker(s), %s, round %d: %.0f events/s (p50 %s, p99 %s, %.2f round trips/event)",
					n, variants[v].label, round+1, r.perSecond(), ms(r.p50), ms(r.p99), float64(r.trips)/float64(r.events))
			}
		}
		for _, v := range variants {
			for i := range v.s.events {
				v.s.ratios = append(v.s.ratios, v.s.events[i]/tps[i])
			}
			ratio := median(v.s.ratios)
			trips := "" // counted only on the connections openStore makes
			if t := median(v.s.trips); t > 0 {
				trips = fmt.Sprintf("; %.2f round trips", t)
			}
			b.add(row{
				measure: fmt.Sprintf("state manager, %d worker%s%s, %s: events/s (per event p50 / p99)",
					n, plural(n), shape, v.label),
				result: fmt.Sprintf("%s (%.2f / %.2f ms%s)", thousands(median(v.s.events)), median(v.s.p50s), median(v.s.p99s),
					trips),
				reference: fmt.Sprintf("pgbench -N -c %d: %s tps → %.0f%%", n, thousands(median(tps)), 100*ratio),
				target:    fmt.Sprintf("≥ %.0f%% of pgbench", 100*target),
				met:       verdict(ratio >= target),
			})
		}
	}
	return nil
}

// productionThroughput is throughput on the production shape: a TLS-only
// server with fsync and synchronous_commit on, as RDS runs, which the state
// manager reaches as deployed (a Secrets Manager secret, verify-full against
// the server's CA) and pgbench with PGSSLMODE=verify-full.
func (b *bench) productionThroughput(ctx context.Context) error {
	pg, err := localenv.StartPostgres(b.work, "bench-tls", localenv.TLSOnly(), localenv.Durable())
	if err != nil {
		return err
	}
	defer pg.Shutdown()
	pgbenchURL, err := pg.CreateDatabase(localenv.DatabaseName("bench_pgbench_tls"))
	if err != nil {
		return err
	}
	if _, err := b.pgbench(ctx, pgbenchURL, "-i", "-q", "-s", "10"); err != nil {
		return err
	}
	db, err := pg.CreateAppDatabase(localenv.DatabaseName("bench_tls"))
	if err != nil {
		return err
	}
	secrets := localenv.NewSecretsFake()
	defer secrets.Close()
	secrets.Put("bench/db", db.Secret())
	st, err := store.Open(ctx, store.Config{
		SecretID:    "bench/db",
		Secrets:     secretsmanager.NewFromConfig(localenv.AWSConfig(secrets.URL)),
		SSLRootCert: pg.RootCertPath(),
		MaxConns:    10,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	machines, err := benchMachines(b.work)
	if err != nil {
		return err
	}
	if _, err := runFor(ctx, st, machines, "warm", 8, time.Second, nil, benchBatch); err != nil {
		return err
	}
	return b.compare(ctx, st, machines, pgbenchURL, ", TLS-only server (verify-full), fsync + synchronous_commit on")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
