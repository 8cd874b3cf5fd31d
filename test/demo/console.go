package main

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// console is the demo's output. Commands run in the background (the live
// timeline) and in the foreground write to it at the same time, so it takes
// whole lines only: nobody's line is cut in two.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func newConsole(w io.Writer) *console { return &console{w: w} }

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// lines returns a writer that passes complete lines to the console; Close
// flushes a last line without a newline.
func (c *console) lines() *lineWriter { return &lineWriter{c: c} }

type lineWriter struct {
	c       *console
	mu      sync.Mutex
	partial []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	if i := bytes.LastIndexByte(l.partial, '\n'); i >= 0 {
		l.c.mu.Lock()
		_, err := l.c.w.Write(l.partial[:i+1])
		l.c.mu.Unlock()
		l.partial = append(l.partial[:0], l.partial[i+1:]...)
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (l *lineWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) == 0 {
		return nil
	}
	l.partial = append(l.partial, '\n')
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	_, err := l.c.w.Write(l.partial)
	l.partial = nil
	return err
}
