package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/user"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/query"
)

var consoleCommand = &command{
	name:    "console",
	args:    "",
	summary: "serve a web console: stacks live, each stack's story, machines drawn and edited",
	help: `
Serves a web app from this binary (nothing to install, nothing fetched from
the network): the stacks page (live, filterable, stuck stacks marked), each
stack's story (timeline, metadata, task logs from S3) and the machines (drawn
with the number of stacks in each state, and an editor that validates as you
type with the rules of ` + "`stackseam validate`" + `).

It reads stacks like ` + "`stackseam stacks`" + ` (same flags and variables:
the database, or with --stack-name a deployed stackseam's query function),
task logs from the satisfier's bucket (--bucket, $BUCKET, the stack's bucket
with --stack-name, or the bucket a run's log URL names) and machine files from
--machines-bucket ($MACHINES_BUCKET, under --machines-prefix) or else
--machines-dir ($MACHINES_DIR); with --stack-name and neither, from machines/
in the stack's bucket, else the folder machines.

It is read-only unless started with --allow-actions: then a person can send
an event the stack's state accepts, retry failed or pending tasks and save a
valid machine file, each after a confirmation; events carry the operator's
name (--operator, $STACKSEAM_OPERATOR, else the OS user) in their metadata
under "operator". Where the state waits for an approval (an event the
machine lists under approvals), Approve and Reject send it to the approvals
queue (--approval-queue-url, $APPROVAL_QUEUE_URL, else the one --stack-name
outputs) as ` + "`stackseam approve`" + ` does: with a comment and, in "by",
the AWS caller identity (else the operator's name).

It listens on 127.0.0.1:8080 by default. Bound to any other address it asks
for a random token, printed once in the URL to open; the browser keeps it in
a cookie after the first visit.

examples:
  stackseam console
  stackseam console --allow-actions --operator alice
  stackseam console --stack-name Stackseam
  stackseam console --listen 0.0.0.0:8080`,
	run: runConsole,
}

func runConsole(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	listen := fs.String("listen", "127.0.0.1:8080", "`ADDRESS` to serve on; anything but loopback requires a token")
	var f consoleFlags
	f.register(fs)
	if code, ok := parseNoArgs(c, fs, args, ""); !ok {
		return code
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return usageError(c, fs, "cannot listen on %s: %v", *listen, err)
	}
	defer ln.Close()
	f.loopback = isLoopback(ln.Addr())
	srv, closeSrv, err := newConsoleFromFlags(ctx, c, f)
	if err != nil {
		fmt.Fprintf(c.stderr, "stackseam %s: %v\n", cmd.name, err)
		return exitCode(err)
	}
	defer closeSrv()
	fmt.Fprintln(c.stdout, srv.banner("http://"+displayAddr(*listen, ln.Addr())))
	hs := &http.Server{Handler: srv.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(shut)
		return exitOK
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return exitOK
		}
		return fail(c, cmd, err)
	}
}

// consoleFlags are the console's settings: its flags, and whether it listens on loopback only.
type consoleFlags struct {
	db                                                               databaseFlags
	allow                                                            bool
	operator, logBucket, machinesDir, machinesBucket, machinesPrefix string
	queueURL, approvalURL                                            string
	loopback                                                         bool
}

func (f *consoleFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.allow, "allow-actions", false, "let the console send events, retry tasks and save machine files")
	fs.StringVar(&f.operator, "operator", "", "the `NAME` recorded with every action (default $STACKSEAM_OPERATOR, else the OS user)")
	fs.StringVar(&f.logBucket, "bucket", "", "the satisfier's `BUCKET`, holding task logs under logs/ (default $BUCKET)")
	fs.StringVar(&f.machinesDir, "machines-dir", "", "the `FOLDER` of machine files (default $MACHINES_DIR, else machines)")
	fs.StringVar(&f.machinesBucket, "machines-bucket", "", "the `BUCKET` of machine files, instead of a folder (default $MACHINES_BUCKET)")
	fs.StringVar(&f.machinesPrefix, "machines-prefix", "", "the `PREFIX` of machine files in --machines-bucket (default $MACHINES_PREFIX, else machines/)")
	fs.StringVar(&f.queueURL, "queue-url", "", "the event queue's `URL`, for actions (default $EVENT_QUEUE_URL, else the one --stack-name outputs)")
	fs.StringVar(&f.approvalURL, "approval-queue-url", "", "the approvals queue's `URL`, for Approve and Reject (default $APPROVAL_QUEUE_URL, else the one --stack-name outputs)")
	f.db.register(fs)
}

// newConsoleFromFlags connects what the console reads and, with actions, what it writes. Stacks
// are read through the read API: a read-only reader on the database, or with --stack-name the
// deployed query function, whose stack outputs also name the queue and the bucket (logs,
// machines/) unless flags or variables do. AWS is needed for S3 (logs, machines in a bucket) and
// the queue; without an AWS configuration the console still serves the database's view, and says
// what is missing.
func newConsoleFromFlags(ctx context.Context, c *cli, f consoleFlags) (*consoleServer, func(), error) {
	api, d, done, err := f.db.connect(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	if d == nil {
		d = &deployment{}
	}
	srv := &consoleServer{
		data:         consoleData{api: api},
		allowActions: f.allow,
		operator:     first(f.operator, c.getenv("STACKSEAM_OPERATOR"), osUser()),
		now:          c.now,
		poll:         time.Second,
		logBucket:    first(f.logBucket, c.getenv("BUCKET"), d.bucket),
	}
	if _, remote := api.(*query.Client); remote {
		// Each look for changes is a Lambda invocation billed to the deployment.
		srv.poll = remotePollInterval
	}
	if !f.loopback {
		srv.token = randomHex(24)
	}
	srv.csrf = randomHex(24)
	awsCfg, awsErr := f.db.aws.config(ctx, c)
	dir := first(f.machinesDir, c.getenv("MACHINES_DIR"))
	bucket := first(f.machinesBucket, c.getenv("MACHINES_BUCKET"))
	if bucket == "" && dir == "" {
		bucket = d.bucket // the deployed state manager's machines/
	}
	switch {
	case bucket != "" && awsErr != nil:
		done()
		return nil, nil, awsErr
	case bucket != "":
		srv.machines = &s3Machines{client: newS3Client(awsCfg), bucket: bucket,
			prefix: folderPrefix(first(f.machinesPrefix, c.getenv("MACHINES_PREFIX"), "machines/"))}
	default:
		srv.machines = dirMachines{dir: first(dir, "machines")}
	}
	if awsErr == nil {
		srv.logs = &s3Logs{client: newS3Client(awsCfg)}
	} else {
		srv.logsMissing = awsErr.Error()
	}
	if f.allow {
		url := first(f.queueURL, c.getenv("EVENT_QUEUE_URL"), d.queueURL)
		if url == "" {
			done()
			return nil, nil, configError("--allow-actions needs the event queue: set --queue-url or EVENT_QUEUE_URL, or --stack-name or %s", deployed.EnvStackName)
		}
		if awsErr != nil {
			done()
			return nil, nil, awsErr
		}
		srv.publish = sqsPublisher(sqs.NewFromConfig(awsCfg), url)
		// Approvals are optional: without their queue the page says why it offers none.
		if approvals := first(f.approvalURL, c.getenv("APPROVAL_QUEUE_URL"), d.approvalURL); approvals != "" {
			srv.approve = sqsPublisher(sqs.NewFromConfig(awsCfg), approvals)
			srv.approver, _ = approver(ctx, awsCfg, srv.operator)
		} else {
			srv.approvalsMissing = "no approvals queue: set --approval-queue-url or APPROVAL_QUEUE_URL, or --stack-name or " + deployed.EnvStackName
		}
	}
	return srv, done, nil
}

// banner is what the console prints when it starts: where to open it and what it allows. The
// token is printed here and nowhere else.
func (s *consoleServer) banner(base string) string {
	mode := "read-only (start with --allow-actions to send events, retry tasks and save machines)"
	if s.allowActions {
		mode = "actions allowed, recorded as operator " + s.operator
		if s.approve != nil {
			mode += "; approvals signed by " + s.approver
		} else {
			mode += "; approvals off (" + first(s.approvalsMissing, "no approvals queue") + ")"
		}
	}
	url := base + "/"
	if s.token != "" {
		url += "?token=" + s.token
		return fmt.Sprintf("stackseam console: open %s\n"+
			"  bound beyond loopback, so every request needs this token (the browser keeps it in a cookie after the first visit);\n"+
			"  anyone with the URL can use the console: %s", url, mode)
	}
	return fmt.Sprintf("stackseam console: open %s\n  %s", url, mode)
}

// newS3Client is an S3 client for cfg: path-style addressing for an endpoint given by hand (an
// emulator has no bucket sub-domains), as the functions do.
func newS3Client(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = cfg.BaseEndpoint != nil })
}

// isLoopback reports whether a listener's address is reachable from this machine only.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// displayAddr is the host:port to print: the address as given, with the port the listener got
// (for ":0").
func displayAddr(given string, a net.Addr) string {
	host, _, err := net.SplitHostPort(given)
	tcp, ok := a.(*net.TCPAddr)
	if err != nil || !ok {
		return a.String()
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// randomHex returns n random bytes as hex: tokens a client cannot guess.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// folderPrefix ends a non-empty S3 prefix with "/", as the state manager's catalog does.
func folderPrefix(p string) string {
	if p != "" && p[len(p)-1] != '/' {
		p += "/"
	}
	return p
}

// validMachineName reports whether name can name a machine file.
func validMachineName(name string) bool {
	n, ok := machine.NameFromFile(name + ".yml")
	return ok && n == name
}
