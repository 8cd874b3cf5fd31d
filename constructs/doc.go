// Package stackseam is the AWS CDK construct that deploys stackseam: the FIFO event queue, the
// task queue, the bucket, the database secret (and database), the state manager and satisfier
// functions built from this module with a local `go build`, the notification topic, the
// EventBridge rules of the sweep and of schedules, alarms and a dashboard. NewStackseam with
// zero props deploys a complete, secure system; see README.md for the props, fields and defaults.
package stackseam
