package codebuild_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/codebuild"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func setup(t *testing.T) (*codebuild.HandOver, *harness.CodeBuildFake) {
	t.Helper()
	fake := harness.NewCodeBuildFake(t)
	bin, err := exec.LookPath("true") // a build that succeeds at once
	require.NoError(t, err)
	fake.Project("tasks", harness.CodeBuildProject{Command: bin})
	return &codebuild.HandOver{Builds: harness.CodeBuildClient(t, fake), Project: "tasks",
		S3: harness.S3Client(t), Bucket: harness.CreateBucket(t, "handover-"+t.Name())}, fake
}

func longTask(run string) message.Task {
	return message.Task{Task: message.TaskSpec{Name: "infra", Executor: "terraform", TimeoutSeconds: 7200},
		Stack: message.Stack{ID: "s-1", Machine: "m", State: "PROVISION"}, TaskRunID: run}
}

// A hand-over delivered again finds the run's build through its record and starts none; the run
// id is StartBuild's idempotency token, so even a hand-over that died before recording the build
// gets the same build back.
func TestRedeliveredHandOverStartsOneBuild(t *testing.T) {
	t.Parallel()
	h, fake := setup(t)
	ctx := context.Background()
	task := longTask("run-1")

	id, started, err := h.Start(ctx, task, 2*time.Hour, 30*time.Second)
	require.NoError(t, err)
	require.True(t, started)
	builds := fake.Builds()
	require.Len(t, builds, 1)
	require.Equal(t, id, builds[0].ID)
	require.Equal(t, []string{codebuild.TaskObjectVariable + "=" + codebuild.Key(task)}, builds[0].Env)
	require.Equal(t, 124*time.Minute, builds[0].Timeout, "2h, the 30s margin and the start allowance, in whole minutes")

	again, started, err := h.Start(ctx, task, 2*time.Hour, 30*time.Second)
	require.NoError(t, err)
	require.False(t, started)
	require.Equal(t, id, again)
	require.Equal(t, []string{"StartBuild", "BatchGetBuilds"}, fake.Requests())

	// A hand-over that stored the record but died before StartBuild answered.
	rec, err := json.Marshal(codebuild.Record{Task: task, HandedOverAt: time.Now()})
	require.NoError(t, err)
	_, err = h.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.Bucket), Key: aws.String(codebuild.Key(task)), Body: bytes.NewReader(rec)})
	require.NoError(t, err)
	third, started, err := h.Start(ctx, task, 2*time.Hour, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, id, third, "the idempotency token gave the same build back")
	require.Len(t, fake.Builds(), 1)
	_ = started

	loaded, err := codebuild.Load(ctx, h.S3, h.Bucket, codebuild.Key(task))
	require.NoError(t, err)
	require.Equal(t, task, loaded, "the build reads the task message it was handed")
}

// Exactly one build runs a run: the first claim wins, the same build may claim again (CodeBuild
// retrying it), any other build is told to do nothing.
func TestOneBuildClaimsARun(t *testing.T) {
	t.Parallel()
	h, _ := setup(t)
	ctx := context.Background()
	task := longTask("run-2")
	require.NoError(t, codebuild.Claim(ctx, h.S3, h.Bucket, task, "tasks:a"))
	require.NoError(t, codebuild.Claim(ctx, h.S3, h.Bucket, task, "tasks:a"))
	err := codebuild.Claim(ctx, h.S3, h.Bucket, task, "tasks:b")
	require.ErrorIs(t, err, codebuild.ErrClaimed)
	require.ErrorContains(t, err, "tasks:a")
}

func TestBuildTimeout(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		limit, margin, want time.Duration
	}{
		{time.Second, 0, 5 * time.Minute}, // CodeBuild's minimum
		{time.Hour, 30 * time.Second, 64 * time.Minute},
		{7 * time.Hour, 30 * time.Second, 7*time.Hour + 4*time.Minute},
		{8 * time.Hour, 30 * time.Second, 8 * time.Hour}, // never beyond a project's longest timeout
	} {
		require.Equal(t, c.want, message.BuildTimeout(c.limit, c.margin), "limit %s", c.limit)
	}
}

// CodeBuild's build state change event, as EventBridge delivers it, names the build, its status
// and its hand-over record; a task message is not one.
func TestParseBuildEnd(t *testing.T) {
	t.Parallel()
	event := `{"version":"0","id":"e","detail-type":"CodeBuild Build State Change","source":"aws.codebuild",
	  "account":"123456789012","time":"2026-12-01T10:00:00Z","region":"eu-west-1",
	  "resources":["arn:aws:codebuild:eu-west-1:123456789012:build/tasks:b-1"],
	  "detail":{"build-status":"FAILED","project-name":"tasks","build-id":"arn:aws:codebuild:eu-west-1:123456789012:build/tasks:b-1",
	    "additional-information":{"build-complete":true,
	      "environment":{"image":"aws/codebuild/amazonlinux-aarch64-standard:3.0","environment-variables":[
	        {"name":"BUCKET","value":"b","type":"PLAINTEXT"},
	        {"name":"TASK_OBJECT_KEY","value":"handovers/m/s-1/infra/run-1.json","type":"PLAINTEXT"}]},
	      "logs":{"deep-link":"https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=g;stream=s"}}}}`
	end, ok := codebuild.ParseBuildEnd([]byte(event))
	require.True(t, ok)
	require.Equal(t, codebuild.BuildEnd{BuildID: "arn:aws:codebuild:eu-west-1:123456789012:build/tasks:b-1", Status: "FAILED",
		ObjectKey: "handovers/m/s-1/infra/run-1.json", LogLink: "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=g;stream=s"}, end)
	require.False(t, end.Reported())
	end.Status = "SUCCEEDED"
	require.True(t, end.Reported(), "a build exits 0 only once its runner has published")

	task, err := json.Marshal(longTask("run-1"))
	require.NoError(t, err)
	_, ok = codebuild.ParseBuildEnd(task)
	require.False(t, ok, "a task message is not a build event")
}
