// Package codebuild hands task runs over to an AWS CodeBuild project, for tasks that need more
// time than a Lambda invocation has (README.md, "The task satisfier"). The satisfier function
// stores the task message in its bucket and starts one build per run; the build runs the same
// satisfier binary in its one-task mode, which reads the message back (Load), claims the run
// (Claim) and publishes the run's one result itself.
package codebuild

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/codebuild"
	cbtypes "github.com/aws/aws-sdk-go-v2/service/codebuild/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/stackseam/stackseam/internal/message"
)

// TaskObjectVariable is the environment variable a build is started with: the key, in the
// satisfier's bucket, of the hand-over record holding its task message.
const TaskObjectVariable = "TASK_OBJECT_KEY"

// Key is where the hand-over record of a run is kept in the satisfier's bucket: beside the
// run's log, under the same layout (message.TaskLogKey).
func Key(task message.Task) string {
	return "handovers/" + task.Stack.Machine + "/" + task.Stack.ID + "/" + task.Task.Name + "/" + task.TaskRunID + ".json"
}

// Record is the hand-over record of one run: the task message the build runs and, once started,
// the build's id, so a redelivered hand-over finds the build instead of starting another.
type Record struct {
	Task message.Task `json:"task"`
	// BuildID is the build started for the run; empty until StartBuild answered.
	BuildID string `json:"buildId,omitempty"`
	// HandedOverAt is when the satisfier first stored the record.
	HandedOverAt time.Time `json:"handedOverAt"`
	// ClaimedBy is set only in the claim object (Claim): the build that runs the task.
	ClaimedBy string `json:"claimedBy,omitempty"`
}

// Builds is what the hand-over needs of CodeBuild; *codebuild.Client implements it.
type Builds interface {
	StartBuild(ctx context.Context, in *codebuild.StartBuildInput, opts ...func(*codebuild.Options)) (*codebuild.StartBuildOutput, error)
	BatchGetBuilds(ctx context.Context, in *codebuild.BatchGetBuildsInput, opts ...func(*codebuild.Options)) (*codebuild.BatchGetBuildsOutput, error)
}

// Objects is what the hand-over needs of S3; *s3.Client implements it.
type Objects interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// HandOver starts the builds of CodeBuild-run tasks.
type HandOver struct {
	// Builds is the CodeBuild client. Required.
	Builds Builds
	// Project is the CodeBuild project's name. Required.
	Project string
	// S3 and Bucket keep the hand-over records (Key). Required.
	S3     Objects
	Bucket string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Start hands one run over to a build of the project, unless the run already has one, and
// returns the build's id and whether this call started it. limit is the run's time limit and
// margin the time the one-task runner keeps to stop cleanly and publish (message.BuildTimeout).
//
// A redelivered hand-over never starts a second build: the record names the build once
// StartBuild has answered, and between storing the record and that answer the run id is
// StartBuild's idempotency token (CodeBuild honours it for 5 minutes). Should a crash in that
// window outlive the token, the second build's one-task runner finds the run claimed (Claim) and
// does nothing.
func (h *HandOver) Start(ctx context.Context, task message.Task, limit, margin time.Duration) (buildID string, started bool, err error) {
	key := Key(task)
	rec, found, err := h.read(ctx, key)
	if err != nil {
		return "", false, err
	}
	if found && rec.BuildID != "" {
		out, err := h.Builds.BatchGetBuilds(ctx, &codebuild.BatchGetBuildsInput{Ids: []string{rec.BuildID}})
		if err != nil {
			return "", false, fmt.Errorf("error looking up build %s of run %s: %w", rec.BuildID, task.TaskRunID, err)
		}
		if len(out.Builds) > 0 {
			return rec.BuildID, false, nil
		}
		// The build is gone (CodeBuild keeps builds for a year): the record is older than any
		// task message can be, so this cannot be a redelivery; start again.
	}
	if !found {
		rec = Record{Task: task, HandedOverAt: time.Now().UTC()}
		if err := h.write(ctx, key, rec); err != nil {
			return "", false, err
		}
	}
	timeout := message.BuildTimeout(limit, margin)
	out, err := h.Builds.StartBuild(ctx, &codebuild.StartBuildInput{
		ProjectName:      aws.String(h.Project),
		IdempotencyToken: aws.String(task.TaskRunID),
		EnvironmentVariablesOverride: []cbtypes.EnvironmentVariable{
			{Name: aws.String(TaskObjectVariable), Value: aws.String(key), Type: cbtypes.EnvironmentVariableTypePlaintext},
		},
		TimeoutInMinutesOverride:       aws.Int32(int32(timeout / time.Minute)),
		QueuedTimeoutInMinutesOverride: aws.Int32(int32(message.BuildQueuedTimeout / time.Minute)),
	})
	if err != nil {
		return "", false, fmt.Errorf("error starting a build of CodeBuild project %s for run %s of task %s: %w",
			h.Project, task.TaskRunID, task.Task.Name, err)
	}
	if out.Build == nil || aws.ToString(out.Build.Id) == "" {
		return "", false, fmt.Errorf("CodeBuild project %s started a build for run %s without an id", h.Project, task.TaskRunID)
	}
	rec.BuildID = aws.ToString(out.Build.Id)
	if err := h.write(ctx, key, rec); err != nil {
		// The build runs: the token still covers a quick redelivery, the claim a late one.
		h.logger().WarnContext(ctx, "the build was started but its hand-over record was not updated",
			"stackId", task.Stack.ID, "taskRunId", task.TaskRunID, "buildId", rec.BuildID, "error", err.Error())
	}
	return rec.BuildID, true, nil
}

func (h *HandOver) read(ctx context.Context, key string) (Record, bool, error) {
	return readRecord(ctx, h.S3, h.Bucket, key)
}

func (h *HandOver) write(ctx context.Context, key string, rec Record) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("error encoding the hand-over record %s: %w", key, err)
	}
	if _, err := h.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json")}); err != nil {
		return fmt.Errorf("error storing the hand-over record s3://%s/%s: %w", h.Bucket, key, err)
	}
	return nil
}

func (h *HandOver) logger() *slog.Logger {
	return cmp.Or(h.Logger, slog.Default())
}

func readRecord(ctx context.Context, client Objects, bucket, key string) (Record, bool, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NoSuchKey" || apiErr.ErrorCode() == "NotFound") {
			return Record{}, false, nil
		}
		return Record{}, false, fmt.Errorf("error reading the hand-over record s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return Record{}, false, fmt.Errorf("error reading the hand-over record s3://%s/%s: %w", bucket, key, err)
	}
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // the task's metadata keeps its numbers as they were sent
	if err := dec.Decode(&rec); err != nil {
		return Record{}, false, fmt.Errorf("the hand-over record s3://%s/%s is not JSON: %w", bucket, key, err)
	}
	return rec, true, nil
}

// Load reads the task message a build was started for, from the record at key (the build's
// TASK_OBJECT_KEY).
func Load(ctx context.Context, client Objects, bucket, key string) (message.Task, error) {
	rec, found, err := readRecord(ctx, client, bucket, key)
	if err != nil {
		return message.Task{}, err
	}
	if !found {
		return message.Task{}, fmt.Errorf("no hand-over record at s3://%s/%s", bucket, key)
	}
	return rec.Task, nil
}

// ErrClaimed means another build has claimed the run: this one must do nothing.
var ErrClaimed = errors.New("the run is claimed by another build")

// Claim makes buildID the one build that runs the task: it creates the claim object beside the
// record with a conditional write (If-None-Match: *), which exactly one writer wins. The same
// build claiming again (CodeBuild retrying it) succeeds; another build gets ErrClaimed.
func Claim(ctx context.Context, client Objects, bucket string, task message.Task, buildID string) error {
	key := Key(task) + ".claim"
	body, err := json.Marshal(Record{Task: message.Task{TaskRunID: task.TaskRunID}, ClaimedBy: buildID, HandedOverAt: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("error encoding the claim of run %s: %w", task.TaskRunID, err)
	}
	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"), IfNoneMatch: aws.String("*")})
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || (apiErr.ErrorCode() != "PreconditionFailed" && apiErr.ErrorCode() != "ConditionalRequestConflict") {
		return fmt.Errorf("error claiming run %s at s3://%s/%s: %w", task.TaskRunID, bucket, key, err)
	}
	rec, found, rerr := readRecord(ctx, client, bucket, key)
	if rerr != nil {
		return rerr
	}
	if found && rec.ClaimedBy == buildID {
		return nil
	}
	return fmt.Errorf("%w: run %s of task %s is run by build %s", ErrClaimed, task.TaskRunID, task.Task.Name, rec.ClaimedBy)
}

// StartedAt is when the build began, from CodeBuild's CODEBUILD_START_TIME (milliseconds since
// the epoch); ok is false when value is empty or not a number.
func StartedAt(value string) (time.Time, bool) {
	ms, err := strconv.ParseInt(value, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// BuildEnd is a build of the project that ended, from CodeBuild's "CodeBuild Build State Change"
// event (EventBridge delivers it to the task queue).
type BuildEnd struct {
	// BuildID is the build's ARN or id.
	BuildID string
	// Status is the build's final status: SUCCEEDED, FAILED, FAULT, STOPPED or TIMED_OUT.
	Status string
	// ObjectKey is the build's TASK_OBJECT_KEY: the hand-over record of its run ("" for a build
	// that was not a hand-over).
	ObjectKey string
	// LogLink points at the build's own log in the CodeBuild console, when the event gives it.
	LogLink string
}

// ParseBuildEnd reads body as CodeBuild's build state change event; ok is false for any other
// message (a task message).
func ParseBuildEnd(body []byte) (end BuildEnd, ok bool) {
	var ev struct {
		Source     string `json:"source"`
		DetailType string `json:"detail-type"`
		Detail     struct {
			Status  string `json:"build-status"`
			BuildID string `json:"build-id"`
			Info    struct {
				Environment struct {
					Variables []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"environment-variables"`
				} `json:"environment"`
				Logs struct {
					DeepLink string `json:"deep-link"`
				} `json:"logs"`
			} `json:"additional-information"`
		} `json:"detail"`
	}
	if json.Unmarshal(body, &ev) != nil || ev.Source != "aws.codebuild" || ev.DetailType != "CodeBuild Build State Change" {
		return BuildEnd{}, false
	}
	end = BuildEnd{BuildID: ev.Detail.BuildID, Status: ev.Detail.Status, LogLink: ev.Detail.Info.Logs.DeepLink}
	for _, v := range ev.Detail.Info.Environment.Variables {
		if v.Name == TaskObjectVariable {
			end.ObjectKey = v.Value
		}
	}
	return end, true
}

// Reported reports whether a build that ended with this status has published its run's result
// itself: the one-task runner exits 0 once it has published one (TASK_ERROR included), so only a
// build that failed, faulted, was stopped or timed out may have ended without a word.
func (e BuildEnd) Reported() bool { return e.Status == string(cbtypes.StatusTypeSucceeded) }
