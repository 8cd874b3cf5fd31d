package applier

import (
	"context"
	"log/slog"
)

// eventLogger returns l with an event's attributes (stackId, event, messageId), writing exactly
// the lines l.With would give, but without what With costs for every event: it clones the
// handler and formats the attributes before it knows a line will be written (most events write
// one line, and with the level above Info none). Here the attributes are added when a line is.
func eventLogger(l *slog.Logger, stackID, event, messageID string) *slog.Logger {
	return slog.New(&eventAttrs{h: l.Handler(), attrs: [3]slog.Attr{
		slog.String("stackId", stackID), slog.String("event", event), slog.String("messageId", messageID)}})
}

// eventAttrs is a handler adding attrs ahead of every record's own, as a handler's WithAttrs
// does.
type eventAttrs struct {
	h     slog.Handler
	attrs [3]slog.Attr
}

func (e *eventAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return e.h.Enabled(ctx, level)
}

func (e *eventAttrs) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(e.attrs[:]...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return e.h.Handle(ctx, out)
}

func (e *eventAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return e.h.WithAttrs(e.attrs[:]).WithAttrs(attrs)
}

func (e *eventAttrs) WithGroup(name string) slog.Handler {
	return e.h.WithAttrs(e.attrs[:]).WithGroup(name)
}
