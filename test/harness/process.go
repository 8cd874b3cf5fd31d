package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Stop (and the cleanup at the end of a test) waits
// after SIGTERM before it kills a process.
const StopGrace = 10 * time.Second

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// BuildBinary builds a main package of this module (such as
// "./functions/statemanager") for the host, once per test process, and
// returns the binary's path. Concurrent calls for the same package wait for
// one build.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	root := RepoRoot(t)
	dir := workDir(t)
	buildsMu.Lock()
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(root, dir, pkg) })
	if b.err != nil {
		t.Fatalf("harness: %v", b.err)
	}
	return b.path
}

func goBuild(root, workDir, pkg string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not in PATH; BuildBinary needs it")
	}
	out := filepath.Join(workDir, "bin", strings.Trim(filepath.ToSlash(pkg), "./"), filepath.Base(pkg))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	// A cross-compiling environment would give a binary we cannot run.
	cmd.Env = append(os.Environ(), "GOOS=", "GOARCH=")
	cmd.SysProcAttr = childAttr(nil)
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, output)
	}
	return out, nil
}

// Process is a child process started by StartProcess.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *processOutput
	done chan struct{}
	err  error // from cmd.Wait; read only after done is closed
}

// StartProcess starts bin with env appended to a minimal base environment
// (PATH and HOME only, so nothing from the developer's shell leaks in) and
// args. It captures stdout and stderr together (see Output) and logs each
// line with t.Log, which go test shows with -v or when the test fails. At
// the end of the test it stops the process (SIGTERM, then SIGKILL after
// StopGrace) and kills whatever the process left in its process group.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	home := os.Getenv("HOME")
	if home == "" {
		home = os.TempDir()
	}
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}, env...)
	// Its own process group, so that Kill and the cleanup reach its
	// children too; SIGKILL if the test process dies, so nothing outlives it.
	cmd.SysProcAttr = childAttr(nil)
	p := &Process{name: filepath.Base(bin), cmd: cmd, done: make(chan struct{})}
	p.out = &processOutput{t: t}
	// One writer for both streams: exec then shares one pipe, which keeps
	// stdout and stderr lines in the order they were written.
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Bounds Wait when a grandchild keeps the output pipe open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: starting %s: %v", bin, err)
	}
	p.out.setPrefix(fmt.Sprintf("%s[%d]: ", p.name, cmd.Process.Pid))
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			if err := p.Stop(); err != nil {
				t.Logf("harness: stopping %s: %v", p.name, err)
			}
		}
		// Grandchildren may outlive the process itself.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		p.out.close()
	})
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit error: nil after
// exit status 0, an *exec.ExitError otherwise.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// ExitCode returns the exit status of an exited process, or -1 while it runs
// or when a signal ended it.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process (not its children).
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Stop sends SIGTERM and waits for the process to exit. It returns what Wait
// returns — nil when the process shut down cleanly with status 0 — or, if
// the process is still running after StopGrace, kills it and says so.
func (p *Process) Stop() error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(StopGrace):
		_ = p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", p.name, StopGrace)
	}
}

// Kill sends SIGKILL to the process and its process group now, as a crash
// would, and waits for it to exit.
func (p *Process) Kill() error {
	if !p.Exited() {
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	<-p.done
	return nil
}

// WaitForOutput waits until the process's output contains substr, failing
// the test if the process exits first or timeout passes.
func (p *Process) WaitForOutput(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.Output(), substr) {
			return
		}
		select {
		case <-p.done:
			if strings.Contains(p.Output(), substr) {
				return
			}
			t.Fatalf("harness: %s exited (%v) before printing %q; its output:\n%s", p.name, p.err, substr, p.Output())
		case <-deadline:
			t.Fatalf("harness: %s did not print %q within %s; its output:\n%s", p.name, substr, timeout, p.Output())
		case <-tick.C:
		}
	}
}

// processOutput collects a process's output and logs it line by line to the
// test until close; after the test ends t.Log would panic.
type processOutput struct {
	t testing.TB

	mu      sync.Mutex
	prefix  string // set once the pid is known
	all     bytes.Buffer
	partial []byte // the last line, until its newline arrives
	closed  bool
}

func (o *processOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(b)
	if o.closed {
		return len(b), nil
	}
	o.partial = append(o.partial, b...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.t.Log(o.prefix + string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
	return len(b), nil
}

func (o *processOutput) setPrefix(prefix string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.prefix = prefix
}

func (o *processOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}

func (o *processOutput) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 {
		o.t.Log(o.prefix + string(o.partial))
		o.partial = nil
	}
	o.closed = true
}
