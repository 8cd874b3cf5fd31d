package queue_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/queue"
)

// fakeSQS stands in for SQS's SendMessageBatch over HTTP, so that per-entry failures, which the
// emulator never produces, can be tested.
type fakeSQS struct {
	mu       sync.Mutex
	requests [][]string // the bodies of each request's entries
	sent     []string   // bodies accepted, in order
	calls    map[string]int
	// entryError decides the fate of one entry on its nth try (from 1): "" accepts it, "transient"
	// or "permanent" fails it.
	entryError func(body string, try int) string
	// requestError, when it returns true for a request (numbered from 1), fails the whole request.
	requestError func(n int) bool
}

// failEntry is an entryError that fails the entry whose body is body with verdict on each of its
// first tries tries (on every try when tries is 0) and accepts every other entry.
func failEntry(body, verdict string, tries int) func(string, int) string {
	return func(b string, try int) string {
		if b == body && (tries == 0 || try <= tries) {
			return verdict
		}
		return ""
	}
}

type fakeEntry struct {
	ID   string `json:"Id"`
	Body string `json:"MessageBody"`
}

func (f *fakeSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "AmazonSQS.SendMessageBatch" {
		http.Error(w, "unexpected call", http.StatusNotImplemented)
		return
	}
	var in struct{ Entries []fakeEntry }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	bodies := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		bodies[i] = e.Body
	}
	f.requests = append(f.requests, bodies)
	if f.requestError != nil && f.requestError(len(f.requests)) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"rejected by the fake"}`)
		return
	}
	type ok struct{ Id, MessageId, MD5OfMessageBody string }
	type failed struct {
		Id, Code, Message string
		SenderFault       bool
	}
	out := struct {
		Successful []ok
		Failed     []failed
	}{Successful: []ok{}, Failed: []failed{}}
	for _, e := range in.Entries {
		f.calls[e.Body]++
		verdict := ""
		if f.entryError != nil {
			verdict = f.entryError(e.Body, f.calls[e.Body])
		}
		switch verdict {
		case "":
			sum := md5.Sum([]byte(e.Body))
			out.Successful = append(out.Successful, ok{e.ID, "id-" + e.ID, hex.EncodeToString(sum[:])})
			f.sent = append(f.sent, e.Body)
		case "transient":
			out.Failed = append(out.Failed, failed{e.ID, "InternalError", "try again", false})
		default:
			out.Failed = append(out.Failed, failed{e.ID, "InvalidMessageContents", "bad body", true})
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(out)
}

func newFakeSQS(t *testing.T) (*fakeSQS, *sqs.Client) {
	t.Helper()
	f := &fakeSQS{calls: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client := sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  aws.AnonymousCredentials{},
	})
	return f, client
}

const fakeQueueURL = "http://fake/000000000000/events.fifo"

// outgoing makes n messages whose bodies are "m0", "m1", …; groups[i], when given, is message i's group.
func outgoing(n int, groups map[int]string) []queue.Outgoing {
	msgs := make([]queue.Outgoing, n)
	for i := range msgs {
		msgs[i] = queue.Outgoing{Body: fmt.Sprintf("m%d", i), GroupID: groups[i]}
	}
	return msgs
}

func TestSendNothing(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	require.NoError(t, queue.Send(context.Background(), client, fakeQueueURL, nil))
	require.Empty(t, f.requests)
}

func TestSendChunksByCountAndSize(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	require.NoError(t, queue.Send(context.Background(), client, fakeQueueURL, outgoing(25, nil)))
	require.Equal(t, []int{10, 10, 5}, requestSizes(f))
	require.Equal(t, bodies(outgoing(25, nil)), f.sent)

	f, client = newFakeSQS(t)
	big := make([]queue.Outgoing, 5)
	for i := range big {
		big[i] = queue.Outgoing{Body: fmt.Sprintf("%d%s", i, strings.Repeat("x", 100*1024))}
	}
	require.NoError(t, queue.Send(context.Background(), client, fakeQueueURL, big))
	require.Equal(t, []int{2, 2, 1}, requestSizes(f), "at most 256 KiB of bodies per request")
	require.Equal(t, bodies(big), f.sent)
}

func TestSendRetriesTransientEntryAndKeepsGroupOrder(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	f.entryError = failEntry("m9", "transient", 1)
	// m9 ends the first request; m10 and m11 are in the same group and in the second request.
	msgs := outgoing(14, map[int]string{9: "A", 10: "A", 11: "A", 12: "B"})

	require.NoError(t, queue.Send(context.Background(), client, fakeQueueURL, msgs))

	require.ElementsMatch(t, bodies(msgs), f.sent)
	require.Equal(t, []string{"m9", "m10", "m11"}, inOrder(f.sent, "m9", "m10", "m11"))
}

func TestSendReportsPermanentFailureAndHoldsBackItsGroup(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	f.entryError = failEntry("m9", "permanent", 0)
	msgs := outgoing(14, map[int]string{9: "A", 10: "A", 11: "A", 12: "B"})

	err := queue.Send(context.Background(), client, fakeQueueURL, msgs)

	var sendErr *queue.SendError
	require.ErrorAs(t, err, &sendErr)
	require.Equal(t, []int{9, 10, 11}, failedIndexes(sendErr))
	require.Equal(t, "InvalidMessageContents", sendErr.Failures[0].Code)
	require.Equal(t, 1, f.calls["m9"], "a sender fault is not retried")
	require.ErrorContains(t, err, "#9: InvalidMessageContents")
	require.Equal(t, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m12", "m13"}, f.sent)
}

func TestSendGivesUpOnEntryThatKeepsFailing(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	f.entryError = failEntry("m1", "transient", 0)

	err := queue.Send(context.Background(), client, fakeQueueURL, outgoing(3, nil))

	var sendErr *queue.SendError
	require.ErrorAs(t, err, &sendErr)
	require.Equal(t, []int{1}, failedIndexes(sendErr))
	require.Equal(t, "InternalError", sendErr.Failures[0].Code)
	require.Equal(t, 3, f.calls["m1"])
	require.Equal(t, []string{"m0", "m2"}, f.sent)
}

func TestSendFailedRequestDoesNotStopLaterChunks(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	f.requestError = func(n int) bool { return n == 1 }

	err := queue.Send(context.Background(), client, fakeQueueURL, outgoing(15, nil))

	var sendErr *queue.SendError
	require.ErrorAs(t, err, &sendErr)
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, failedIndexes(sendErr))
	require.Equal(t, []string{"m10", "m11", "m12", "m13", "m14"}, f.sent)
	require.ErrorContains(t, err, "rejected by the fake")
	require.ErrorContains(t, err, "and 5 more")
}

func TestSendStopsWhenContextDone(t *testing.T) {
	t.Parallel()
	f, client := newFakeSQS(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	err := queue.Send(ctx, client, fakeQueueURL, outgoing(3, nil))

	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, f.sent)
}

func requestSizes(f *fakeSQS) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	sizes := make([]int, len(f.requests))
	for i, r := range f.requests {
		sizes[i] = len(r)
	}
	return sizes
}

func bodies(msgs []queue.Outgoing) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Body
	}
	return out
}

// inOrder returns the wanted bodies in the order they appear in sent.
func inOrder(sent []string, want ...string) []string {
	var out []string
	for _, s := range sent {
		for _, w := range want {
			if s == w {
				out = append(out, s)
			}
		}
	}
	return out
}

func failedIndexes(err *queue.SendError) []int {
	out := make([]int, len(err.Failures))
	for i, f := range err.Failures {
		out[i] = f.Index
	}
	return out
}
