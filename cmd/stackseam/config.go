package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/store"
)

// errConfig marks a missing or invalid setting: the command exits with the
// usage code, since running it again the same way cannot work.
var errConfig = errors.New("configuration")

// configError returns an error wrapping errConfig.
func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errConfig, fmt.Sprintf(format, args...))
}

// exitCode maps an error of a command to its exit code.
func exitCode(err error) int {
	if errors.Is(err, errConfig) {
		return exitUsage
	}
	return exitFail
}

// first returns the first non-empty value.
func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// outputFlag is --output: text for people, json for scripts.
type outputFlag struct{ format string }

func (o *outputFlag) register(fs *flag.FlagSet) {
	o.format = "text"
	fs.Func("output", "`FORMAT` of the result: text or json (default text)", func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("want text or json, not %q", v)
		}
		o.format = v
		return nil
	})
}

func (o *outputFlag) json() bool { return o.format == "json" }

// printJSON prints v as indented JSON on stdout and returns cmd's exit code.
func printJSON(c *cli, cmd *command, v any) int {
	if err := writeJSON(c.stdout, v); err != nil {
		return fail(c, cmd, err)
	}
	return exitOK
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// awsFlags say which AWS account, region and endpoint to talk to.
type awsFlags struct {
	profile, region, endpoint string
}

func (f *awsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.profile, "profile", "", "AWS shared-config `PROFILE` (default $AWS_PROFILE)")
	fs.StringVar(&f.region, "region", "", "AWS `REGION` (default $AWS_REGION)")
	fs.StringVar(&f.endpoint, "endpoint-url", "", "AWS endpoint `URL` for every service, e.g. a local emulator (default $AWS_ENDPOINT_URL)")
}

// config loads the AWS SDK configuration the usual way (environment, shared
// files, instance roles), with the flags taking precedence. Values the SDK
// would read from the environment are read through c.getenv as well, so an
// in-process test can supply them.
func (f *awsFlags) config(ctx context.Context, c *cli) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if p := first(f.profile, c.getenv("AWS_PROFILE")); p != "" {
		opts = append(opts, config.WithSharedConfigProfile(p))
	}
	if r := first(f.region, c.getenv("AWS_REGION"), c.getenv("AWS_DEFAULT_REGION")); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if e := first(f.endpoint, c.getenv("AWS_ENDPOINT_URL")); e != "" {
		opts = append(opts, config.WithBaseEndpoint(e))
	}
	if id := c.getenv("AWS_ACCESS_KEY_ID"); id != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(
			id, c.getenv("AWS_SECRET_ACCESS_KEY"), c.getenv("AWS_SESSION_TOKEN"))))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, configError("error loading the AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		return cfg, configError("no AWS region: set --region or AWS_REGION")
	}
	return cfg, nil
}

// serviceEndpoint returns the endpoint override of one AWS service: the SDK's
// AWS_ENDPOINT_URL_<SERVICE> (read through c.getenv, so an in-process test can
// point each service at its own fake), unless --endpoint-url names one for
// every service. "" means the configuration's.
func (f *awsFlags) serviceEndpoint(c *cli, service string) *string {
	if f.endpoint != "" {
		return nil
	}
	if e := c.getenv("AWS_ENDPOINT_URL_" + service); e != "" {
		return &e
	}
	return nil
}

// queueKind is one of the queues the CLI sends to: the event queue (send, retry, complete) or
// the approvals queue (approve, reject), each named by a flag, a variable or a stack output.
type queueKind struct {
	what, flag, env, output string
	url                     func(*deployment) string
}

var (
	eventQueue     = &queueKind{"event queue", "queue-url", "EVENT_QUEUE_URL", deployed.OutputEventQueueURL, func(d *deployment) string { return d.queueURL }}
	approvalsQueue = &queueKind{"approvals queue", "approval-queue-url", "APPROVAL_QUEUE_URL", deployed.OutputApprovalQueueURL, func(d *deployment) string { return d.approvalURL }}
)

// noQueueError says nothing names the queue a command sends to: a wrong command line.
type noQueueError struct{ kind *queueKind }

func (e *noQueueError) Error() string {
	return fmt.Sprintf("no %s: set --%s or %s, or --stack-name or %s", e.kind.what, e.kind.flag, e.kind.env, deployed.EnvStackName)
}

// Is makes a noQueueError a configuration error (exitCode).
func (e *noQueueError) Is(target error) bool { return target == errConfig }

// queueFlags name the queue a command publishes to (the event queue unless kind says otherwise):
// its URL, or the deployed stack whose outputs name it.
type queueFlags struct {
	kind  *queueKind
	aws   awsFlags
	url   string
	stack stackNameFlag
}

func (f *queueFlags) register(fs *flag.FlagSet) {
	if f.kind == nil {
		f.kind = eventQueue
	}
	fs.StringVar(&f.url, f.kind.flag, "", fmt.Sprintf("the %s's `URL` (default $%s)", f.kind.what, f.kind.env))
	f.stack.register(fs)
	f.aws.register(fs)
}

// resolve returns the queue's URL and the AWS configuration to reach it. A flag beats a
// variable; of two flags or two variables, the queue URL beats the stack name.
func (f *queueFlags) resolve(ctx context.Context, c *cli) (string, aws.Config, error) {
	url, stack := f.url, f.stack.name
	if url == "" && stack == "" {
		url, stack = c.getenv(f.kind.env), c.getenv(deployed.EnvStackName)
	}
	if url == "" && stack == "" {
		return "", aws.Config{}, &noQueueError{f.kind}
	}
	cfg, err := f.aws.config(ctx, c)
	if err != nil {
		return "", cfg, err
	}
	if url != "" {
		return url, cfg, nil
	}
	d, err := lookupDeployment(ctx, cfg, f.aws.serviceEndpoint(c, "CLOUDFORMATION"), stack)
	if err != nil {
		return "", cfg, err
	}
	url, err = d.need(f.kind.url(d), f.kind.output)
	return url, cfg, err
}

// resolveOrSay is resolve for a command: when the queue cannot be resolved it says why (nothing
// naming the queue is a usage error) and returns the exit code with ok false.
func (f *queueFlags) resolveOrSay(ctx context.Context, c *cli, cmd *command, fs *flag.FlagSet) (url string, cfg aws.Config, code int, ok bool) {
	url, cfg, err := f.resolve(ctx, c)
	var nq *noQueueError
	switch {
	case errors.As(err, &nq):
		return "", cfg, usageError(c, fs, "%v", nq), false
	case err != nil:
		fmt.Fprintf(c.stderr, "stackseam %s: %v\n", cmd.name, err)
		return "", cfg, exitCode(err), false
	}
	return url, cfg, exitOK, true
}

// send sends msg, the event named event, to the queue at url.
func (f *queueFlags) send(ctx context.Context, c *cli, cfg aws.Config, url, event string, msg queue.Outgoing) error {
	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if e := f.aws.serviceEndpoint(c, "SQS"); e != nil {
			o.BaseEndpoint = e
		}
	})
	err := queue.Send(ctx, client, url, []queue.Outgoing{msg})
	var se *queue.SendError
	if errors.As(err, &se) && len(se.Failures) == 1 {
		err = fmt.Errorf("error sending %s to %s: %w", event, url, se.Failures[0].Err)
	}
	return err
}

// databaseFlags say where the commands that read stacks read them: the state manager's database
// (local use, the demo), or a deployed stackseam's query function, invoked with the caller's
// own AWS credentials.
type databaseFlags struct {
	aws      awsFlags
	url      string
	secretID string
	stack    stackNameFlag
}

func (f *databaseFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "database-url", "", "PostgreSQL `URL` of the state manager's database (default $DATABASE_URL)")
	fs.StringVar(&f.secretID, "database-secret-id", "", "or the Secrets Manager `SECRET` holding its credentials in the RDS format (default $DATABASE_SECRET_ID)")
	f.stack.register(fs)
	f.aws.register(fs)
}

// reading is an opened command that reads the database (stacks, show, plan, history): the read
// API, the stack its arguments name, and the output format.
type reading struct {
	api query.API
	id  string
	out outputFlag
	// done releases the read API.
	done func()
}

// openReading registers the read flags (databaseFlags, outputFlag) on fs, which holds the
// command's own, parses args, checks that they name one stack (with stack) or nothing, and opens
// the read API (databaseFlags.api). When the command cannot go on it has said why, and r is nil
// and code the exit code; otherwise the caller calls r.done when finished.
func openReading(ctx context.Context, c *cli, cmd *command, fs *flag.FlagSet, args []string, stack bool) (r *reading, code int) {
	var db databaseFlags
	db.register(fs)
	r = &reading{}
	r.out.register(fs)
	if stack {
		var ok bool
		if r.id, code, ok = parseStack(c, fs, args); !ok {
			return nil, code
		}
	} else if code, ok := parseNoArgs(c, fs, args, ""); !ok {
		return nil, code
	}
	var err error
	if r.api, r.done, err = db.api(ctx, c); err != nil {
		fmt.Fprintf(c.stderr, "stackseam %s: %v\n", cmd.name, err)
		return nil, exitCode(err)
	}
	return r, exitOK
}

// parseStack parses args with fs and returns the one stack id they must name; when they do not
// (or help was asked for), ok is false and code the exit code.
func parseStack(c *cli, fs *flag.FlagSet, args []string) (id string, code int, ok bool) {
	pos, code, done := parseFlags(fs, args, c.stdout, c.stderr)
	if done {
		return "", code, false
	}
	if len(pos) != 1 {
		return "", usageError(c, fs, "name one stack"), false
	}
	return pos[0], exitOK, true
}

// parseNoArgs parses args with fs for a command that takes flags only; a positional argument is
// a usage error, told with hint after it (where the command's arguments are flags that look like
// they could be positional). When the command cannot go on (or help was asked for), ok is false
// and code the exit code.
func parseNoArgs(c *cli, fs *flag.FlagSet, args []string, hint string) (code int, ok bool) {
	pos, code, done := parseFlags(fs, args, c.stdout, c.stderr)
	if done {
		return code, false
	}
	if len(pos) > 0 {
		return usageError(c, fs, "unexpected argument %q%s", pos[0], hint), false
	}
	return exitOK, true
}

// api returns the read API: the query function of --stack-name, or a read-only reader on the
// database. A flag beats a variable; of two flags or two variables, the database beats the stack
// name. The caller calls done when finished.
func (f *databaseFlags) api(ctx context.Context, c *cli) (api query.API, done func(), err error) {
	api, _, done, err = f.connect(ctx, c)
	return api, done, err
}

// connect is api, and also returns the deployment the stack name found (nil when the database
// is read directly), for a command that needs more of its outputs.
func (f *databaseFlags) connect(ctx context.Context, c *cli) (api query.API, d *deployment, done func(), err error) {
	stack := f.stack.name
	direct := f.url != "" || f.secretID != ""
	if !direct && stack == "" {
		direct = c.getenv(store.EnvDatabaseURL) != "" || c.getenv(store.EnvSecretID) != ""
		if !direct {
			stack = c.getenv(deployed.EnvStackName)
		}
	}
	if direct || stack == "" {
		st, err := f.open(ctx, c)
		if err != nil {
			return nil, nil, nil, err
		}
		return query.NewReader(st), nil, st.Close, nil
	}
	cfg, err := f.aws.config(ctx, c)
	if err != nil {
		return nil, nil, nil, err
	}
	d, err = lookupDeployment(ctx, cfg, f.aws.serviceEndpoint(c, "CLOUDFORMATION"), stack)
	if err != nil {
		return nil, nil, nil, err
	}
	fn, err := d.need(d.queryFunction, deployed.OutputQueryFunctionName)
	if err != nil {
		return nil, nil, nil, err
	}
	lc := lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		if e := f.aws.serviceEndpoint(c, "LAMBDA"); e != nil {
			o.BaseEndpoint = e
		}
	})
	return query.NewClient(lc, fn), d, func() {}, nil
}

// open connects to the database, read-only: a URL wins over a secret, as in the functions. The
// caller closes the store.
func (f *databaseFlags) open(ctx context.Context, c *cli) (*store.Store, error) {
	// The CLI's reading commands cannot write, whatever they run.
	return f.openSession(ctx, c, true)
}

// openForImport connects as open does, but with a session that may write: `import` is the one
// command that stores stacks (and makes the schema and tables when they are missing).
func (f *databaseFlags) openForImport(ctx context.Context, c *cli) (*store.Store, error) {
	return f.openSession(ctx, c, false)
}

func (f *databaseFlags) openSession(ctx context.Context, c *cli, readOnly bool) (*store.Store, error) {
	// The same variables as the functions (DATABASE_SSLMODE and
	// DATABASE_SSLROOTCERT included), read the same way.
	cfg := store.ConfigFromEnv(c.getenv)
	cfg.MaxConns = 2
	cfg.ReadOnly = readOnly
	cfg.DatabaseURL = first(f.url, cfg.DatabaseURL)
	if cfg.DatabaseURL == "" {
		cfg.SecretID = first(f.secretID, cfg.SecretID)
		if cfg.SecretID == "" {
			return nil, configError("no database: set --database-url or DATABASE_URL, or --database-secret-id or DATABASE_SECRET_ID, or --stack-name or %s for a deployed stackseam", deployed.EnvStackName)
		}
		awsCfg, err := f.aws.config(ctx, c)
		if err != nil {
			return nil, err
		}
		cfg.Secrets = secretsmanager.NewFromConfig(awsCfg)
	}
	st, err := store.Open(ctx, cfg)
	if err != nil {
		return nil, configError("%v", err)
	}
	return st, nil
}
