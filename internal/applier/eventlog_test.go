package applier

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

// TestEventLoggerWritesWhatWithWrites: the event's logger writes, line for line, what
// Logger.With with the same attributes writes, through the JSON and the text handler, with the
// record's own attributes, a group and more attributes added.
func TestEventLoggerWritesWhatWithWrites(t *testing.T) {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	opts := &slog.HandlerOptions{ReplaceAttr: noTime}
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, opts) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, opts) },
	} {
		var got, want bytes.Buffer
		write := func(l *slog.Logger) {
			l.Info("event applied", "outcome", "applied", "ms", 1.5, "removed", true, "a", 1, "b", "x\"y", "c", time.Duration(0))
			l.Warn("event not applied", "error", "boom")
			l.Debug("not written")
			l.With("extra", 1).Info("with more")
			l.WithGroup("g").Info("grouped", "k", "v")
		}
		base := slog.New(newHandler(&want)).With("function", "statemanager")
		write(base.With("stackId", "s/1", "event", "LAUNCH", "messageId", "m1"))
		write(eventLogger(slog.New(newHandler(&got)).With("function", "statemanager"), "s/1", "LAUNCH", "m1"))
		if got.String() != want.String() {
			t.Errorf("%s: the event's logger wrote\n%s\nLogger.With wrote\n%s", name, got.String(), want.String())
		}
		if want.Len() == 0 {
			t.Fatalf("%s: nothing written", name)
		}
	}
}
