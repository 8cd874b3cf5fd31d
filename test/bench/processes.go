package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stackseam/stackseam/test/localenv"
)

// lines is a process's output, split into lines; each line is handed to
// onLine, with the time it arrived, as soon as it is complete.
type lines struct {
	mu      sync.Mutex
	partial []byte
	all     []string
	onLine  func(line string, at time.Time)
}

func (l *lines) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if len(l.all) < 10000 {
			l.all = append(l.all, line)
		}
		if l.onLine != nil {
			l.onLine(line, now)
		}
	}
	return len(b), nil
}

// tail returns the last n lines, for error messages.
func (l *lines) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all[max(0, len(l.all)-n):], "\n")
}

// started is a process of ours and its output.
type started struct {
	proc *localenv.Process
	out  *lines
	// startedAt is just before the process was started; readyAt when the
	// line saying it is ready arrived, and readyLine that line.
	startedAt, readyAt time.Time
	readyLine          string
}

// start starts bin and waits until a line of its output contains ready;
// onLine sees every line.
func start(bin string, env []string, ready string, onLine func(string, time.Time)) (*started, error) {
	s := &started{}
	readyCh := make(chan struct{})
	var once sync.Once
	s.out = &lines{onLine: func(line string, at time.Time) {
		if strings.Contains(line, ready) {
			once.Do(func() {
				s.readyAt, s.readyLine = at, line
				close(readyCh)
			})
		}
		if onLine != nil {
			onLine(line, at)
		}
	}}
	s.startedAt = time.Now()
	proc, err := localenv.StartProcess(bin, env, nil, s.out)
	if err != nil {
		return nil, err
	}
	s.proc = proc
	select {
	case <-readyCh:
		return s, nil
	case <-proc.Done():
		return nil, fmt.Errorf("%s exited before it was ready:\n%s", bin, s.out.tail(20))
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s was not ready within a minute:\n%s", bin, s.out.tail(20))
	}
}

func (s *started) stop() {
	_ = s.proc.Stop(10 * time.Second)
	s.proc.KillGroup()
}
