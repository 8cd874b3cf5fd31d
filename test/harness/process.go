package harness

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackseam/stackseam/test/localenv"
)

// StopGrace is how long Stop (and the cleanup at the end of a test) waits
// after SIGTERM before it kills a process.
const StopGrace = 10 * time.Second

// buildCache builds each of its keys once per test process; concurrent calls for one key wait
// for the one build.
type buildCache struct {
	mu     sync.Mutex
	builds map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// get returns the path built for key, building it with do on the first call.
func (c *buildCache) get(t testing.TB, key string, do func() (string, error)) string {
	t.Helper()
	c.mu.Lock()
	b := c.builds[key]
	if b == nil {
		if c.builds == nil {
			c.builds = map[string]*build{}
		}
		b = &build{}
		c.builds[key] = b
	}
	c.mu.Unlock()
	b.once.Do(func() { b.path, b.err = do() })
	if b.err != nil {
		t.Fatalf("harness: %v", b.err)
	}
	return b.path
}

// binaries holds the host binaries BuildBinary and BuildBinaryWithTags build.
var binaries buildCache

// BuildBinary builds a main package of this module (such as
// "./functions/statemanager") for the host, once per test process, and
// returns the binary's path. Concurrent calls for the same package wait for
// one build.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	root, dir := RepoRoot(t), workDir(t)
	return binaries.get(t, pkg, func() (string, error) { return goBuild(root, dir, pkg) })
}

func goBuild(root, workDir, pkg string) (string, error) {
	out := filepath.Join(workDir, "bin", strings.Trim(filepath.ToSlash(pkg), "./"), filepath.Base(pkg))
	return out, localenv.Build(root, out, pkg)
}

// Process is a child process started by StartProcess.
type Process struct {
	*localenv.Process
	out *processOutput
}

// StartProcess starts bin with env appended to a minimal base environment
// (PATH and HOME only, so nothing from the developer's shell leaks in) and
// args. It captures stdout and stderr together (see Output) and logs each
// line with t.Log, which go test shows with -v or when the test fails. At
// the end of the test it stops the process (SIGTERM, then SIGKILL after
// StopGrace) and kills whatever the process left in its process group.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	out := &processOutput{t: t}
	lp, err := localenv.StartProcess(bin, env, args, out)
	failOn(t, err)
	p := &Process{Process: lp, out: out}
	out.setPrefix(fmt.Sprintf("%s[%d]: ", lp.Name(), lp.Pid()))
	t.Cleanup(func() {
		if !p.Exited() {
			if err := p.Stop(); err != nil {
				t.Logf("harness: stopping %s: %v", lp.Name(), err)
			}
		}
		// Grandchildren may outlive the process itself.
		lp.KillGroup()
		out.close()
	})
	return p
}

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Stop sends SIGTERM and waits for the process to exit. It returns what Wait
// returns — nil when the process shut down cleanly with status 0 — or, if
// the process is still running after StopGrace, kills it and says so.
func (p *Process) Stop() error { return p.Process.Stop(StopGrace) }

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
		case <-p.Done():
			if strings.Contains(p.Output(), substr) {
				return
			}
			t.Fatalf("harness: %s exited (%v) before printing %q; its output:\n%s", p.Name(), p.Wait(), substr, p.Output())
		case <-deadline:
			t.Fatalf("harness: %s did not print %q within %s; its output:\n%s", p.Name(), substr, timeout, p.Output())
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
