// Package query is stackseam's read API: the questions operators ask about one deployment's
// stacks (list, stuck runs, one stack, its history, machines), with paginated answers of bounded
// size. Reader answers them from the database, read-only; Client asks a deployed query function
// the same questions through the Lambda Invoke API. Both implement API, so a caller (the CLI, the
// web console) is written once and works locally with a database URL or against AWS with IAM.
//
// The wire format is Request and Response as JSON: one question per request, unknown fields
// refused, every size bounded (see the Max* constants and README.md, "Operating a deployed
// stackseam").
package query

import (
	"context"
	"time"

	"github.com/stackseam/stackseam/internal/message"
)

// Bounds of requests and answers. Lambda's synchronous payload limit is 6 MB each way; answers
// stay far below it, so a page is never cut short by the transport.
const (
	// MaxRequestBytes bounds a request's JSON.
	MaxRequestBytes = 16 << 10
	// MaxResponseBytes is the budget of one answer's JSON: a page stops before the item that
	// would exceed it (it always holds at least one item, so paging makes progress; one item is
	// bounded by the 256 KiB SQS message that wrote it).
	MaxResponseBytes = 1 << 20
	// DefaultPageSize and MaxPageSize bound a page of stacks or stuck runs' stacks.
	DefaultPageSize = 100
	MaxPageSize     = 500
	// DefaultHistoryPageSize and MaxHistoryPageSize bound a page of history entries.
	DefaultHistoryPageSize = 500
	MaxHistoryPageSize     = 2000
	// maxNameBytes bounds a machine or state name in a filter.
	maxNameBytes = 256
	// maxCursorBytes bounds a cursor.
	maxCursorBytes = 1024
	// DefaultSummaryPageSize and MaxSummaryPageSize bound a page of stack summaries: rows
	// without metadata or tasks, so a page holds more of them than a page of stacks.
	DefaultSummaryPageSize = 500
	MaxSummaryPageSize     = 2000
	// DefaultTroublePageSize and MaxTroublePageSize bound a page of troubles.
	DefaultTroublePageSize = 500
	MaxTroublePageSize     = 2000
	// maxReasonBytes bounds a reason in an answer: reasons come from task results and messages
	// the state manager refused, whose size only the queue bounds.
	maxReasonBytes = 4096
)

// API is the read API. Reader (a database) and Client (a deployed query function) implement it.
// Every method returns *Error for a request it refuses.
type API interface {
	// Stacks lists live stacks, ordered by id.
	Stacks(ctx context.Context, req StacksRequest) (*StacksPage, error)
	// Stuck lists the task runs of live stacks that are past their deadline or that the state
	// manager failed itself (README.md, "stacks --stuck").
	Stuck(ctx context.Context, req StuckRequest) (*StuckPage, error)
	// Stack returns one stack, or why it is not there.
	Stack(ctx context.Context, req StackRequest) (*StackResult, error)
	// History returns a page of a stack's timeline; following it is polling with the cursor.
	History(ctx context.Context, req HistoryRequest) (*HistoryPage, error)
	// Machines lists the machines the database knows, or one machine's latest stored file.
	Machines(ctx context.Context, req MachinesRequest) (*MachinesPage, error)
	// Summaries lists live stacks as a table shows them: no metadata, task counts, the
	// overdue tasks, and how many stacks the filters select in all.
	Summaries(ctx context.Context, req SummariesRequest) (*SummariesPage, error)
	// Troubles lists what went wrong with stacks lately that their task lists do not show:
	// runs the state manager failed itself, messages rejected, outbox messages parked.
	Troubles(ctx context.Context, req TroublesRequest) (*TroublesPage, error)
	// StateCounts counts the live stacks per machine and state.
	StateCounts(ctx context.Context, req StateCountsRequest) (*StateCountsResult, error)
	// MachineVersion returns a stored machine version by its hash (the machine a stack last
	// ran on, Stack.MachineHash).
	MachineVersion(ctx context.Context, req MachineVersionRequest) (*MachineVersionResult, error)
	// ChangeMark returns a value that changes whenever history or rejections grow: a page
	// following the stacks asks it often, and reads again only when it changed.
	ChangeMark(ctx context.Context, req ChangeMarkRequest) (*ChangeMarkResult, error)
}

// Request is one question; exactly one field is set.
type Request struct {
	Stacks   *StacksRequest   `json:"stacks,omitempty"`
	Stuck    *StuckRequest    `json:"stuck,omitempty"`
	Stack    *StackRequest    `json:"stack,omitempty"`
	History  *HistoryRequest  `json:"history,omitempty"`
	Machines *MachinesRequest `json:"machines,omitempty"`

	Summaries      *SummariesRequest      `json:"summaries,omitempty"`
	Troubles       *TroublesRequest       `json:"troubles,omitempty"`
	StateCounts    *StateCountsRequest    `json:"stateCounts,omitempty"`
	MachineVersion *MachineVersionRequest `json:"machineVersion,omitempty"`
	ChangeMark     *ChangeMarkRequest     `json:"changeMark,omitempty"`
}

// Response is one answer: the field of the question asked, or Error.
type Response struct {
	Stacks   *StacksPage   `json:"stacks,omitempty"`
	Stuck    *StuckPage    `json:"stuck,omitempty"`
	Stack    *StackResult  `json:"stack,omitempty"`
	History  *HistoryPage  `json:"history,omitempty"`
	Machines *MachinesPage `json:"machines,omitempty"`

	Summaries      *SummariesPage        `json:"summaries,omitempty"`
	Troubles       *TroublesPage         `json:"troubles,omitempty"`
	StateCounts    *StateCountsResult    `json:"stateCounts,omitempty"`
	MachineVersion *MachineVersionResult `json:"machineVersion,omitempty"`
	ChangeMark     *ChangeMarkResult     `json:"changeMark,omitempty"`

	Error *Error `json:"error,omitempty"`
}

// Error is a refused request. Failures of the function itself (the database is down) are not
// Errors: the invocation fails, and Lambda counts it.
type Error struct {
	// Code is ErrInvalidRequest.
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrInvalidRequest is the Code of a request that is malformed, names an unknown field, or
// exceeds a bound.
const ErrInvalidRequest = "invalid-request"

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Filter keeps the live stacks of one machine, in one state; the zero value keeps them all.
type Filter struct {
	// Machine keeps only stacks of this machine.
	Machine string `json:"machine,omitempty"`
	// State keeps only stacks in this state.
	State string `json:"state,omitempty"`
}

// Paging is what every paged request carries: how long a page it wants and where it continues.
type Paging struct {
	// Limit is the page size, at most the question's Max…PageSize (MaxPageSize for stacks and
	// stuck runs). Defaults to its Default…PageSize.
	Limit int `json:"limit,omitempty"`
	// Cursor continues from a previous page (its NextCursor; a HistoryPage's Cursor).
	Cursor string `json:"cursor,omitempty"`
}

// StacksRequest lists live stacks. The zero value lists the first page of all of them.
type StacksRequest struct {
	Filter
	Paging
}

// StacksPage is a page of stacks.
type StacksPage struct {
	Stacks []Stack `json:"stacks"`
	// NextCursor is set when more stacks may follow.
	NextCursor string `json:"nextCursor,omitempty"`
}

// Stack is a live stack as the state manager stored it.
type Stack struct {
	ID             string              `json:"id"`
	Machine        string              `json:"machine"`
	State          string              `json:"state"`
	PreviousState  string              `json:"previousState,omitempty"`
	Metadata       message.Metadata    `json:"metadata"`
	Tasks          []message.StackTask `json:"tasks"`
	Version        int64               `json:"version"`
	CreatedAt      time.Time           `json:"createdAt"`
	StateEnteredAt time.Time           `json:"stateEnteredAt"`
	LastActivityAt time.Time           `json:"lastActivityAt"`
	// MachineHash is the machine version the stack's last applied event ran on (ask
	// MachineVersion for its file); empty for stacks stored before versions were kept.
	MachineHash string `json:"machineHash,omitempty"`
}

// StuckRequest lists stuck task runs among the live stacks the filters keep, a page of stacks
// at a time (a page may hold no runs and still have a NextCursor).
type StuckRequest struct {
	Filter
	// Since: runs the state manager settled itself at or after it are listed. Defaults to 24
	// hours before Now.
	Since *time.Time `json:"since,omitempty"`
	// Now is the time deadlines are judged at. Defaults to the answerer's clock.
	Now *time.Time `json:"now,omitempty"`
	// Paging's Limit is how many stacks one page looks at.
	Paging
}

// StuckPage is the stuck runs of a page of stacks.
type StuckPage struct {
	Runs       []StuckRun `json:"runs"`
	NextCursor string     `json:"nextCursor,omitempty"`
}

// StuckRun is a run past its deadline, or one the state manager settled itself.
type StuckRun struct {
	StackID string `json:"stackId"`
	Machine string `json:"machine"`
	State   string `json:"state"`
	Task    string `json:"task"`
	RunID   string `json:"taskRunId"`
	// Why is WhyOverdue, or how the state manager settled it: message.SettledByDeadline or
	// message.SettledByDeadLetter.
	Why string `json:"why"`
	// At is the deadline of an overdue run, or when the run was settled.
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// WhyOverdue is the Why of a pending run past its deadline.
const WhyOverdue = "overdue"

// StackRequest asks for one stack.
type StackRequest struct {
	ID string `json:"id"`
}

// StackResult is one stack, or why it is not there.
type StackResult struct {
	// Stack is nil when the stack does not exist.
	Stack *Stack `json:"stack"`
	// RemovedAt is when its latest life ended, for a removed stack.
	RemovedAt *time.Time `json:"removedAt,omitempty"`
	// Rejected counts the rejected messages that named a stack that does not exist, and
	// LastRejectedAt and LastReason describe the latest.
	Rejected       int        `json:"rejected,omitempty"`
	LastRejectedAt *time.Time `json:"lastRejectedAt,omitempty"`
	LastReason     string     `json:"lastReason,omitempty"`
}

// HistoryRequest asks for a page of a stack's timeline: its history rows and the rejected
// messages that named it while it did not exist, in time order.
type HistoryRequest struct {
	StackID string `json:"stackId"`
	// Paging: at most MaxHistoryPageSize entries, DefaultHistoryPageSize by default.
	Paging
}

// HistoryPage is a page of a timeline.
type HistoryPage struct {
	Entries []Entry `json:"entries"`
	// Cursor is the position after the last entry returned (or the request's cursor when there
	// were none): pass it to read on, now when More is set, or later to follow the stack.
	Cursor string `json:"cursor"`
	// More says entries beyond this page exist already.
	More bool `json:"more"`
}

// Entry is one thing that happened to a stack (the engine.Kind* of its history).
type Entry struct {
	At         time.Time      `json:"at"`
	Kind       string         `json:"kind"`
	Machine    string         `json:"machine,omitempty"`
	Event      string         `json:"event,omitempty"`
	FromState  string         `json:"fromState,omitempty"`
	ToState    string         `json:"toState,omitempty"`
	Task       string         `json:"task,omitempty"`
	TaskRunID  string         `json:"taskRunId,omitempty"`
	DurationMS *int64         `json:"durationMs,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Detail     map[string]any `json:"detail,omitempty"`
	MessageID  string         `json:"messageId,omitempty"`
	// StackAbsent marks a rejection of a message that arrived while the stack did not exist,
	// so it is in no history row.
	StackAbsent bool `json:"stackAbsent,omitempty"`
}

// MachinesRequest lists machines, or with Name returns that machine's latest stored file.
type MachinesRequest struct {
	Name string `json:"name,omitempty"`
}

// MachinesPage lists the machines of live stacks and of stored versions.
type MachinesPage struct {
	Machines []Machine `json:"machines"`
	// Body is the YAML of Name's latest stored version, when a Name was asked for and one is
	// stored.
	Body string `json:"body,omitempty"`
}

// Machine is one machine the database knows.
type Machine struct {
	Name       string `json:"name"`
	LiveStacks int    `json:"liveStacks"`
	// LatestVersion is the hash of the version a stack was most recently pinned to first.
	LatestVersion  string     `json:"latestVersion,omitempty"`
	LatestStoredAt *time.Time `json:"latestStoredAt,omitempty"`
}

// SummariesRequest lists summaries of live stacks, ordered by id. The zero value lists the first
// page of all of them.
type SummariesRequest struct {
	Filter
	// IDContains keeps the stacks whose id contains it, ignoring case.
	IDContains string `json:"idContains,omitempty"`
	// Now is the time deadlines are judged at (Summary.Overdue). Defaults to the answerer's
	// clock.
	Now *time.Time `json:"now,omitempty"`
	// Paging: at most MaxSummaryPageSize summaries, DefaultSummaryPageSize by default.
	Paging
}

// SummariesPage is a page of stack summaries.
type SummariesPage struct {
	Summaries []Summary `json:"summaries"`
	// Total is how many live stacks the filters select, on every page.
	Total      int    `json:"total"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// Summary is what a table of stacks shows of one: its row without metadata, and its tasks
// counted.
type Summary struct {
	ID             string    `json:"id"`
	Machine        string    `json:"machine"`
	State          string    `json:"state"`
	CreatedAt      time.Time `json:"createdAt"`
	StateEnteredAt time.Time `json:"stateEnteredAt"`
	LastActivityAt time.Time `json:"lastActivityAt"`
	Pending        int       `json:"pending"`
	Failed         int       `json:"failed"`
	// Overdue names the pending tasks past their deadline at the request's Now.
	Overdue []string `json:"overdue,omitempty"`
}

// TroublesRequest lists troubles, ordered by stack id. The zero value lists those of the last
// 24 hours of every stack.
type TroublesRequest struct {
	// StackID keeps one stack's troubles.
	StackID string `json:"stackId,omitempty"`
	// Since: runs settled and messages rejected at or after it are listed (parked messages
	// stay until someone deals with them, and are always listed). Defaults to 24 hours before
	// the answerer's clock.
	Since *time.Time `json:"since,omitempty"`
	// Paging: at most MaxTroublePageSize troubles, DefaultTroublePageSize by default.
	Paging
}

// TroublesPage is a page of troubles.
type TroublesPage struct {
	Troubles   []Trouble `json:"troubles"`
	NextCursor string    `json:"nextCursor,omitempty"`
}

// Trouble is one thing that went wrong with a stack: a run the state manager failed itself
// (one Trouble per run), or its rejected or parked messages (one Trouble per stack, counted).
type Trouble struct {
	StackID string `json:"stackId"`
	// Kind is TroubleSettled, TroubleRejected or TroubleParked.
	Kind string `json:"kind"`
	// At is when the run was settled, or when the latest message was rejected or parked.
	At time.Time `json:"at"`
	// Task, RunID and SettledBy (message.SettledByDeadline or message.SettledByDeadLetter)
	// name a settled run.
	Task      string `json:"task,omitempty"`
	RunID     string `json:"taskRunId,omitempty"`
	SettledBy string `json:"settledBy,omitempty"`
	// Count is how many messages were rejected or parked.
	Count int `json:"count,omitempty"`
	// Reason is the settled run's, or the latest message's.
	Reason string `json:"reason,omitempty"`
}

// The kinds of Trouble.
const (
	TroubleSettled  = "settled"
	TroubleRejected = "rejected"
	TroubleParked   = "parked"
)

// StateCountsRequest counts live stacks per machine and state.
type StateCountsRequest struct{}

// StateCountsResult is the count of live stacks per machine and state.
type StateCountsResult struct {
	// Counts are ordered by machine and state.
	Counts []StateCount `json:"counts"`
	// Cut says the answer stopped at its byte budget (tens of thousands of machine states: not
	// a shape stackseam is used in).
	Cut bool `json:"cut,omitempty"`
}

// StateCount is how many live stacks are in one state of a machine.
type StateCount struct {
	Machine string `json:"machine"`
	State   string `json:"state"`
	Stacks  int    `json:"stacks"`
}

// MachineVersionRequest asks for a stored machine version.
type MachineVersionRequest struct {
	Hash string `json:"hash"`
}

// MachineVersionResult is a stored machine version; Name is empty when none is stored under
// the hash.
type MachineVersionResult struct {
	Name string `json:"name,omitempty"`
	Body string `json:"body,omitempty"`
}

// ChangeMarkRequest asks for the change mark.
type ChangeMarkRequest struct{}

// ChangeMarkResult holds the change mark: compare it for equality only.
type ChangeMarkResult struct {
	Mark string `json:"mark"`
}
