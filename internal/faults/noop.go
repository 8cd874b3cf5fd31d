//go:build !faultinject

package faults

// Enabled reports whether the fault points are compiled in (build tag
// faultinject). In this build they are not.
const Enabled = false

// AfterCommit is the point between the commit of an event and publishing
// its outbox rows; pending is how many rows wait to be published. It does
// nothing in a normal build.
func AfterCommit(pending int) {}

// BeforeResult is the point between running a task and publishing its
// result. It does nothing in a normal build.
func BeforeResult() {}

// SendBatch is the point before an SQS SendMessageBatch request. It returns
// nil in a normal build.
func SendBatch() error { return nil }

// Message is the point where a message handler starts on body. It returns
// nil in a normal build.
func Message(body string) error { return nil }

// Task is the point where the satisfier starts on a task message body. It does nothing in a
// normal build.
func Task(body string) {}
