package terraform

import (
	"fmt"
	"sync"

	"github.com/stackseam/stackseam/internal/executor/redact"
)

// maxLogBytes bounds the log kept in memory for one run. Beyond it the start and the end are
// kept: the start says what ran, the end says how it failed.
const maxLogBytes = 16 << 20

// runLog collects one run's log: Terraform's stdout and stderr (written from two goroutines by
// terraform-exec) and the executor's own lines.
type runLog struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte
	dropped int64
	half    int
	// secrets are the run's own secret variables (NAME=value: the credentials endpoint's token and
	// session secrets of a scoped run),
	// masked like the process's.
	secrets []string
}

// addSecrets adds NAME=value secrets to mask; the credentials endpoint adds each new session's
// while Terraform runs.
func (l *runLog) addSecrets(kv ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, kv...)
}

func (l *runLog) hasSecrets() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.secrets) > 0
}

// redact masks the run's own secrets in s.
func (l *runLog) redact(s string) string {
	l.mu.Lock()
	secrets := append([]string(nil), l.secrets...)
	l.mu.Unlock()
	if len(secrets) == 0 {
		return s
	}
	return redact.FromEnviron(secrets).String(s)
}

// redactedError is a run's error with the run's own secrets masked in its text; errors.Is and As
// still see the error it masks.
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func newRunLog(max int) *runLog { return &runLog{half: max / 2} }

// Write never fails: losing log lines must not fail a Terraform run.
func (l *runLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if room := l.half - len(l.head); room > 0 {
		k := min(room, len(p))
		l.head = append(l.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	l.tail = append(l.tail, p...)
	// Trim only when the tail is twice its size, so that trimming costs O(1) per byte written.
	if len(l.tail) > 2*l.half {
		cut := len(l.tail) - l.half
		l.dropped += int64(cut)
		l.tail = append(l.tail[:0], l.tail[cut:]...)
	}
	return n, nil
}

// Printf lets terraform-exec log the commands it runs here.
func (l *runLog) Printf(format string, args ...any) {
	fmt.Fprintf(l, format+"\n", args...)
}

// String returns the log, with a line saying how much was left out in the middle.
func (l *runLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	tail := l.tail
	dropped := l.dropped
	if len(tail) > l.half {
		dropped += int64(len(tail) - l.half)
		tail = tail[len(tail)-l.half:]
	}
	if dropped == 0 {
		return string(l.head) + string(tail)
	}
	return string(l.head) + fmt.Sprintf("\n…(%d bytes of log left out)…\n", dropped) + string(tail)
}
