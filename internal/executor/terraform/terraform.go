// Package terraform is the terraform executor: it runs a task's Terraform (or OpenTofu) files
// through hashicorp/terraform-exec — never a shell — against the S3 backend in the stackseam
// bucket (or the bucket the script's own backend block names), and keeps the full log in the
// stackseam bucket.
package terraform

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/executor/redact"
	"github.com/stackseam/stackseam/internal/message"
)

const (
	// DefaultStopGrace is the Runner's StopGrace when none is set: long enough for Terraform to
	// finish the resource calls in flight and write its state after SIGINT.
	DefaultStopGrace = 15 * time.Second
	// storeTimeout bounds storing the log, which happens after the run's own time is up.
	storeTimeout = 20 * time.Second
	// DefaultLockLease is the Runner's LockLease when none is set: Lambda's longest run plus the
	// default stop grace, the longest a run in Lambda can hold a state lock.
	DefaultLockLease = 15*time.Minute + DefaultStopGrace
	// lockPoll is how often a run waiting for a state lock looks at the lock file again.
	lockPoll = time.Second
)

// Runner runs terraform tasks: `config: {source, action, variables?}`. One Runner serves every
// run of a process; it is safe for concurrent use.
type Runner struct {
	// Binary is the path of the terraform or tofu executable. Required.
	Binary string
	// S3 reads S3 sources and stores the logs. Required.
	S3 *s3.Client
	// Bucket holds the logs, and the state (S3 backend) of every script whose backend block names
	// no bucket of its own (DeclaredBackend). Required.
	Bucket string
	// Region is the bucket's region, given to the S3 backend. Required.
	Region string
	// Endpoint, when set, is the S3 endpoint the backend uses instead of AWS's (an emulator); it
	// also turns on path-style addressing and turns off the checks only AWS can answer.
	Endpoint string
	// SourcesDir is the folder local sources are read from: a location is a path relative to
	// it, and nothing outside it (absolute paths, "..", symbolic links leading out) is read.
	// Defaults to the working directory.
	SourcesDir string
	// WorkDir is where the per-run work dirs are made (and removed). Defaults to os.TempDir().
	WorkDir string
	// PluginCacheDir is TF_PLUGIN_CACHE_DIR, kept across runs so a warm Lambda does not download
	// providers again. Defaults to stackseam-terraform-plugins in os.TempDir().
	PluginCacheDir string
	// StopGrace is how long Terraform has to stop after SIGINT (sent when the run's context
	// ends) before it is killed; the Dispatcher's Margin must leave room for it. Defaults to
	// DefaultStopGrace.
	StopGrace time.Duration
	// Environ is the environment Terraform runs with, less the variables terraform-exec manages
	// (TF_VAR_*, TF_CLI_ARGS*, TF_LOG*, TF_WORKSPACE…). Defaults to os.Environ().
	Environ []string
	// LockLease is the longest one run can hold a state lock: its time limit plus StopGrace. A
	// lock file older than this was left by a run that was killed (a crash, an out-of-memory
	// kill) and is removed; a younger one is waited for. When set it must exceed the longest time
	// limit a task can have, and it applies to every lock. When zero, a lock stackseam wrote is
	// judged by the time its own run could hold it (written in the lock: the run's deadline plus
	// StopGrace, up to 8 hours for a CodeBuild run), and any other lock by DefaultLockLease.
	LockLease time.Duration
	// Current, when set, reports whether a task's run is still current for its stack (the fence,
	// internal/fence); it is asked while the run holds the state lock, and a run that is not
	// current does not run Terraform and fails with executor.ErrStale.
	Current func(ctx context.Context, task message.Task) (bool, error)
	// Redact masks secrets in the stored log. Defaults to the secrets of Environ.
	Redact *redact.Redactor
	// Scope, when set, gives each run's Terraform credentials of its own (an assumed role whose
	// session policy reaches, in Bucket and the run's state bucket, only the run's machine's
	// objects) instead of the process's: see Scope. Unset (local runs, tests), Terraform runs
	// with the process's credentials, which reach whatever they reach.
	Scope *Scope
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// initMu serialises `init`: the plugin cache is not safe for concurrent writers.
	initMu sync.Mutex
	sweep  sync.Once
}

// Run runs one terraform task and stores its log, whatever the result. The error says what
// failed, with Terraform's error output; the returned Outcome carries the log's location in
// either case.
func (r *Runner) Run(ctx context.Context, task message.Task) (executor.Outcome, error) {
	started := time.Now()
	log := newRunLog(maxLogBytes)
	fmt.Fprintf(log, "stackseam: terraform task %s, run %s, stack %s (machine %s, state %s), started %s\n",
		task.Task.Name, task.TaskRunID, task.Stack.ID, task.Stack.Machine, task.Stack.State, started.UTC().Format(time.RFC3339))

	out, runErr := r.run(ctx, task, log)
	if runErr != nil && log.hasSecrets() {
		runErr = &redactedError{err: runErr, msg: log.redact(runErr.Error())}
	}
	if runErr != nil {
		fmt.Fprintf(log, "\nstackseam: FAILED after %s: %v\n", time.Since(started).Round(time.Millisecond), runErr)
	} else {
		for _, n := range out.Notes {
			fmt.Fprintf(log, "stackseam: note: %s\n", n)
		}
		fmt.Fprintf(log, "\nstackseam: finished after %s with %d output(s)\n", time.Since(started).Round(time.Millisecond), len(out.Outputs))
	}

	storeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	url, err := r.storeLog(storeCtx, LogKey(task), log)
	if err != nil {
		r.logger().WarnContext(ctx, "could not store the task log", "stackId", task.Stack.ID, "event", "TASK_LOG", "outcome", "log-not-stored", "task", task.Task.Name, "error", err.Error())
		if runErr != nil {
			return out, fmt.Errorf("%w (and the log could not be stored: %v)", runErr, err)
		}
		out.Notes = append(out.Notes, fmt.Sprintf("the log could not be stored: %v", err))
		return out, nil
	}
	out.Log = url
	return out, runErr
}

// run does the work of Run, writing what it does to log.
func (r *Runner) run(ctx context.Context, task message.Task, log *runLog) (executor.Outcome, error) {
	cfg, err := ParseConfig(task.Task.Config)
	if err != nil {
		return executor.Outcome{}, err
	}

	r.sweep.Do(func() { sweepWorkDirs(r.workDir()) })
	work, err := newWorkDir(r.workDir())
	if err != nil {
		return executor.Outcome{}, err
	}
	defer func() {
		if err := os.RemoveAll(work); err != nil {
			r.logger().WarnContext(ctx, "could not remove a work dir", "dir", work, "error", err.Error())
		}
	}()
	src := filepath.Join(work, "src")
	n, err := r.fetch(ctx, cfg.Source, src)
	if err != nil {
		return executor.Outcome{}, err
	}
	fmt.Fprintf(log, "stackseam: source %s: %d file(s)\n", cfg.Source, n)
	declared, err := DeclaredVariables(src)
	if err != nil {
		fmt.Fprintf(log, "stackseam: warning: %v; metadata goes only to the variables found\n", err)
	}
	vars, skipped, err := Variables(task.Stack.ID, task.Stack.Metadata, cfg.Variables, declared)
	if err != nil {
		return executor.Outcome{}, err
	}
	if len(skipped) > 0 {
		// Names only: metadata values may be anything, and logs are read widely.
		fmt.Fprintf(log, "stackseam: metadata the configuration does not declare, not passed: %s\n", strings.Join(skipped, ", "))
		r.logger().DebugContext(ctx, "metadata not passed to terraform: the configuration does not declare these variables",
			"stackId", task.Stack.ID, "task", task.Task.Name, "keys", skipped)
	}
	varsJSON, err := VarsFile(vars)
	if err != nil {
		return executor.Outcome{}, err
	}
	// Outside the source folder, so it cannot clash with the script's own files.
	varFile := filepath.Join(work, "stackseam.tfvars.json")
	if err := os.WriteFile(varFile, varsJSON, 0o600); err != nil {
		return executor.Outcome{}, fmt.Errorf("error writing the variable file: %w", err)
	}
	st := r.locate(src, task.Stack.Machine, task.Stack.ID, cfg.Source, log)
	fmt.Fprintf(log, "stackseam: state s3://%s/%s (region %s); variables: %s\n", st.Bucket, st.Key, st.Region, strings.Join(sortedKeys(vars), ", "))
	var inputs string
	if cfg.Action == ActionPlan || cfg.Plan != "" {
		// Before init, which adds its own files to the source folder. The state's whole location
		// (bucket and key: a script may name its own bucket) is part of what the plan was made from.
		if inputs, err = InputsDigest(st.Bucket+"/"+st.Key, varsJSON, src); err != nil {
			return executor.Outcome{}, err
		}
	}

	tf, stopEnv, err := r.terraform(ctx, task, st, src, log)
	if err != nil {
		return executor.Outcome{}, err
	}
	defer stopEnv()
	if err := r.init(ctx, tf, st); err != nil {
		return executor.Outcome{}, fmt.Errorf("terraform init failed: %w", err)
	}
	unlock, err := r.lock(ctx, st, task, log)
	if err != nil {
		return executor.Outcome{}, err
	}
	defer unlock()
	if err := r.adoptLegacyState(ctx, st, LegacyStateKey(task.Stack.Machine, task.Stack.ID, cfg.Source), log); err != nil {
		return executor.Outcome{}, err
	}
	if r.Current != nil {
		// Checked while holding the lock: see lock.
		current, err := r.Current(ctx, task)
		if err != nil {
			return executor.Outcome{}, fmt.Errorf("error checking that the run is current: %w", err)
		}
		if !current {
			fmt.Fprintf(log, "stackseam: run %s is no longer current for stack %s; Terraform not run\n", task.TaskRunID, task.Stack.ID)
			return executor.Outcome{}, executor.Stale(task)
		}
	}
	// The satisfier holds the lock itself (lock), so Terraform must not try to take it again.
	switch {
	case cfg.Action == ActionPlan:
		return r.plan(ctx, tf, task, varFile, work, inputs, log)
	case cfg.Action == ActionDrift:
		return r.drift(ctx, tf, task, varFile, work, log)
	case cfg.Plan != "":
		return r.applyPlan(ctx, tf, task, cfg.Plan, work, inputs, log)
	}
	if cfg.Action == ActionDestroy {
		if err := tf.Destroy(ctx, tfexec.VarFile(varFile), tfexec.Lock(false)); err != nil {
			return executor.Outcome{}, fmt.Errorf("terraform destroy failed: %w", err)
		}
		return executor.Outcome{}, nil
	}
	if err := tf.Apply(ctx, tfexec.VarFile(varFile), tfexec.Lock(false)); err != nil {
		return executor.Outcome{}, fmt.Errorf("terraform apply failed: %w", err)
	}
	return r.outputs(ctx, tf)
}

// lockInfo is OpenTofu's statemgr.LockInfo, the content of the S3 backend's lock file: the
// satisfier writes it in that form, so `tofu force-unlock` and an operator's own tofu runs
// understand a lock it holds.
type lockInfo struct {
	ID        string    `json:"ID"`
	Operation string    `json:"Operation"`
	Info      string    `json:"Info"`
	Who       string    `json:"Who"`
	Version   string    `json:"Version"`
	Created   time.Time `json:"Created"`
	Path      string    `json:"Path"`
}

// lock takes the state's lock file (LockKey) the way OpenTofu's S3 backend does — a PutObject
// with If-None-Match: *, which only one writer can win — and returns the function that releases
// it. The satisfier holds the lock itself, rather than leaving it to Terraform, so that it can
// check that its run is still current while holding it (Runner.Current): a destroy that was
// dispatched after this run was abandoned then either finds the lock held (and waits for this
// run to finish) or has already moved the fence on (and this run does not start).
//
// A lock held by another run is waited for until the run's time is up; a lock older than
// LockLease was left by a run that was killed (a crash, an out-of-memory kill) and is removed,
// since every later run of the stack would otherwise wait for it in vain.
func (r *Runner) lock(ctx context.Context, st stateLocation, task message.Task, log *runLog) (func(), error) {
	key := LockKey(st.Key)
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	// The lock says how long this run can hold it (its deadline plus the stop grace), so a waiter
	// judges it by the holder's own time limit — up to 8 hours for a CodeBuild run — rather than
	// its own lease.
	info := "task run " + task.TaskRunID
	if dl, ok := ctx.Deadline(); ok {
		info += heldUntilMark + dl.Add(r.stopGrace()).UTC().Format(time.RFC3339)
	}
	mine, err := json.Marshal(lockInfo{ID: id, Operation: "stackseam " + task.Task.Name,
		Info: info, Who: "stackseam@" + task.Stack.ID,
		Created: time.Now().UTC(), Path: st.Bucket + "/" + st.Key})
	if err != nil {
		return nil, fmt.Errorf("error encoding the state lock: %w", err)
	}
	announced := ""
	for {
		put, err := r.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key),
			Body: bytes.NewReader(mine), ContentType: aws.String("application/json"), IfNoneMatch: aws.String("*")}, st.in)
		if err == nil {
			fmt.Fprintf(log, "stackseam: state lock %s taken (s3://%s/%s)\n", id, st.Bucket, key)
			etag := aws.ToString(put.ETag)
			return func() { r.unlock(ctx, st, key, id, etag, log) }, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("the state is locked (s3://%s/%s)%s and the run's time ran out waiting: %w", st.Bucket, key, announced, ctx.Err())
		}
		if !preconditionFailed(err) {
			return nil, fmt.Errorf("error taking the state lock s3://%s/%s: %w", st.Bucket, key, err)
		}
		info, etag, found, err := r.readLock(ctx, st, key)
		if err != nil {
			return nil, err
		}
		lease := r.lockLease()
		if until, ok := heldUntil(info); ok && r.LockLease <= 0 {
			lease = until.Sub(info.Created)
		}
		switch age := time.Since(info.Created); {
		case !found:
			continue // released meanwhile: try again at once
		case age > lease:
			fmt.Fprintf(log, "stackseam: removing a stale state lock %s (%s, %s, created %s, %s ago, more than the %s its run can hold it)\n",
				info.ID, info.Operation, info.Info, info.Created.Format(time.RFC3339), age.Round(time.Second), lease.Round(time.Second))
			r.logger().WarnContext(ctx, "removing a stale terraform state lock", "key", key, "lockId", info.ID, "created", info.Created, "age", age.String())
			// Only that lock (If-Match): another waiter may have removed it and taken the lock meanwhile.
			_, err := r.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key), IfMatch: aws.String(etag)}, st.in)
			if err != nil && !preconditionFailed(err) && !notFound(err) {
				return nil, fmt.Errorf("error removing the stale state lock s3://%s/%s: %w", st.Bucket, key, err)
			}
			continue
		case announced == "":
			announced = fmt.Sprintf(", held by %s (%s, %s, created %s)", info.ID, info.Operation, info.Info, info.Created.Format(time.RFC3339))
			fmt.Fprintf(log, "stackseam: waiting for the state lock%s\n", announced)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the state is locked (s3://%s/%s)%s and the run's time ran out waiting: %w", st.Bucket, key, announced, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// heldUntilMark precedes, in a stackseam lock's Info, the time until which its run can hold it.
const heldUntilMark = ", held until "

// heldUntil reads the time until which a stackseam run can hold lock info; ok is false for a lock
// that does not say (an operator's own tofu run, an older stackseam), which is judged by the lease.
func heldUntil(info lockInfo) (time.Time, bool) {
	_, at, found := strings.Cut(info.Info, heldUntilMark)
	if !found {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, at)
	return t, err == nil && t.After(info.Created)
}

// unlock releases the lock id: a delete conditional on the ETag the lock was written with, so a
// lock that was removed as stale and taken by another run meanwhile is left alone. It runs after
// the run's time may be up.
func (r *Runner) unlock(ctx context.Context, st stateLocation, key, id, etag string, log *runLog) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	_, err := r.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key), IfMatch: aws.String(etag)}, st.in)
	switch {
	case err == nil:
	case preconditionFailed(err) || notFound(err):
		fmt.Fprintf(log, "stackseam: warning: the state lock %s was no longer held at the end of the run\n", id)
	default:
		fmt.Fprintf(log, "stackseam: warning: the state lock %s could not be released: %v\n", id, err)
		r.logger().WarnContext(ctx, "could not release a terraform state lock", "key", key, "lockId", id, "error", err.Error())
	}
}

// readLock reads a lock file and its ETag; found is false when there is none.
func (r *Runner) readLock(ctx context.Context, st stateLocation, key string) (info lockInfo, etag string, found bool, err error) {
	obj, err := r.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key)}, st.in)
	if err != nil {
		if notFound(err) {
			return info, "", false, nil
		}
		return info, "", false, fmt.Errorf("error reading the state lock s3://%s/%s: %w", st.Bucket, key, err)
	}
	defer obj.Body.Close()
	etag = aws.ToString(obj.ETag)
	if err := json.NewDecoder(obj.Body).Decode(&info); err != nil || info.Created.IsZero() {
		// Not a lock file this code understands: it is waited for until it is released or the run ends.
		return lockInfo{ID: "unreadable", Created: time.Now()}, etag, true, nil
	}
	return info, etag, true, nil
}

func notFound(err error) bool {
	var missing *s3types.NoSuchKey
	var apiErr smithy.APIError
	return errors.As(err, &missing) || (errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NoSuchKey" || apiErr.ErrorCode() == "NotFound"))
}

func preconditionFailed(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode() == "PreconditionFailed" || apiErr.ErrorCode() == "ConditionalRequestConflict")
}

func randomID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("error making a lock id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// terraform prepares the terraform-exec handle for one run's source folder, with the run's
// environment (RunEnv).
// stop ends what the run's environment needs while Terraform runs (its credentials endpoint);
// it is never nil.
func (r *Runner) terraform(ctx context.Context, task message.Task, st stateLocation, src string, log *runLog) (tf *tfexec.Terraform, stop func(), err error) {
	stop = func() {}
	tf, err = tfexec.NewTerraform(src, r.Binary)
	if err != nil {
		return nil, stop, fmt.Errorf("error preparing terraform (%s): %w", r.Binary, err)
	}
	tf.SetStdout(log)
	tf.SetStderr(log)
	tf.SetLogger(log)
	if err := tf.SetWaitDelay(r.stopGrace()); err != nil {
		return nil, stop, err
	}
	env, stop, err := r.runEnv(ctx, task, st, log)
	if err != nil {
		return nil, stop, err
	}
	if err := tf.SetEnv(env); err != nil {
		stop()
		return nil, func() {}, fmt.Errorf("error setting terraform's environment: %w", err)
	}
	return tf, stop, nil
}

func (r *Runner) init(ctx context.Context, tf *tfexec.Terraform, st stateLocation) error {
	if err := os.MkdirAll(r.pluginCacheDir(), 0o755); err != nil {
		return fmt.Errorf("error creating the plugin cache %s: %w", r.pluginCacheDir(), err)
	}
	var opts []tfexec.InitOption
	for _, c := range BackendConfig(st.Bucket, st.Region, st.Key, r.Endpoint) {
		opts = append(opts, tfexec.BackendConfig(c))
	}
	r.initMu.Lock()
	defer r.initMu.Unlock()
	return tf.Init(ctx, opts...)
}

// outputs reads the outputs after an apply. Sensitive outputs are not returned: they would
// travel through the queues and sit in the database; the notes say which were held back.
func (r *Runner) outputs(ctx context.Context, tf *tfexec.Terraform) (executor.Outcome, error) {
	// `output -json` prints sensitive values; they must not reach the stored log.
	tf.SetStdout(nil)
	metas, err := tf.Output(ctx)
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("terraform output failed: %w", err)
	}
	values := map[string]json.RawMessage{}
	var sensitive []string
	for name, m := range metas {
		if m.Sensitive {
			sensitive = append(sensitive, name)
			continue
		}
		values[name] = m.Value
	}
	outputs, notes, err := executor.FlatOutputs(values)
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("error reading terraform outputs: %w", err)
	}
	if len(sensitive) > 0 {
		slices.Sort(sensitive)
		notes = append(notes, fmt.Sprintf("sensitive outputs are not returned: %s", strings.Join(sensitive, ", ")))
	}
	return executor.Outcome{Outputs: outputs, Notes: notes}, nil
}

// fetch copies the source into dst and returns how many files it copied.
func (r *Runner) fetch(ctx context.Context, src Source, dst string) (int, error) {
	if src.Type == SourceS3 {
		return r.fetchS3(ctx, src.Bucket, src.Key, dst)
	}
	sources := r.SourcesDir
	if sources == "" {
		sources = "."
	}
	n, err := copyLocal(sources, src.Location, dst)
	if err != nil {
		return 0, fmt.Errorf("error copying the local source %s: %w", src.Location, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("the local source %s holds no files", src.Location)
	}
	return n, nil
}

// fetchS3 downloads every object under key, keeping sub-folders: key names a folder ("infra" or
// "infra/": everything under infra/, not infra-old/) or a single object.
func (r *Runner) fetchS3(ctx context.Context, bucket, key, dst string) (int, error) {
	folder := strings.TrimSuffix(key, "/") + "/"
	pages := s3.NewListObjectsV2Paginator(r.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("error listing the source s3://%s/%s: %w", bucket, key, err)
		}
		for _, obj := range page.Contents {
			k := aws.ToString(obj.Key)
			var rel string
			switch {
			case k == key && !strings.HasSuffix(k, "/"):
				rel = path.Base(k)
			case strings.HasPrefix(k, folder):
				rel = strings.TrimPrefix(k, folder)
			default:
				continue // shares the prefix only: infra-old/main.tf for infra
			}
			if rel == "" || strings.HasSuffix(rel, "/") {
				continue // a folder marker
			}
			if !filepath.IsLocal(filepath.FromSlash(rel)) {
				return n, fmt.Errorf("the source object s3://%s/%s would land outside the work dir", bucket, k)
			}
			if err := r.download(ctx, bucket, k, filepath.Join(dst, filepath.FromSlash(rel))); err != nil {
				return n, err
			}
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("the source s3://%s/%s holds no objects", bucket, key)
	}
	return n, nil
}

func (r *Runner) download(ctx context.Context, bucket, key, dst string) error {
	obj, err := r.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("error downloading the source object s3://%s/%s: %w", bucket, key, err)
	}
	defer obj.Body.Close()
	if err := writeFile(dst, obj.Body); err != nil {
		return fmt.Errorf("error downloading the source object s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}

// storeLog uploads the run's log, secrets masked, and returns its s3:// URL.
func (r *Runner) storeLog(ctx context.Context, key string, log *runLog) (string, error) {
	text := log.redact(r.redactor().String(log.String()))
	_, err := r.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(r.Bucket),
		Key:         aws.String(key),
		Body:        strings.NewReader(text),
		ContentType: aws.String("text/plain; charset=utf-8"),
	})
	if err != nil {
		return "", fmt.Errorf("error storing the log at s3://%s/%s: %w", r.Bucket, key, err)
	}
	return "s3://" + r.Bucket + "/" + key, nil
}

// Env returns the environment Terraform runs with: Environ without the variables
// terraform-exec manages itself, plus the plugin cache; CHECKPOINT_DISABLE (no call home) and
// HOME (a Lambda has none) unless set.
func (r *Runner) Env() (map[string]string, error) {
	environ := r.Environ
	if environ == nil {
		environ = os.Environ()
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	env = tfexec.CleanEnv(env)
	env["TF_PLUGIN_CACHE_DIR"] = r.pluginCacheDir()
	// Work dirs are fresh, so there is never a lock file recording the cached providers'
	// checksums; without this Terraform would download every provider on every run.
	setDefault(env, "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE", "true")
	setDefault(env, "CHECKPOINT_DISABLE", "1")
	setDefault(env, "HOME", os.TempDir())
	return env, nil
}

// runEnv is the environment of one run's Terraform: Env, and with a Scope the run's own
// credentials endpoint in place of every way to find the process's credentials. The endpoint's
// token and every session's secrets are kept in log, so they are masked in the stored log and in
// the run's error. stop stops the endpoint (a no-op without a Scope); call it when the run ends.
func (r *Runner) runEnv(ctx context.Context, task message.Task, st stateLocation, log *runLog) (env map[string]string, stop func(), err error) {
	stop = func() {}
	env, err = r.Env()
	if err != nil || r.Scope == nil {
		return env, stop, err
	}
	buckets := []string{r.Bucket}
	if st.Bucket != r.Bucket {
		buckets = append(buckets, st.Bucket)
	}
	e, note, err := r.Scope.endpoint(ctx, task, buckets, r.stopGrace(), func(c aws.Credentials) {
		log.addSecrets("AWS_SECRET_ACCESS_KEY="+c.SecretAccessKey, "AWS_SESSION_TOKEN="+c.SessionToken)
	})
	if err != nil {
		return nil, stop, err
	}
	// The AWS SDKs' default chains take credentials from the environment and the shared files
	// before a container endpoint: none of those may be left for them to find.
	for _, k := range credentialVariables {
		delete(env, k)
	}
	env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = e.URL
	env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = e.Token
	log.addSecrets("AWS_CONTAINER_AUTHORIZATION_TOKEN=" + e.Token)
	fmt.Fprintf(log, "stackseam: Terraform runs as %s (session %s), limited to s3://%s/%s/* in %s\n",
		r.Scope.RoleARN, SessionName(task.TaskRunID), r.Bucket, task.Stack.Machine, strings.Join(buckets, ", "))
	if note != "" {
		fmt.Fprintf(log, "stackseam: %s\n", note)
	}
	return env, func() {
		e.Close()
		fmt.Fprintf(log, "stackseam: Terraform's credentials endpoint answered %d request(s)\n", e.Served())
	}, nil
}

func setDefault(env map[string]string, k, v string) {
	if env[k] == "" {
		env[k] = v
	}
}

func (r *Runner) redactor() *redact.Redactor {
	if r.Redact != nil {
		return r.Redact
	}
	environ := r.Environ
	if environ == nil {
		environ = os.Environ()
	}
	return redact.FromEnviron(environ)
}

func (r *Runner) workDir() string {
	if r.WorkDir != "" {
		return r.WorkDir
	}
	return os.TempDir()
}

func (r *Runner) pluginCacheDir() string {
	if r.PluginCacheDir != "" {
		return r.PluginCacheDir
	}
	return filepath.Join(os.TempDir(), "stackseam-terraform-plugins")
}

func (r *Runner) stopGrace() time.Duration {
	if r.StopGrace > 0 {
		return r.StopGrace
	}
	return DefaultStopGrace
}

func (r *Runner) lockLease() time.Duration {
	if r.LockLease > 0 {
		return r.LockLease
	}
	return DefaultLockLease
}

func (r *Runner) logger() *slog.Logger {
	return cmp.Or(r.Logger, slog.Default())
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ReleaseDeadRun removes the state lock task's run holds, if it holds one: the run is known to be
// dead (its CodeBuild build ended without reporting), so the stack's next Terraform run need not
// wait until the time written in the lock. The delete is conditional on the lock read (If-Match),
// so a lock another run took meanwhile is left alone. It reports whether a lock was removed.
// The source is fetched again to find where the state lives: a script may name its own bucket.
func (r *Runner) ReleaseDeadRun(ctx context.Context, task message.Task) (bool, error) {
	cfg, err := ParseConfig(task.Task.Config)
	if err != nil {
		return false, err
	}
	work, err := newWorkDir(r.workDir())
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return false, fmt.Errorf("error making the source dir: %w", err)
	}
	if _, err := r.fetch(ctx, cfg.Source, src); err != nil {
		return false, err
	}
	st := r.locate(src, task.Stack.Machine, task.Stack.ID, cfg.Source, newRunLog(64<<10))
	key := LockKey(st.Key)
	info, etag, found, err := r.readLock(ctx, st, key)
	if err != nil || !found {
		return false, err
	}
	if run, _, _ := strings.Cut(info.Info, heldUntilMark); run != "task run "+task.TaskRunID {
		return false, nil
	}
	_, err = r.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key), IfMatch: aws.String(etag)}, st.in)
	if err != nil && !preconditionFailed(err) && !notFound(err) {
		return false, fmt.Errorf("error removing the state lock s3://%s/%s of dead run %s: %w", st.Bucket, key, task.TaskRunID, err)
	}
	return err == nil, nil
}
