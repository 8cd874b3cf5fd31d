package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

// t0 is when the recorded stacks start; the CLI's clock is set to now.
var (
	t0  = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	now = t0.Add(3 * time.Hour)
)

// recorder applies events to a real database through the store and the
// engine, as the state manager does, but at chosen times and with
// predictable run ids, so the CLI's output is stable.
type recorder struct {
	t        *testing.T
	ctx      context.Context
	url      string
	st       *store.Store
	machines map[string]*machine.Machine
	runs     int
	msgs     int
	// deadlines is the deadline policy events are applied with (none unless a test sets it).
	deadlines engine.Deadlines
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	url := harness.DatabaseURL(t)
	return newRecorderOn(t, url, store.Config{DatabaseURL: url})
}

// newRecorderOn is newRecorder on the database cfg reaches (url names it
// for the test's own queries).
func newRecorderOn(t *testing.T, url string, cfg store.Config) *recorder {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx)
	require.NoError(t, err)
	r := &recorder{t: t, ctx: ctx, url: url, st: st, machines: map[string]*machine.Machine{}}
	for _, name := range []string{"feature-env", "qa-env"} {
		m, err := catalog.ParseFile("../../machines/" + name + ".yml")
		require.NoError(t, err)
		r.machines[name] = m
	}
	return r
}

// apply applies ev at t0+at and returns the stack afterwards (nil when it
// is gone or was never made).
func (r *recorder) apply(at time.Duration, ev message.Event) *engine.Stack {
	r.t.Helper()
	r.msgs++
	id := fmt.Sprintf("m%d", r.msgs)
	res, err := r.st.Apply(r.ctx, store.ApplyInput{Key: id, StackID: ev.StackID, MessageID: id, Event: ev},
		func(cur *engine.Stack) (engine.Decision, error) {
			name := ev.Machine
			if cur != nil {
				name = cur.Machine
			}
			return engine.Apply(engine.Input{Stack: cur, Machine: r.machines[name], Event: ev, Now: t0.Add(at),
				NewRunID: func() string { r.runs++; return fmt.Sprintf("run-%d", r.runs) }, Deadlines: r.deadlines}), nil
		})
	require.NoError(r.t, err)
	return res.Decision.Stack
}

// runOf returns the current run id of a stack's task.
func runOf(s *engine.Stack, task string) string {
	for _, t := range s.Tasks {
		if t.Name == task {
			return t.RunID
		}
	}
	panic("no task " + task)
}

func result(stack *engine.Stack, task, event, description string, outputs message.Metadata) message.Event {
	return message.Event{StackID: stack.ID, Event: event, TaskRunID: runOf(stack, task), Description: description,
		Outputs: outputs, Task: &message.TaskSpec{Name: task}}
}

// record writes three stacks' lives: feature-123 from launch to removal
// (with a rejected event, a stale result, a failed destroy and its retry),
// feature-9 stuck on a failed destroy, and qa waiting on its deployment.
func (r *recorder) record() {
	min := time.Minute
	// Before the stack exists: rejected without a machine, so it never
	// reaches the history table.
	r.apply(-1*min, message.Event{StackID: "feature-123", Event: "LAUNCH"})
	// The store stamps rejections with the wall clock; pin this one.
	_, err := r.st.Pool().Exec(r.ctx, "UPDATE rejections SET at = $1 WHERE message_id = $2", t0.Add(-min), fmt.Sprintf("m%d", r.msgs))
	require.NoError(r.t, err)
	s := r.apply(0, message.Event{StackID: "feature-123", Event: "LAUNCH", Machine: "feature-env",
		Metadata: message.Metadata{"owner": "alice"}})
	s = r.apply(40*time.Second, result(s, "seed-database", message.EventTaskCompleted, "",
		message.Metadata{"databaseUrl": "postgres://db.internal/feature_123"}))
	s = r.apply(95*time.Second, result(s, "provision-infra", message.EventTaskCompleted, "",
		message.Metadata{"url": "https://feature-123.dev.example.com"}))
	r.apply(60*min, message.Event{StackID: "feature-123", Event: "ACCESS", Metadata: message.Metadata{"lastAccess": "2024-05-01T11:00:00Z"}})
	r.apply(65*min, message.Event{StackID: "feature-123", Event: "LAUNCH"})
	s = r.apply(120*min, message.Event{StackID: "feature-123", Event: "DESTROY"})
	failed := result(s, "destroy-infra", message.EventTaskError, "Error: deleting S3 bucket: BucketNotEmpty", nil)
	s = r.apply(120*min+30*time.Second, failed)
	s = r.apply(121*min, message.Event{StackID: "feature-123", Event: message.EventRetryFailedTasks})
	r.apply(121*min+10*time.Second, failed) // the old run's result again: stale
	r.apply(121*min+50*time.Second, result(s, "destroy-infra", message.EventTaskCompleted, "", nil))

	s = r.apply(30*min, message.Event{StackID: "feature-9", Event: "LAUNCH", Machine: "feature-env"})
	s = r.apply(31*min, result(s, "seed-database", message.EventTaskCompleted, "", nil))
	r.apply(32*min, result(s, "provision-infra", message.EventTaskCompleted, "", nil))
	s = r.apply(150*min, message.Event{StackID: "feature-9", Event: "DESTROY", Metadata: message.Metadata{"reason": "merged"}})
	ev := result(s, "destroy-infra", message.EventTaskError,
		"Error: deleting S3 bucket feature-9-assets: BucketNotEmpty\nThe bucket you tried to delete is not empty.", nil)
	ev.Log = "s3://stackseam/logs/feature-env/feature-9/destroy-infra/" + runOf(s, "destroy-infra") + ".log"
	r.apply(152*min, ev)

	r.apply(10*min, message.Event{StackID: "qa", Event: "LAUNCH", Machine: "qa-env", Metadata: message.Metadata{"appVersion": "2.4.1"}})
}

func (r *recorder) env() map[string]string { return map[string]string{"DATABASE_URL": r.url} }

func TestStacksShowAndHistoryOfRecordedStacks(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	r.record()
	env := r.env()
	check := func(name string, wantCode int, args ...string) string {
		t.Helper()
		code, stdout, stderr := runEnv(t, env, now, args...)
		require.Equal(t, wantCode, code, "%v: %s", args, stderr)
		if wantCode == exitOK {
			require.Empty(t, stderr, "%v", args)
			golden(t, name, stdout)
		}
		return stderr
	}
	check("stacks.txt", exitOK, "stacks")
	check("stacks.json", exitOK, "stacks", "--output", "json")
	check("stacks-feature-env.txt", exitOK, "stacks", "--machine", "feature-env", "--state", "DEPROVISION")
	check("show-feature-9.txt", exitOK, "show", "feature-9")
	check("show-feature-9.json", exitOK, "show", "feature-9", "--output", "json")
	check("show-qa.txt", exitOK, "show", "qa")
	check("history-feature-123.txt", exitOK, "history", "feature-123")
	check("history-feature-123.json", exitOK, "history", "--output", "json", "feature-123")
	check("history-qa.txt", exitOK, "history", "qa")

	stderr := check("", exitFail, "show", "feature-123")
	require.Equal(t, "stackseam show: stack feature-123 does not exist: it was removed at 2024-05-01 12:01:50 UTC "+
		"(`stackseam history feature-123` shows what happened)\n", stderr)
	stderr = check("", exitFail, "show", "nobody")
	require.Equal(t, "stackseam show: stack nobody does not exist\n", stderr)
	r.apply(0, message.Event{StackID: "ghost", Event: "LAUNCH", Machine: "no-such-machine"})
	stderr = check("", exitFail, "show", "ghost")
	require.Regexp(t, `stack ghost does not exist; 1 event\(s\) naming it were rejected, the last one at .* UTC: machine "no-such-machine" is not available`, stderr)
	stderr = check("", exitFail, "history", "nobody")
	require.Equal(t, "stackseam history: stack nobody has no history: no event ever named it\n", stderr)
	code, stdout, _ := runEnv(t, env, now, "history", "ghost")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "LAUNCH rejected: machine")
	require.Contains(t, stdout, "(the stack did not exist)")

	code, stdout, _ = runEnv(t, env, now, "stacks", "--state", "NOWHERE")
	require.Equal(t, exitOK, code)
	require.Equal(t, "no stacks\n", stdout)
	code, stdout, _ = runEnv(t, env, now, "stacks", "--state", "NOWHERE", "--output", "json")
	require.Equal(t, exitOK, code)
	require.Equal(t, "[]\n", stdout)
}

func TestFollowPrintsTheTimelineUntilTheStackIsRemoved(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	type outcome struct {
		code           int
		stdout, stderr string
	}
	done := make(chan outcome, 1)
	go func() {
		// Started before the stack exists: it waits for it.
		code, stdout, stderr := runEnv(t, r.env(), now, "history", "--follow", "feature-5")
		done <- outcome{code, stdout, stderr}
	}()
	time.Sleep(100 * time.Millisecond)
	s := r.apply(0, message.Event{StackID: "feature-5", Event: "LAUNCH", Machine: "feature-env"})
	time.Sleep(60 * time.Millisecond) // the follower sees this before the rest
	s = r.apply(time.Second, result(s, "seed-database", message.EventTaskCompleted, "", nil))
	r.apply(2*time.Second, result(s, "provision-infra", message.EventTaskCompleted, "", nil))
	s = r.apply(3*time.Second, message.Event{StackID: "feature-5", Event: "DESTROY"})
	select {
	case o := <-done:
		t.Fatalf("follow ended before the stack was removed: %d\n%s%s", o.code, o.stdout, o.stderr)
	case <-time.After(100 * time.Millisecond):
	}
	r.apply(4*time.Second, result(s, "destroy-infra", message.EventTaskCompleted, "", nil))
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the stack was removed")
	}
	require.Equal(t, exitOK, o.code, o.stderr)
	require.Equal(t, `2024-05-01 (UTC)
  10:00:00.000      +0ms  created by LAUNCH (machine feature-env)
  10:00:00.000      +0ms  LAUNCH: INIT → PROVISION after 0ms in INIT
  10:00:00.000      +0ms    task provision-infra dispatched
  10:00:00.000      +0ms    task seed-database dispatched
  10:00:01.000     +1.0s    task seed-database completed in 1.0s
  10:00:02.000     +2.0s    task provision-infra completed in 2.0s
  10:00:02.000     +2.0s  NEXT: PROVISION → RUN after 2.0s in PROVISION
  10:00:03.000     +3.0s  DESTROY: RUN → DEPROVISION after 1.0s in RUN
  10:00:03.000     +3.0s    task destroy-infra dispatched
  10:00:04.000     +4.0s    task destroy-infra completed in 1.0s
  10:00:04.000     +4.0s  NEXT: DEPROVISION → DESTROYED after 1.0s in DEPROVISION
  10:00:04.000     +4.0s  removed in DESTROYED after 4.0s
`, o.stdout)

	// In JSON, one entry per line.
	code, stdout, stderr := runEnv(t, r.env(), now, "history", "--follow", "--output", "json", "feature-5")
	require.Equal(t, exitOK, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 16)
	require.Contains(t, lines[0], `"kind":"created"`)
	require.Contains(t, lines[15], `"kind":"removed"`)
}

func TestDatabaseConfiguration(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{{"stacks"}, {"show", "x"}, {"history", "x"}} {
		code, _, stderr := runEnv(t, nil, now, cmd...)
		require.Equal(t, exitUsage, code, cmd)
		require.Contains(t, stderr, "no database: set --database-url or DATABASE_URL, or --database-secret-id or DATABASE_SECRET_ID", cmd)
	}
	code, _, stderr := runEnv(t, nil, now, "stacks", "--database-url", "postgres://bad url")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "DATABASE_URL is not a valid PostgreSQL URL")

	// A flag wins over the environment.
	r := newRecorder(t)
	r.apply(0, message.Event{StackID: "a", Event: "LAUNCH", Machine: "qa-env"})
	code, stdout, stderr := runEnv(t, map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}, now,
		"stacks", "--database-url", r.url)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "a      qa-env   DEPLOY")

	// An unreachable database is a failure, not a usage error.
	code, _, stderr = runEnv(t, map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none?connect_timeout=2"}, now, "stacks")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "stackseam stacks: error listing stacks")
}

// With DATABASE_SECRET_ID, the CLI reads the credentials from Secrets
// Manager and connects as the functions do: TLS verified against
// DATABASE_SSLROOTCERT (the embedded RDS bundle without it), on a TLS-only
// server (a protocol-level Secrets Manager fake: the emulator has none).
func TestDatabaseFromSecret(t *testing.T) {
	t.Parallel()
	srv := harness.TLSDatabaseServer(t)
	db := srv.AppDatabase(t)
	fake := harness.NewSecretsFake(t)
	fake.Put("prod/stackseam/db", db.Secret())
	r := newRecorderOn(t, db.URL, store.Config{SecretID: "prod/stackseam/db", Secrets: harness.SecretsClient(fake),
		SSLRootCert: srv.RootCertPath()})
	r.apply(0, message.Event{StackID: "from-secret", Event: "LAUNCH", Machine: "qa-env"})
	reads := fake.Reads("prod/stackseam/db")

	env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key",
		"DATABASE_SSLROOTCERT": srv.RootCertPath()}
	code, stdout, stderr := runEnv(t, env, now, "stacks", "--database-secret-id", "prod/stackseam/db", "--endpoint-url", fake.URL)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "from-secret  qa-env   DEPLOY")
	require.Equal(t, reads+1, fake.Reads("prod/stackseam/db"))

	// The same rules as the functions: the server is verified against the
	// RDS bundle by default, and modes that may fall back to plaintext are
	// refused.
	delete(env, "DATABASE_SSLROOTCERT")
	code, _, stderr = runEnv(t, env, now, "stacks", "--database-secret-id", "prod/stackseam/db", "--endpoint-url", fake.URL)
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "certificate signed by unknown authority")
	env["DATABASE_SSLMODE"] = "prefer"
	code, _, stderr = runEnv(t, env, now, "stacks", "--database-secret-id", "prod/stackseam/db", "--endpoint-url", fake.URL)
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "DATABASE_SSLMODE=prefer is refused")
}
