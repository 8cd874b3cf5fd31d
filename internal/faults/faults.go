// Package faults lets stackseam's end-to-end tests inject failures into the
// shipped binaries: a crash between the database commit and publishing the
// outbox, SQS sends that fail, and poison messages. The points are compiled in
// only with the build tag `faultinject` (see BuildTag); a normal build gets the
// no-op versions in noop.go, which the compiler inlines away, so production
// binaries contain neither the points nor the code that reads EnvVar.
//
// A tagged binary does nothing unusual until EnvVar arms it, for example
//
//	STACKSEAM_FAULTS=crash-after-commit=0.2,sqs-send-fail=0.3,poison=POISON-MARKER
//
// The faults, each written name=value:
//   - crash-after-commit=P: after a commit that left task messages in the outbox,
//     and before they are published, the process kills itself (SIGKILL) with
//     probability P (0..1).
//   - crash-before-result=P: after a task ran, and before its result is
//     published, the satisfier kills itself (SIGKILL) with probability P.
//   - sqs-send-fail=P: a share P of SendMessageBatch requests fail before they
//     leave the process, as a network error would.
//   - poison=MARKER: every message whose body contains MARKER fails, every time
//     it is delivered.
//   - poison-panic=MARKER: every message whose body contains MARKER makes its
//     handler panic, every time it is delivered.
//   - crash-on-task=MARKER: the satisfier kills itself (SIGKILL) whenever it
//     receives a task message whose body contains MARKER, before running it, as
//     an out-of-memory kill or a hard timeout on that task would.
//   - hang-on-task=MARKER@DURATION: the satisfier stalls for DURATION (a Go
//     duration), ignoring cancellation, before running a task message whose body
//     contains MARKER; the task then runs and its result comes late.
//
// Each injected fault is announced on stderr as a line starting with
// Announcement, so a test can count what happened. An unknown name or a bad
// value makes the process exit at start-up with status 2, so a typo in a test
// cannot quietly arm nothing.
package faults

// BuildTag is the build tag that compiles the fault points in.
const BuildTag = "faultinject"

// EnvVar arms a binary built with BuildTag. Only tests set it.
const EnvVar = "STACKSEAM_FAULTS"

// Announcement starts the stderr line written for every injected fault, and
// the line listing the armed faults at start-up ("fault injection armed").
const Announcement = "fault injected:"

// The names of the faults, as EnvVar takes them.
const (
	CrashAfterCommit  = "crash-after-commit"
	CrashBeforeResult = "crash-before-result"
	SQSSendFail       = "sqs-send-fail"
	Poison            = "poison"
	PoisonPanic       = "poison-panic"
	CrashOnTask       = "crash-on-task"
	HangOnTask        = "hang-on-task"
)
