package localenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stackseam/stackseam/internal/lambdabuild"
)

// RIEVersion is the version of the AWS Lambda Runtime Interface Emulator the tests run. The
// Makefile's RIE_VERSION must be the same (a harness test checks it).
const RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"

// EnvRIE names the variable that points at another aws-lambda-rie binary to run instead.
const EnvRIE = "STACKSEAM_TEST_RIE"

const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator"

var (
	rieOnce sync.Once
	riePath string
	rieErr  error
)

// RIECachePath is where `make rie` puts the emulator for the host.
func RIECachePath(root string) string {
	return filepath.Join(root, ".cache", "rie", RIEVersion, runtime.GOOS+"_"+runtime.GOARCH, "aws-lambda-rie")
}

// RIEBinary returns the Runtime Interface Emulator to run: STACKSEAM_TEST_RIE when set,
// otherwise RIEVersion built for the host at RIECachePath, which `make rie` (part of `make
// deps`) builds. When that file is missing the first call builds it the same way (about a
// minute), under a file lock. The answer is kept for the process.
func RIEBinary(root string) (string, error) {
	rieOnce.Do(func() {
		if p := os.Getenv(EnvRIE); p != "" {
			if riePath, rieErr = p, checkExecutable(p); rieErr != nil {
				rieErr = fmt.Errorf("%s=%s: %w", EnvRIE, p, rieErr)
			}
			return
		}
		riePath, rieErr = moduleBinary{module: rieModule, version: RIEVersion, pkg: "./cmd/aws-lambda-rie", path: RIECachePath(root)}.find()
		if rieErr != nil {
			rieErr = fmt.Errorf("building the Lambda Runtime Interface Emulator (or run `make rie`, or set %s): %w", EnvRIE, rieErr)
		}
	})
	return riePath, rieErr
}

// BuildBootstrap builds a function's main package (such as "./functions/statemanager") into
// dir/bootstrap exactly as the construct's bundling does (package lambdabuild), except for
// the architecture: the host's, so that it runs here under the emulator.
func BuildBootstrap(root, dir, pkg string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := runGo(root, lambdabuild.Env(runtime.GOARCH), lambdabuild.Args(dir, pkg)...); err != nil {
		return "", err
	}
	return filepath.Join(dir, lambdabuild.BootstrapName), nil
}

// RIEConfig is one function run under the emulator.
type RIEConfig struct {
	// Binary is the emulator (RIEBinary).
	Binary string
	// Bootstrap is the function's bootstrap executable.
	Bootstrap string
	// TaskRoot is the function's working directory and LAMBDA_TASK_ROOT, as /var/task is in
	// Lambda. Defaults to Bootstrap's directory.
	TaskRoot string
	// Env is the function's environment (the emulator passes its own environment on):
	// the configured variables and the AWS SDK's. PATH and HOME are added.
	Env []string
	// Name is AWS_LAMBDA_FUNCTION_NAME. Defaults to Bootstrap's directory name.
	Name string
	// Timeout is the function's timeout (AWS_LAMBDA_FUNCTION_TIMEOUT, whole seconds). Required.
	Timeout time.Duration
	// MemoryMB is AWS_LAMBDA_FUNCTION_MEMORY_SIZE. Required.
	MemoryMB int
	// Out receives the emulator's and the function's output.
	Out io.Writer
}

// RIE is one Runtime Interface Emulator process running one function. Like one Lambda execution
// environment it serves one invocation at a time: Invoke waits for the previous one.
type RIE struct {
	// URL is the emulator's base URL (http://127.0.0.1:PORT).
	URL string

	cfg  RIEConfig
	proc *Process
	mu   sync.Mutex // one invocation at a time
}

// StartRIE starts the emulator for cfg on free ports of 127.0.0.1 and waits until it listens.
// The function itself starts on the first invocation (as a Lambda cold start). Stop it with Stop.
func StartRIE(cfg RIEConfig) (*RIE, error) {
	if cfg.Timeout < time.Second || cfg.MemoryMB < 1 {
		return nil, fmt.Errorf("the emulator needs the function's timeout (≥ 1s) and memory, got %s and %d MB", cfg.Timeout, cfg.MemoryMB)
	}
	if cfg.TaskRoot == "" {
		cfg.TaskRoot = filepath.Dir(cfg.Bootstrap)
	}
	if cfg.Name == "" {
		cfg.Name = filepath.Base(filepath.Dir(cfg.Bootstrap))
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	home := os.Getenv("HOME")
	if home == "" {
		home = os.TempDir()
	}
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}, cfg.Env...)
	env = append(env,
		"AWS_LAMBDA_FUNCTION_NAME="+cfg.Name,
		"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(cfg.Timeout/time.Second)),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="+strconv.Itoa(cfg.MemoryMB),
		"LAMBDA_TASK_ROOT="+cfg.TaskRoot,
	)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// The bootstrap path as the argument: the emulator runs it with the working directory it
	// was started in. The Runtime API gets its own port so that several emulators can run.
	cmd := exec.Command(cfg.Binary, "--runtime-interface-emulator-address", addr,
		"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(apiPort), cfg.Bootstrap)
	cmd.Dir = cfg.TaskRoot
	cmd.Env = env
	cmd.SysProcAttr = ChildAttr(nil)
	cmd.Stdout, cmd.Stderr = cfg.Out, cfg.Out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Binary, err)
	}
	p := &Process{name: "aws-lambda-rie", cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	r := &RIE{URL: "http://" + addr, cfg: cfg, proc: p}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return r, nil
		}
		if p.Exited() || time.Now().After(deadline) {
			_ = p.Kill()
			return nil, fmt.Errorf("the Lambda Runtime Interface Emulator for %s did not listen on %s (%v)", cfg.Bootstrap, addr, p.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the emulator and the function it runs.
func (r *RIE) Stop() {
	_ = r.proc.Signal(syscall.SIGTERM)
	select {
	case <-r.proc.Done():
	case <-time.After(5 * time.Second):
	}
	r.proc.KillGroup() // the function runs in the emulator's group
	<-r.proc.Done()
}

// Exited reports whether the emulator has exited.
func (r *RIE) Exited() bool { return r.proc.Exited() }

// RIEResult is the outcome of one invocation.
type RIEResult struct {
	// Payload is the function's response, or its error object.
	Payload []byte
	// Failed says the invocation failed as Lambda counts it: the handler returned an error,
	// the function crashed or did not initialise, or it timed out. An event-source mapping
	// treats the whole batch as failed then.
	Failed bool
	// TimedOut says the invocation hit the function's timeout.
	TimedOut bool
}

// Invoke runs one invocation with payload and waits for it (at most the function's timeout,
// plus a margin for the emulator's own reporting).
func (r *RIE) Invoke(ctx context.Context, payload []byte) (RIEResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/2015-03-31/functions/function/invocations", bytes.NewReader(payload))
	if err != nil {
		return RIEResult{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return RIEResult{}, fmt.Errorf("invoking %s through the emulator: %w", r.cfg.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return RIEResult{}, fmt.Errorf("reading %s's response: %w", r.cfg.Name, err)
	}
	return classify(resp.StatusCode, body), nil
}

// classify reads the emulator's answer. It does not say X-Amz-Function-Error as Lambda does: a
// timeout is a 200 with "Task timed out after N.00 seconds", a failed init or a crash a 5xx,
// and an error the handler returned a 200 with the runtime's error object ({"errorMessage",
// "errorType"}), which no successful stackseam response looks like.
func classify(status int, body []byte) RIEResult {
	res := RIEResult{Payload: body}
	switch {
	case status/100 != 2:
		res.Failed = true
	case bytes.HasPrefix(body, []byte("Task timed out after")):
		res.Failed, res.TimedOut = true, true
	case isErrorObject(body):
		res.Failed = true
	}
	return res
}

func isErrorObject(body []byte) bool {
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return false
	}
	_, msg := obj["errorMessage"]
	_, typ := obj["errorType"]
	return msg || typ
}
