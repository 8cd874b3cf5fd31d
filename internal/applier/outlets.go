package applier

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/internal/fence"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/internal/store"
)

// Outlet publishes outbox rows of one destination; an error means none of
// them may be taken as sent.
type Outlet func(ctx context.Context, rows []store.OutboxMessage) error

// TaskQueue is the outlet of the task queue (SQS standard): each row is one
// task message, held back by its delay.
func TaskQueue(client *sqs.Client, url string) Outlet {
	return func(ctx context.Context, rows []store.OutboxMessage) error {
		msgs := make([]queue.Outgoing, len(rows))
		for i, r := range rows {
			msgs[i] = queue.Outgoing{Body: r.Body, DelaySeconds: int32(r.DelaySeconds)}
		}
		return queue.Send(ctx, client, url, msgs)
	}
}

// EventQueue is the outlet of the event queue (SQS FIFO) for events the state
// manager sends itself: the group is the stack, and the deduplication id is the
// event's eventId, so a row sent twice is queued once. With a key, each message
// is signed like the satisfier's results (a parked task's TASK_ERROR is one).
func EventQueue(client *sqs.Client, url string, keys *signing.Source) Outlet {
	return func(ctx context.Context, rows []store.OutboxMessage) error {
		key, err := keys.Key(ctx)
		if err != nil {
			return fmt.Errorf("error reading the result signing key: %w", err)
		}
		msgs := make([]queue.Outgoing, len(rows))
		for i, r := range rows {
			var ev struct {
				EventID string `json:"eventId"`
			}
			_ = json.Unmarshal([]byte(r.Body), &ev)
			dedup := ev.EventID
			if dedup == "" {
				dedup = "outbox-" + strconv.FormatInt(r.ID, 10)
			}
			msgs[i] = queue.Outgoing{Body: r.Body, GroupID: r.StackID, DedupID: key.DedupID(r.StackID + "-" + dedup)}
			if key.Required() {
				msgs[i].Attributes = map[string]string{signing.Attribute: key.Sign(r.Body)}
			}
		}
		return queue.Send(ctx, client, url, msgs)
	}
}

// snsBatch is the most entries one PublishBatch call takes.
const snsBatch = 10

// NotificationTopic is the outlet of the notification topic (SNS). Each
// notification carries the message attributes stackId, machine, state and
// kind (and outcome, when a task's outcome caused it: drift, changes…), so
// subscriptions can filter without reading the body.
func NotificationTopic(client *sns.Client, topicARN string) Outlet {
	return func(ctx context.Context, rows []store.OutboxMessage) error {
		for start := 0; start < len(rows); start += snsBatch {
			chunk := rows[start:min(start+snsBatch, len(rows))]
			in := &sns.PublishBatchInput{TopicArn: aws.String(topicARN)}
			for i, r := range chunk {
				var n message.Notification
				if err := json.Unmarshal([]byte(r.Body), &n); err != nil {
					return fmt.Errorf("error reading notification %d: %w", r.ID, err)
				}
				attrs := map[string]snstypes.MessageAttributeValue{}
				for k, v := range map[string]string{"stackId": n.StackID, "machine": n.Machine, "state": n.State, "kind": n.Kind, "outcome": n.Outcome} {
					if v != "" {
						attrs[k] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
					}
				}
				in.PublishBatchRequestEntries = append(in.PublishBatchRequestEntries, snstypes.PublishBatchRequestEntry{
					Id: aws.String(strconv.Itoa(i)), Message: aws.String(r.Body), MessageAttributes: attrs})
			}
			out, err := client.PublishBatch(ctx, in)
			if err != nil {
				return fmt.Errorf("error publishing %d notifications: %w", len(chunk), err)
			}
			if len(out.Failed) > 0 {
				f := out.Failed[0]
				return fmt.Errorf("error publishing %d of %d notifications: %s: %s", len(out.Failed), len(chunk),
					aws.ToString(f.Code), aws.ToString(f.Message))
			}
		}
		return nil
	}
}

// Fences is the outlet of the stacks' fence objects (internal/fence) in bucket: each row is the
// set of a stack's current runs, and its id is the fence's generation, so a row sent again or
// after a newer one changes nothing.
func Fences(client *s3.Client, bucket string) Outlet {
	return func(ctx context.Context, rows []store.OutboxMessage) error {
		for _, r := range rows {
			var f fence.Fence
			if err := json.Unmarshal([]byte(r.Body), &f); err != nil {
				return fmt.Errorf("error reading the fence row %d: %w", r.ID, err)
			}
			f.Generation = r.ID
			if err := fence.Write(ctx, client, bucket, r.StackID, f); err != nil {
				return err
			}
		}
		return nil
	}
}
