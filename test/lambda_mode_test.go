package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// runtimeAPI is a protocol-level fake of the Lambda Runtime API
// (/2018-06-01/runtime/...): it hands the function one queued invocation per
// "next" call and collects the responses, so the shipped binary runs its
// Lambda code path here.
type runtimeAPI struct {
	invocations chan runtimeInvocation
	mu          sync.Mutex
	responses   map[string]chan runtimeResponse
	srv         *httptest.Server
}

type runtimeInvocation struct {
	id    string
	event []byte
}

type runtimeResponse struct {
	body    []byte
	isError bool
}

func newRuntimeAPI(t *testing.T) *runtimeAPI {
	r := &runtimeAPI{invocations: make(chan runtimeInvocation, 10), responses: map[string]chan runtimeResponse{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, req *http.Request) {
		select {
		case inv := <-r.invocations:
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			w.Header().Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(time.Now().Add(time.Minute).UnixMilli()))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:statemanager")
			_, _ = w.Write(inv.event)
		case <-req.Context().Done():
		}
	})
	respond := func(isError bool) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			r.mu.Lock()
			ch := r.responses[req.PathValue("id")]
			r.mu.Unlock()
			if ch != nil {
				ch <- runtimeResponse{body: body, isError: isError}
			}
			w.WriteHeader(http.StatusAccepted)
		}
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", respond(false))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", respond(true))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		t.Errorf("function failed to initialise: %s", body)
		w.WriteHeader(http.StatusAccepted)
	})
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

// invoke sends one SQS event and waits for the function's answer.
func (r *runtimeAPI) invoke(t *testing.T, ev events.SQSEvent) events.SQSEventResponse {
	t.Helper()
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	res := r.invokeRaw(t, body)
	require.False(t, res.isError, "invocation failed: %s", res.body)
	var out events.SQSEventResponse
	require.NoError(t, json.Unmarshal(res.body, &out))
	return out
}

// invokeRaw sends any payload and returns the function's answer.
func (r *runtimeAPI) invokeRaw(t *testing.T, body []byte) runtimeResponse {
	t.Helper()
	id := newID()
	ch := make(chan runtimeResponse, 1)
	r.mu.Lock()
	r.responses[id] = ch
	r.mu.Unlock()
	r.invocations <- runtimeInvocation{id: id, event: body}
	select {
	case res := <-ch:
		return res
	case <-time.After(60 * time.Second):
		t.Fatal("the function never answered the invocation")
		return runtimeResponse{}
	}
}

func sqsRecord(id, group, body string) events.SQSMessage {
	return events.SQSMessage{MessageId: id, ReceiptHandle: "rh-" + id, Body: body, EventSource: "aws:sqs",
		Attributes: map[string]string{"MessageGroupId": group, "ApproximateReceiveCount": "1"}}
}

func failedIDs(res events.SQSEventResponse) []string {
	var ids []string
	for _, f := range res.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return ids
}

// mappingAPI is a protocol-level fake of the Lambda API's event-source-mapping calls
// (ListEventSourceMappings, UpdateEventSourceMapping) for one mapping, recording each Enabled
// value the function sets.
type mappingAPI struct {
	mu      sync.Mutex
	enabled bool
	updates []bool
	srv     *httptest.Server
}

func newMappingAPI(t *testing.T, functionName, queueARN string) *mappingAPI {
	m := &mappingAPI{enabled: true}
	const uuid = "3f1e2d4c-0000-4000-8000-000000000001"
	state := func() map[string]any {
		st := map[bool]string{true: "Enabled", false: "Disabled"}[m.enabled]
		return map[string]any{"UUID": uuid, "State": st, "EventSourceArn": queueARN,
			"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:" + functionName}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2015-03-31/event-source-mappings/", func(w http.ResponseWriter, req *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		var list []any
		if req.URL.Query().Get("FunctionName") == functionName && req.URL.Query().Get("EventSourceArn") == queueARN {
			list = append(list, state())
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"EventSourceMappings": list})
	})
	mux.HandleFunc("PUT /2015-03-31/event-source-mappings/{uuid}", func(w http.ResponseWriter, req *http.Request) {
		var body struct{ Enabled *bool }
		if req.PathValue("uuid") != uuid || json.NewDecoder(req.Body).Decode(&body) != nil || body.Enabled == nil {
			http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.enabled = *body.Enabled
		m.updates = append(m.updates, *body.Enabled)
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(state())
	})
	m.srv = httptest.NewServer(mux)
	t.Cleanup(m.srv.Close)
	return m
}

func (m *mappingAPI) state() (enabled bool, updates []bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enabled, append([]bool(nil), m.updates...)
}

// TestStateManagerInLambdaMode runs the shipped binary under a fake Lambda
// runtime: a good batch is applied with no failures reported; while the
// database is down every message is reported failed, so Lambda retries them,
// and the function disables its own event-source mapping so that the outage
// spends no receive counts; the scheduled tick enables it again once the
// database is back.
func TestStateManagerInLambdaMode(t *testing.T) {
	t.Parallel()
	srv := harness.NewDatabaseServer(t, harness.TLSOnly())
	s := newSystem(t, systemOptions{server: srv})
	rt := newRuntimeAPI(t)
	const queueARN = "arn:aws:sqs:us-east-1:123456789012:events.fifo"
	mappings := newMappingAPI(t, "statemanager", queueARN)
	s.startStateManager(1, "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(rt.srv.URL, "http://"),
		"EVENT_QUEUE_ARN="+queueARN, "AWS_ENDPOINT_URL_LAMBDA="+mappings.srv.URL,
		"AWS_LAMBDA_FUNCTION_NAME=statemanager", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_LOG_GROUP_NAME=test", "AWS_LAMBDA_LOG_STREAM_NAME=test")

	res := rt.invoke(t, events.SQSEvent{Records: []events.SQSMessage{
		sqsRecord("m1", "lam-1", `{"stackId":"lam-1","event":"LAUNCH","machine":"pair"}`),
		sqsRecord("m2", "lam-2", `{"stackId":"lam-2","event":"LAUNCH","machine":"pair"}`),
		sqsRecord("m3", "lam-1", `{"stackId":"lam-1","event":"NEXT"}`),
		sqsRecord("m4", "bad", `{not json`),
	}})
	require.Empty(t, failedIDs(res), "applied and rejected messages are both done")
	require.Equal(t, "PROVISION", s.stack("lam-1").State)
	require.Equal(t, "PROVISION", s.stack("lam-2").State)
	require.Equal(t, 2, s.count("SELECT count(*) FROM rejections"))
	require.Len(t, s.receiveTasks(4), 4, "task messages were published from Lambda mode too")

	// A scheduled invocation (EventBridge) runs the sweep instead of a batch.
	tick := rt.invokeRaw(t, []byte(`{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`))
	require.False(t, tick.isError, "sweep failed: %s", tick.body)
	require.JSONEq(t, `{"ok":true}`, string(tick.body))
	bad := rt.invokeRaw(t, []byte(`{"hello":"world"}`))
	require.True(t, bad.isError, "an unknown invocation is an error, not silently a sweep")

	srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	done := make(chan events.SQSEventResponse, 1)
	go func() {
		done <- rt.invoke(t, events.SQSEvent{Records: []events.SQSMessage{
			sqsRecord("m5", "lam-1", `{"stackId":"lam-1","event":"RETRY_PENDING_TASKS"}`),
			sqsRecord("m6", "lam-1", `{"stackId":"lam-1","event":"RETRY_FAILED_TASKS"}`),
			sqsRecord("m7", "lam-2", `{"stackId":"lam-2","event":"RETRY_PENDING_TASKS"}`),
		}})
	}()
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("no answer while the database is down")
	}
	require.ElementsMatch(t, []string{"m5", "m6", "m7"}, failedIDs(res),
		"transient failures are reported per message; m6 fails because m5 of its stack failed")
	enabled, updates := mappings.state()
	require.False(t, enabled, "the function paused its event source mapping while the database is down")
	require.Equal(t, []bool{false}, updates)

	// The schedule's tick finds the database down: the mapping stays paused, and says why.
	down := rt.invokeRaw(t, []byte(`{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`))
	require.True(t, down.isError, "the tick reports the outage")
	enabled, _ = mappings.state()
	require.False(t, enabled)

	srv.Start(t)
	up := rt.invokeRaw(t, []byte(`{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`))
	require.False(t, up.isError, "tick failed: %s", up.body)
	enabled, updates = mappings.state()
	require.True(t, enabled, "the tick resumed the mapping once the database was back")
	require.Equal(t, []bool{false, true}, updates)
}
