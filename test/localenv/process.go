package localenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Build builds a main package of this module (such as
// "./functions/statemanager") for the host into the file out, with build
// tags if given, from the repository root.
func Build(root, out, pkg string, tags ...string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	args := []string{"build"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "-o", out, pkg)
	// A cross-compiling environment would give a binary we cannot run.
	return runGo(root, []string{"GOOS=", "GOARCH="}, args...)
}

// runGo runs the go command with args in root, with env added to this process's environment;
// when it fails, the error holds its output.
func runGo(root string, env []string, args ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is not in PATH; building the binaries needs it")
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = ChildAttr(nil)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, output)
	}
	return nil
}

// Process is a child process started by StartProcess.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from cmd.Wait; read only after done is closed
}

// StartProcess starts bin with args and env appended to a minimal base
// environment (PATH and HOME only, so nothing from the caller's shell leaks
// in), writing its stdout and stderr, in order, to out. It runs in its own
// process group; KillGroup reaches whatever it starts in turn.
func StartProcess(bin string, env, args []string, out io.Writer) (*Process, error) {
	return StartProcessIn("", bin, env, args, out)
}

// StartProcessIn is StartProcess with dir as the working directory ("" for the caller's).
func StartProcessIn(dir, bin string, env, args []string, out io.Writer) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	home := os.Getenv("HOME")
	if home == "" {
		home = os.TempDir()
	}
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}, env...)
	cmd.SysProcAttr = ChildAttr(nil)
	// One writer for both streams: exec then shares one pipe, which keeps
	// stdout and stderr lines in the order they were written.
	cmd.Stdout, cmd.Stderr = out, out
	// Bounds Wait when a grandchild keeps the output pipe open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &Process{name: filepath.Base(bin), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the binary's file name.
func (p *Process) Name() string { return p.name }

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

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
// the process is still running after grace, kills it and says so.
func (p *Process) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", p.name, grace)
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

// KillGroup sends SIGKILL to whatever is left in the process's group (its
// children may outlive it).
func (p *Process) KillGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}
