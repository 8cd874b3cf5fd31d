package query

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/store"
)

// Reader answers the read API from the state manager's database. Give it a store opened with
// store.Config.ReadOnly: then no statement it runs can write, whatever it is asked.
type Reader struct {
	st *store.Store
	// now is the clock Stuck judges deadlines by when the request names no time.
	now func() time.Time
}

// NewReader returns a Reader on st.
func NewReader(st *store.Store) *Reader { return &Reader{st: st, now: time.Now} }

var _ API = (*Reader)(nil)

func invalid(format string, args ...any) *Error {
	return &Error{Code: ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// checkName bounds a filter value.
func checkName(field, v string) error {
	if len(v) > maxNameBytes || !utf8.ValidString(v) {
		return invalid("%s: want valid UTF-8 of at most %d bytes", field, maxNameBytes)
	}
	return nil
}

// openPage checks what every paged question carries, in this order: its page size p.Limit (def
// when 0, at most most), its filters (field and value pairs, each bounded by checkName) and its
// cursor, which must come from an answer of the same kind. It returns the page size and the
// position.
func openPage(kind string, p Paging, def, most int, filters ...string) (int, cursor, error) {
	n := p.Limit
	if n < 0 || n > most {
		return 0, cursor{}, invalid("limit: want 1 to %d, not %d", most, n)
	}
	if n == 0 {
		n = def
	}
	for i := 0; i+1 < len(filters); i += 2 {
		if err := checkName(filters[i], filters[i+1]); err != nil {
			return 0, cursor{}, err
		}
	}
	c, err := decodeCursor(kind, p.Cursor)
	return n, c, err
}

// fields are f's filters as openPage takes them.
func (f Filter) fields() []string { return []string{"machine", f.Machine, "state", f.State} }

// listOptions selects the stacks f keeps, after and up to limit.
func (f Filter) listOptions(after string, limit int) store.ListOptions {
	return store.ListOptions{Machine: f.Machine, State: f.State, After: after, Limit: limit}
}

// defaultSince is how far back settled runs and rejections are listed when a request names no
// time.
const defaultSince = 24 * time.Hour

// timeOr is *t, or def when the request left t out.
func timeOr(t *time.Time, def time.Time) time.Time {
	if t != nil {
		return *t
	}
	return def
}

// fit returns the items a page holds: at most limit of them, and no more than fit the answer's
// byte budget (always the first, so paging makes progress). more says items were left out.
func fit[T any](items []T, limit int) (page []T, more bool) {
	page = []T{}
	var b budget
	for i, it := range items {
		if i == limit || !b.fits(it) {
			return page, true
		}
		page = append(page, it)
	}
	return page, false
}

// cursor is what a cursor string carries: the question it continues (so one cannot be passed to
// another) and the position. Opaque to callers: base64url of this JSON.
type cursor struct {
	Kind string `json:"k"`
	// After is the last stack id of a page of stacks.
	After string `json:"a,omitempty"`
	// History and Rejection are the last history row and stray rejection returned.
	History   int64 `json:"h,omitempty"`
	Rejection int64 `json:"r,omitempty"`
	// Trouble is the kind of the last trouble returned (with After its stack and History the
	// history row of a settled run).
	Trouble string `json:"t,omitempty"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(kind, s string) (cursor, error) {
	var c cursor
	if s == "" {
		return cursor{Kind: kind}, nil
	}
	if len(s) > maxCursorBytes {
		return c, invalid("cursor: longer than %d bytes", maxCursorBytes)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = strictDecode(raw, &c)
	}
	if err != nil || c.Kind != kind || c.History < 0 || c.Rejection < 0 {
		return c, invalid("cursor: not a cursor of a %s answer", kind)
	}
	return c, nil
}

// strictDecode decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// budget counts the bytes of a page's items so the page stops before the answer would exceed
// MaxResponseBytes; the first item always fits, so paging makes progress.
type budget struct {
	used, items int
}

// envelope is room left for the answer's fields around the items.
const envelope = 4 << 10

func (b *budget) fits(item any) bool {
	raw, err := json.Marshal(item)
	if err != nil {
		return false
	}
	if b.items > 0 && b.used+len(raw)+1 > MaxResponseBytes-envelope {
		return false
	}
	b.used += len(raw) + 1
	b.items++
	return true
}

func newStack(s *engine.Stack) Stack {
	out := Stack{ID: s.ID, Machine: s.Machine, State: s.State, PreviousState: s.PreviousState, Metadata: s.Metadata,
		Tasks: s.Tasks, Version: s.Version, CreatedAt: s.CreatedAt.UTC(), StateEnteredAt: s.StateEnteredAt.UTC(),
		LastActivityAt: s.LastActivityAt.UTC(), MachineHash: s.MachineHash}
	if out.Metadata == nil {
		out.Metadata = message.Metadata{}
	}
	if out.Tasks == nil {
		out.Tasks = []message.StackTask{}
	}
	return out
}

// Stacks implements API.
func (r *Reader) Stacks(ctx context.Context, req StacksRequest) (*StacksPage, error) {
	limit, c, err := openPage("stacks", req.Paging, DefaultPageSize, MaxPageSize, req.fields()...)
	if err != nil {
		return nil, err
	}
	// One more than the page, to know whether another follows.
	stacks, err := r.st.ListStacks(ctx, req.listOptions(c.After, limit+1))
	if err != nil {
		return nil, err
	}
	items := make([]Stack, len(stacks))
	for i, s := range stacks {
		items[i] = newStack(s)
	}
	page := &StacksPage{}
	var more bool
	if page.Stacks, more = fit(items, limit); more {
		page.NextCursor = cursor{Kind: "stacks", After: page.Stacks[len(page.Stacks)-1].ID}.encode()
	}
	return page, nil
}

// Stuck implements API.
func (r *Reader) Stuck(ctx context.Context, req StuckRequest) (*StuckPage, error) {
	limit, c, err := openPage("stuck", req.Paging, DefaultPageSize, MaxPageSize, req.fields()...)
	if err != nil {
		return nil, err
	}
	now := timeOr(req.Now, r.now())
	since := timeOr(req.Since, now.Add(-defaultSince))
	stacks, err := r.st.ListStacks(ctx, req.listOptions(c.After, limit+1))
	if err != nil {
		return nil, err
	}
	page := &StuckPage{Runs: []StuckRun{}}
	if len(stacks) > limit {
		stacks = stacks[:limit]
		page.NextCursor = cursor{Kind: "stuck", After: stacks[limit-1].ID}.encode()
	}
	if len(stacks) == 0 {
		return page, nil
	}
	byID := map[string]*engine.Stack{}
	ids := make([]string, len(stacks))
	for i, s := range stacks {
		byID[s.ID], ids[i] = s, s.ID
		for _, t := range s.Tasks {
			if t.Status == message.TaskPending && t.Deadline != nil && !t.Deadline.After(now) {
				page.Runs = append(page.Runs, StuckRun{StackID: s.ID, Machine: s.Machine, State: s.State, Task: t.Name,
					RunID: t.RunID, Why: WhyOverdue, At: t.Deadline.UTC()})
			}
		}
	}
	settled, err := r.st.SettledRunsOf(ctx, ids, since)
	if err != nil {
		return nil, err
	}
	for _, run := range settled {
		s := byID[run.StackID]
		page.Runs = append(page.Runs, StuckRun{StackID: s.ID, Machine: s.Machine, State: s.State, Task: run.Task,
			RunID: run.RunID, Why: run.SettledBy, At: run.At, Reason: message.CutUTF8(run.Reason, 4096)})
	}
	return page, nil
}

// Stack implements API.
func (r *Reader) Stack(ctx context.Context, req StackRequest) (*StackResult, error) {
	if !message.ValidStackID(req.ID) {
		return nil, invalid("id: %q is not a valid stack id", cutForMessage(req.ID))
	}
	s, err := r.st.GetStack(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	if s != nil {
		item := newStack(s)
		return &StackResult{Stack: &item}, nil
	}
	a, err := r.st.Absent(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	return &StackResult{RemovedAt: a.RemovedAt, Rejected: a.Rejected, LastRejectedAt: a.LastRejectedAt,
		LastReason: a.LastReason}, nil
}

// cutForMessage keeps an echoed request value short.
func cutForMessage(s string) string { return message.CutUTF8(s, 80) }

// History implements API.
func (r *Reader) History(ctx context.Context, req HistoryRequest) (*HistoryPage, error) {
	if !message.ValidStackID(req.StackID) {
		return nil, invalid("stackId: %q is not a valid stack id", cutForMessage(req.StackID))
	}
	limit, c, err := openPage("history", req.Paging, DefaultHistoryPageSize, MaxHistoryPageSize)
	if err != nil {
		return nil, err
	}
	rows, err := r.st.History(ctx, req.StackID, store.HistoryOptions{AfterID: c.History, Limit: limit + 1})
	if err != nil {
		return nil, err
	}
	stray, err := r.st.StrayRejections(ctx, req.StackID, c.Rejection, limit+1)
	if err != nil {
		return nil, err
	}
	// Merge the two id-ordered lists by time (history first on a tie, as rows written together
	// keep their order); every prefix of the merge is a prefix of each list, so the cursor is
	// the last id taken from each.
	type item struct {
		entry     Entry
		history   int64
		rejection int64
	}
	var merged []item
	for _, h := range rows {
		e := Entry{At: h.At, Kind: h.Kind, Machine: h.Machine, Event: h.Event, FromState: h.FromState, ToState: h.ToState,
			Task: h.Task, TaskRunID: h.TaskRunID, Reason: h.Reason, Detail: h.Detail, MessageID: h.MessageID}
		if h.Duration != nil {
			ms := h.Duration.Milliseconds()
			e.DurationMS = &ms
		}
		merged = append(merged, item{entry: e, history: h.ID})
	}
	for _, rej := range stray {
		merged = append(merged, item{rejection: rej.ID, entry: Entry{At: rej.At, Kind: engine.KindRejected, Event: rej.Event,
			Reason: rej.Reason, MessageID: rej.MessageID, StackAbsent: true}})
	}
	sort.SliceStable(merged, func(i, j int) bool { return merged[i].entry.At.Before(merged[j].entry.At) })
	// Rows past the end of the shorter list may come before unread rows of the longer one: only
	// items up to the earliest last item of a full list are certain to be in order.
	cut := len(merged)
	if len(rows) > limit {
		cut = min(cut, slices.IndexFunc(merged, func(it item) bool { return it.history == rows[limit].ID }))
	}
	if len(stray) > limit {
		cut = min(cut, slices.IndexFunc(merged, func(it item) bool { return it.rejection == stray[limit].ID }))
	}
	page := &HistoryPage{Entries: []Entry{}, More: cut < len(merged)}
	var b budget
	for _, it := range merged[:cut] {
		if len(page.Entries) == limit || !b.fits(it.entry) {
			page.More = true
			break
		}
		page.Entries = append(page.Entries, it.entry)
		if it.history != 0 {
			c.History = it.history
		} else {
			c.Rejection = it.rejection
		}
	}
	page.Cursor = c.encode()
	return page, nil
}

// Machines implements API.
func (r *Reader) Machines(ctx context.Context, req MachinesRequest) (*MachinesPage, error) {
	if err := checkName("name", req.Name); err != nil {
		return nil, err
	}
	list, err := r.st.Machines(ctx)
	if err != nil {
		return nil, err
	}
	var items []Machine
	for _, m := range list {
		if req.Name == "" || m.Name == req.Name {
			items = append(items, Machine{Name: m.Name, LiveStacks: m.LiveStacks, LatestVersion: m.LatestVersion,
				LatestStoredAt: m.LatestStoredAt})
		}
	}
	page := &MachinesPage{}
	// Cut at the byte budget: thousands of machine names are not a shape stackseam is used in.
	page.Machines, _ = fit(items, len(items))
	if req.Name != "" {
		body, err := r.st.LatestMachineVersion(ctx, req.Name)
		switch {
		case errors.Is(err, store.ErrNoMachineVersion):
		case err != nil:
			return nil, err
		case len(body) > MaxResponseBytes-envelope:
			return nil, fmt.Errorf("machine %s: its latest stored file is %d bytes, more than an answer may hold", req.Name, len(body))
		default:
			page.Body = string(body)
		}
	}
	return page, nil
}

// Handle answers one request in the wire format: the query function's handler. A refused
// request is a Response with Error; an error return is a failure of the answerer (the database
// is unreachable), for Lambda to count as a failed invocation.
func (r *Reader) Handle(ctx context.Context, payload []byte) (*Response, error) {
	req, bad := ParseRequest(payload)
	if bad != nil {
		return &Response{Error: bad}, nil
	}
	resp, err := Answer(ctx, r, req)
	var refused *Error
	if errors.As(err, &refused) {
		return &Response{Error: refused}, nil
	}
	return resp, err
}
