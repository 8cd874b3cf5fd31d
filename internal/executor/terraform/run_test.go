package terraform_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/dispatch"
	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

// These tests run a real OpenTofu (harness.TofuBinary) against the emulator's S3: the backend,
// the S3 sources and the stored logs.

func TestMain(m *testing.M) { harness.Main(m) }

// newRunner returns a Runner with its own bucket, work dir and plugin cache.
func newRunner(t *testing.T, extraEnv ...string) *terraform.Runner {
	t.Helper()
	// The emulator takes any secret key; harness.AWSEnv's "test" would be masked in every log
	// line that says "test".
	env := append([]string{"PATH=" + os.Getenv("PATH")}, harness.AWSEnv(t)...)
	env = append(env, "AWS_SECRET_ACCESS_KEY="+emulatorSecret)
	return &terraform.Runner{
		Binary:         harness.TofuBinary(t),
		S3:             harness.S3Client(t),
		Bucket:         harness.CreateBucket(t, "tf-"+t.Name()),
		Region:         harness.Region,
		Endpoint:       harness.AWSEndpoint(t),
		SourcesDir:     fixtures(t),
		WorkDir:        t.TempDir(),
		PluginCacheDir: t.TempDir(),
		StopGrace:      5 * time.Second,
		Environ:        append(env, extraEnv...),
	}
}

// emulatorSecret is the AWS secret key the runs use: long and unlike anything else in a log.
const emulatorSecret = "stackseam-emulator-secret-key-0123456789"

func fixtures(t *testing.T) string {
	return filepath.Join(harness.RepoRoot(t), "test", "testdata", "terraform")
}

// printenvTask applies the printenv fixture, whose local-exec prints the environment variable
// name as Terraform sees it.
func printenvTask(name string) message.Task {
	return tfTask("print", map[string]any{"source": localSource("printenv"), "action": "apply",
		"variables": map[string]any{"variable_name": name}}, nil)
}

func tfTask(name string, config map[string]any, meta message.Metadata) message.Task {
	return message.Task{
		Task:      message.TaskSpec{Name: name, Executor: "terraform", Config: config},
		Stack:     message.Stack{ID: "s-1", Machine: "m", State: "PROVISION", Metadata: meta},
		TaskRunID: "run-" + name,
	}
}

func s3Source(bucket, key string) map[string]any {
	return map[string]any{"type": "s3", "bucket": bucket, "key": key}
}

func localSource(location string) map[string]any {
	return map[string]any{"type": "local", "location": location}
}

// storedLog reads the log a run points at.
func storedLog(t *testing.T, r *terraform.Runner, url string) string {
	t.Helper()
	key, ok := strings.CutPrefix(url, "s3://"+r.Bucket+"/")
	require.True(t, ok, "log %q is in the bucket", url)
	text, ok := harness.ReadObject(t, r.Bucket, key)
	require.True(t, ok, "log %s exists", url)
	return text
}

func TestApplyAndDestroyFromS3(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	harness.UploadDir(t, r.Bucket, "scripts/basic", filepath.Join(fixtures(t), "basic"))
	// Shares the prefix "scripts/basic" but is another folder: it must not be fetched.
	harness.UploadDir(t, r.Bucket, "scripts/basic-old", filepath.Join(fixtures(t), "broken"))

	apply := tfTask("infra", map[string]any{"source": s3Source(r.Bucket, "scripts/basic"), "action": "apply"},
		message.Metadata{"greeting": "hi", "unused_key": "not passed", "owner.email": "ops@example.com"})
	out, err := r.Run(context.Background(), apply)
	require.NoError(t, err)
	require.Equal(t, message.Metadata{
		"app":      "hi, stack s-1", // stack_id, metadata and a module from a sub-folder
		"zones":    `["a","b"]`,
		"settings": `{"public":true,"size":2}`,
	}, out.Outputs)
	require.Equal(t, []string{
		"output settings is an object and was stored as its JSON text",
		"output zones is a list and was stored as its JSON text",
		"sensitive outputs are not returned: admin_password",
	}, out.Notes)
	require.Equal(t, "s3://"+r.Bucket+"/logs/m/s-1/infra/run-infra.log", out.Log)
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "Apply complete! Resources: 1 added")
	require.NotContains(t, log, "undeclared variable", "metadata the script does not declare is not passed")
	require.Contains(t, log, "variables: greeting, stack_id\n")
	require.Contains(t, log, "not passed: owner.email, unused_key\n")
	require.NotContains(t, log, "ops@example.com", "skipped keys are named, their values are not")
	require.Contains(t, log, "running Terraform command")
	require.NotContains(t, log, "not-for-metadata", "sensitive values stay out of the log")

	state, ok := harness.ReadObject(t, r.Bucket, "m/s-1/scripts/basic")
	require.True(t, ok, "the state is at <machine>/<stackId>/<source key>")
	require.Contains(t, state, `"terraform_data"`)

	// The destroy gets the same metadata: a key no Terraform variable can be named after must not
	// stop the teardown.
	destroy := tfTask("teardown", map[string]any{"source": s3Source(r.Bucket, "scripts/basic"), "action": "destroy"},
		message.Metadata{"greeting": "hi", "owner.email": "ops@example.com"})
	out, err = r.Run(context.Background(), destroy)
	require.NoError(t, err)
	require.Empty(t, out.Outputs)
	require.Contains(t, storedLog(t, r, out.Log), "Destroy complete! Resources: 1 destroyed")
	state, ok = harness.ReadObject(t, r.Bucket, "m/s-1/scripts/basic")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`, "destroy ran against the same state")

	entries, err := os.ReadDir(r.WorkDir)
	require.NoError(t, err)
	require.Empty(t, entries, "work dirs are removed")
}

func TestHostileValuesArriveLiterally(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	meta := message.Metadata{"count_of": json.Number("9007199254740993"), "enabled": true}
	for k, v := range hostile {
		meta[k] = v
	}
	out, err := r.Run(context.Background(), tfTask("echo", map[string]any{"source": localSource("echo"), "action": "apply"}, meta))
	require.NoError(t, err)
	for k, v := range hostile {
		require.Equal(t, v, out.Outputs[k], "output %s", k)
	}
	require.Equal(t, "s-1", out.Outputs["stack_id"])
	require.Equal(t, json.Number("9007199254740993"), out.Outputs["count_of"], "no float rounding on the way")
	require.Equal(t, true, out.Outputs["enabled"])
}

func TestFailingApplyReportsErrorAndKeepsLog(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	out, err := r.Run(context.Background(), tfTask("infra", map[string]any{"source": localSource("broken"), "action": "apply"}, nil))
	require.Error(t, err)
	require.Contains(t, err.Error(), "terraform apply failed")
	require.Contains(t, err.Error(), "The broken fixture always fails")
	require.NotEmpty(t, out.Log)
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "The broken fixture always fails")
	require.Contains(t, log, "stackseam: FAILED")
}

func TestSecretsAreMaskedInTheStoredLog(t *testing.T) {
	t.Parallel()
	const password = "correct-horse-battery-staple"
	r := newRunner(t, "DB_PASSWORD="+password)
	task := printenvTask("DB_PASSWORD")
	out, err := r.Run(context.Background(), task)
	require.NoError(t, err)
	log := storedLog(t, r, out.Log)
	require.NotContains(t, log, password)
	require.Contains(t, log, "[redacted:DB_PASSWORD]", "Terraform printed it, and it was masked")
	require.NotContains(t, log, emulatorSecret)
}

func TestContextEndStopsTerraformCleanly(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	// Long enough for init on a loaded machine, so the end lands in the
	// apply's 60-second provisioner; returning at all shows it was stopped.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := r.Run(ctx, tfTask("slow", map[string]any{"source": localSource("slow"), "action": "apply"}, nil))
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded), err.Error())
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "Interrupt received", "Terraform got SIGINT first")
}

func TestLocalSingleFileSource(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	task := tfTask("one", map[string]any{"source": localSource("slow/main.tf"), "action": "apply",
		"variables": map[string]any{"sleep_seconds": "0"}}, nil)
	out, err := r.Run(context.Background(), task)
	require.NoError(t, err)
	require.Equal(t, "s-1", out.Outputs["slept"])
	_, ok := harness.ReadObject(t, r.Bucket, "m/s-1/slow/main.tf")
	require.True(t, ok, "the state key ends with the location")
}

func TestProblemsBeforeTerraformRunsAreReported(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	for _, tc := range []struct {
		task message.Task
		want string
	}{
		{tfTask("a", map[string]any{"source": s3Source(r.Bucket, "nothing/here"), "action": "apply"}, nil),
			"the source s3://" + r.Bucket + "/nothing/here holds no objects"},
		{tfTask("b", map[string]any{"source": localSource("no-such-folder"), "action": "apply"}, nil),
			"error copying the local source no-such-folder"},
		{tfTask("c", map[string]any{"source": localSource("basic"), "action": "apply", "variables": map[string]any{"api.image": "v1"}}, nil),
			`variable name "api.image" is not a Terraform identifier`},
		{tfTask("d", map[string]any{"source": localSource("basic"), "action": "show"}, nil),
			`config.action must be apply, destroy, plan or drift, not "show"`},
		{tfTask("e", map[string]any{"source": localSource(filepath.Join(fixtures(t), "basic")), "action": "apply"}, nil),
			"is absolute; a local source is a path relative to the satisfier's TERRAFORM_SOURCES_DIR"},
		{tfTask("f", map[string]any{"source": localSource("../terraform/basic"), "action": "destroy"}, nil),
			`contains ".."; a local source stays inside the satisfier's TERRAFORM_SOURCES_DIR`},
	} {
		out, err := r.Run(context.Background(), tc.task)
		require.ErrorContains(t, err, tc.want)
		require.Contains(t, storedLog(t, r, out.Log), tc.want, "the log says it too")
	}
}

func TestLocalSourceLinkLeavingTheSourcesDirIsRefused(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	r.SourcesDir = t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(fixtures(t), "basic"), filepath.Join(r.SourcesDir, "infra")))
	out, err := r.Run(context.Background(), tfTask("infra", map[string]any{"source": localSource("infra"), "action": "apply"}, nil))
	require.EqualError(t, err, "error copying the local source infra: it leaves the sources dir (TERRAFORM_SOURCES_DIR) through a symbolic link")
	require.Contains(t, storedLog(t, r, out.Log), "it leaves the sources dir")
	_, ok := harness.ReadObject(t, r.Bucket, "m/s-1/infra")
	require.False(t, ok, "Terraform never ran")
}

// TestTimeoutIsReportedAsTaskError runs a terraform task through the Dispatcher, as the satisfier
// does: a run that outlives the task's timeoutSeconds is stopped and reported as TASK_ERROR
// "timed out after …", with its log.
func TestTimeoutIsReportedAsTaskError(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	var published []queue.Outgoing
	d := &dispatch.Dispatcher{
		Executors: map[string]executor.Executor{"terraform": r},
		Publish: func(_ context.Context, m queue.Outgoing) error {
			published = append(published, m)
			return nil
		},
	}
	task := tfTask("slow", map[string]any{"source": localSource("slow"), "action": "apply"}, nil)
	// Long enough for init on a loaded 2-core machine, so the limit lands in
	// the apply's 60-second provisioner; the log's "Interrupt received"
	// below shows the run was stopped rather than left to finish.
	task.Task.TimeoutSeconds = 15
	body, err := json.Marshal(task)
	require.NoError(t, err)

	require.NoError(t, d.Handle(context.Background(), queue.Message{ID: "m-1", Body: string(body)}))

	require.Len(t, published, 1)
	ev, err := message.ParseEvent([]byte(published[0].Body))
	require.NoError(t, err)
	require.Equal(t, message.EventTaskError, ev.Event)
	require.True(t, strings.HasPrefix(ev.Description, "timed out after 15s (the task's timeoutSeconds: 15) and was stopped: terraform apply failed"), ev.Description)
	require.Equal(t, "s3://"+r.Bucket+"/logs/m/s-1/slow/run-slow.log", ev.Log)
	require.Contains(t, storedLog(t, r, ev.Log), "Interrupt received")
}
