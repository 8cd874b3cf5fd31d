package localenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CodeBuildFake is an HTTP server speaking the CodeBuild API (AWS JSON 1.1, X-Amz-Target
// CodeBuild_20161006.*) for the operations stackseam uses — StartBuild (with idempotencyToken,
// environment overrides and timeout overrides), BatchGetBuilds and StopBuild — standing in for
// AWS CodeBuild, which nothing runnable here provides. A build is real: StartBuild starts the
// project's command as a process with the project's environment, CodeBuild's own variables
// (CODEBUILD_BUILD_ID, CODEBUILD_START_TIME, CODEBUILD_SRC_DIR) and the build's overrides, and the
// build's status follows the process: SUCCEEDED on exit status 0, FAILED otherwise, TIMED_OUT when
// its timeout killed it, STOPPED after StopBuild. The AWS SDK reaches it through
// AWS_ENDPOINT_URL_CODEBUILD=URL (see Env). Close stops it and kills the builds still running.
type CodeBuildFake struct {
	fakeServer // URL, Close and Env

	mu       sync.Mutex
	projects map[string]CodeBuildProject
	builds   []*FakeBuild
	tokens   map[string]*FakeBuild // idempotency tokens, valid for tokenLife
	requests []string              // operations received, in order
}

// tokenLife is how long CodeBuild honours a StartBuild idempotency token.
const tokenLife = 5 * time.Minute

// CodeBuildProject is what one fake project runs: the build's command and environment, as the
// project's buildspec and environment variables would give them.
type CodeBuildProject struct {
	// Command and Args are the build's one command (the buildspec's `commands:` entry).
	Command string
	Args    []string
	// Env is the project's environment variables (NAME=value).
	Env []string
	// SourceDir is CODEBUILD_SRC_DIR, where the project's source is unpacked; the command runs
	// there.
	SourceDir string
	// StopGrace is how long a stopped or timed-out build's process has after SIGTERM before it
	// is killed. Defaults to 10s.
	StopGrace time.Duration
	// Output, when set, receives each build's output as well (a test's log).
	Output func(buildID string) io.Writer
	// Events, when set, receives CodeBuild's "CodeBuild Build State Change" event of each build
	// that ends, as an EventBridge rule would deliver it (the JSON of the event).
	Events func(event []byte)
}

// FakeBuild is one build the fake started.
type FakeBuild struct {
	ID        string
	Project   string
	Token     string
	Env       []string // the overrides StartBuild gave
	Started   time.Time
	Timeout   time.Duration
	process   *Process
	output    *TailBuffer
	mu        sync.Mutex
	status    string
	ended     time.Time
	stoppedAs string // the status a stop or timeout ends the build with
}

// Status is the build's status: IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT or STOPPED.
func (b *FakeBuild) Status() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

// Output is the last 1 MiB the build's process wrote.
func (b *FakeBuild) Output() string { return b.output.String() }

// Process is the build's process.
func (b *FakeBuild) Process() *Process { return b.process }

// NewCodeBuildFake starts a fake CodeBuild with no projects, listening on a free port of
// 127.0.0.1.
func NewCodeBuildFake() *CodeBuildFake {
	f := &CodeBuildFake{projects: map[string]CodeBuildProject{}, tokens: map[string]*FakeBuild{}}
	f.start("AWS_ENDPOINT_URL_CODEBUILD", f.serve)
	return f
}

// Close stops the server and kills every build still running.
func (f *CodeBuildFake) Close() {
	f.fakeServer.Close()
	for _, b := range f.Builds() {
		if b.process != nil {
			_ = b.process.Kill()
		}
	}
}

// Project defines (or replaces) the project name.
func (f *CodeBuildFake) Project(name string, p CodeBuildProject) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.projects[name] = p
}

// Builds returns every build started so far, in order.
func (f *CodeBuildFake) Builds() []*FakeBuild {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*FakeBuild(nil), f.builds...)
}

// Requests returns the operations received so far (StartBuild, …), in order.
func (f *CodeBuildFake) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// Kill ends a build's process at once with SIGKILL, as a lost build host would: it gets no time
// to report. The build's status becomes FAILED.
func (f *CodeBuildFake) Kill(b *FakeBuild) error { return b.process.Kill() }

const codebuildTarget = "CodeBuild_20161006."

type cbEnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type,omitempty"`
}

func (f *CodeBuildFake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		awsJSONError(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "the fake serves signed POST requests only")
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), codebuildTarget)
	if !ok {
		awsJSONError(w, http.StatusBadRequest, "UnknownOperationException", "unknown target "+r.Header.Get("X-Amz-Target"))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		awsJSONError(w, http.StatusBadRequest, "InvalidInputException", err.Error())
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, op)
	f.mu.Unlock()
	switch op {
	case "StartBuild":
		f.startBuild(w, body)
	case "BatchGetBuilds":
		var in struct {
			IDs []string `json:"ids"`
		}
		if err := json.Unmarshal(body, &in); err != nil || len(in.IDs) == 0 {
			awsJSONError(w, http.StatusBadRequest, "InvalidInputException", "ids are required")
			return
		}
		out := struct {
			Builds   []map[string]any `json:"builds"`
			NotFound []string         `json:"buildsNotFound"`
		}{Builds: []map[string]any{}, NotFound: []string{}}
		for _, id := range in.IDs {
			if b := f.build(id); b != nil {
				out.Builds = append(out.Builds, b.view())
			} else {
				out.NotFound = append(out.NotFound, id)
			}
		}
		awsJSON(w, out)
	case "StopBuild":
		var in struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &in)
		b := f.build(in.ID)
		if b == nil {
			awsJSONError(w, http.StatusBadRequest, "ResourceNotFoundException", "Build "+in.ID+" does not exist")
			return
		}
		b.stop(f.project(b.Project).grace(), "STOPPED")
		awsJSON(w, map[string]any{"build": b.view()})
	default:
		awsJSONError(w, http.StatusBadRequest, "UnknownOperationException", "the fake does not serve "+op)
	}
}

func (f *CodeBuildFake) startBuild(w http.ResponseWriter, body []byte) {
	var in struct {
		ProjectName   string     `json:"projectName"`
		Token         string     `json:"idempotencyToken"`
		Env           []cbEnvVar `json:"environmentVariablesOverride"`
		Timeout       int        `json:"timeoutInMinutesOverride"`
		QueuedTimeout int        `json:"queuedTimeoutInMinutesOverride"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		awsJSONError(w, http.StatusBadRequest, "InvalidInputException", err.Error())
		return
	}
	if in.Timeout != 0 && (in.Timeout < 5 || in.Timeout > 2160) {
		awsJSONError(w, http.StatusBadRequest, "InvalidInputException", fmt.Sprintf("timeoutInMinutesOverride %d is not between 5 and 2160", in.Timeout))
		return
	}
	f.mu.Lock()
	p, ok := f.projects[in.ProjectName]
	if !ok {
		f.mu.Unlock()
		awsJSONError(w, http.StatusBadRequest, "ResourceNotFoundException", "Project cannot be found: "+in.ProjectName)
		return
	}
	var env []string
	for _, v := range in.Env {
		env = append(env, v.Name+"="+v.Value)
	}
	if in.Token != "" {
		if b := f.tokens[in.Token]; b != nil && time.Since(b.Started) < tokenLife {
			f.mu.Unlock()
			if b.Project != in.ProjectName || strings.Join(b.Env, "\n") != strings.Join(env, "\n") {
				awsJSONError(w, http.StatusBadRequest, "IdempotentParameterMismatchException",
					"the idempotency token was used with other parameters")
				return
			}
			awsJSON(w, map[string]any{"build": b.view()})
			return
		}
	}
	timeout := 60 * time.Minute
	if in.Timeout > 0 {
		timeout = time.Duration(in.Timeout) * time.Minute
	}
	b := &FakeBuild{ID: in.ProjectName + ":" + RandomHex(16), Project: in.ProjectName, Token: in.Token, Env: env,
		Started: time.Now(), Timeout: timeout, status: "IN_PROGRESS", output: NewTailBuffer(1 << 20)}
	var out io.Writer = b.output
	if p.Output != nil {
		out = io.MultiWriter(b.output, p.Output(b.ID))
	}
	buildEnv := append(append(append([]string(nil), p.Env...),
		"CODEBUILD_BUILD_ID="+b.ID,
		fmt.Sprintf("CODEBUILD_START_TIME=%d", b.Started.UnixMilli()),
		"CODEBUILD_SRC_DIR="+p.SourceDir), env...)
	// CodeBuild runs the buildspec's commands in the source dir.
	proc, err := StartProcessIn(p.SourceDir, p.Command, buildEnv, p.Args, out)
	if err != nil {
		f.mu.Unlock()
		awsJSONError(w, http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	b.process = proc
	f.builds = append(f.builds, b)
	if in.Token != "" {
		f.tokens[in.Token] = b
	}
	f.mu.Unlock()
	go b.watch(p.grace(), p.Events)
	awsJSON(w, map[string]any{"build": b.view()})
}

// watch follows the build's process to its end, and stops it at its timeout.
func (b *FakeBuild) watch(grace time.Duration, events func([]byte)) {
	select {
	case <-b.process.Done():
	case <-time.After(b.Timeout):
		b.stop(grace, "TIMED_OUT")
		<-b.process.Done()
	}
	b.end()
	if events != nil {
		events(b.stateChange())
	}
}

// stateChange is the EventBridge event CodeBuild sends when the build ends.
func (b *FakeBuild) stateChange() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var env []map[string]string
	for _, kv := range b.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, map[string]string{"name": k, "value": v, "type": "PLAINTEXT"})
	}
	arn := "arn:aws:codebuild:" + Region + ":000000000000:build/" + b.ID
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": RandomHex(16), "detail-type": "CodeBuild Build State Change", "source": "aws.codebuild",
		"account": "000000000000", "time": b.ended.UTC().Format(time.RFC3339), "region": Region, "resources": []string{arn},
		"detail": map[string]any{
			"build-status": b.status, "project-name": b.Project, "build-id": arn, "current-phase": "COMPLETED",
			"additional-information": map[string]any{
				"build-complete": true, "timeout-in-minutes": int(b.Timeout / time.Minute),
				"environment": map[string]any{"environment-variables": env},
			},
		},
	})
	return body
}

func (b *FakeBuild) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = time.Now()
	switch {
	case b.stoppedAs != "":
		b.status = b.stoppedAs
	case b.process.ExitCode() == 0:
		b.status = "SUCCEEDED"
	default:
		b.status = "FAILED"
	}
}

// stop ends the build: SIGTERM, and SIGKILL after grace.
func (b *FakeBuild) stop(grace time.Duration, status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status != "IN_PROGRESS" || b.stoppedAs != "" {
		return
	}
	b.stoppedAs = status
	_ = b.process.Signal(syscall.SIGTERM)
	go func() {
		select {
		case <-b.process.Done():
		case <-time.After(grace):
			_ = b.process.Kill()
		}
	}()
}

func (b *FakeBuild) view() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	phase := "BUILD"
	if b.status != "IN_PROGRESS" {
		phase = "COMPLETED"
	}
	var env []cbEnvVar
	for _, kv := range b.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, cbEnvVar{Name: k, Value: v, Type: "PLAINTEXT"})
	}
	out := map[string]any{
		"id": b.ID, "arn": "arn:aws:codebuild:" + Region + ":000000000000:build/" + b.ID,
		"projectName": b.Project, "buildStatus": b.status, "currentPhase": phase, "buildComplete": b.status != "IN_PROGRESS",
		"startTime": float64(b.Started.UnixMilli()) / 1000, "timeoutInMinutes": int(b.Timeout / time.Minute),
		"environment": map[string]any{"environmentVariables": env},
	}
	if !b.ended.IsZero() {
		out["endTime"] = float64(b.ended.UnixMilli()) / 1000
	}
	return out
}

func (f *CodeBuildFake) build(id string) *FakeBuild {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.builds {
		if b.ID == id {
			return b
		}
	}
	return nil
}

func (f *CodeBuildFake) project(name string) CodeBuildProject {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.projects[name]
}

func (p CodeBuildProject) grace() time.Duration {
	if p.StopGrace > 0 {
		return p.StopGrace
	}
	return 10 * time.Second
}
