package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/stackseam/stackseam/internal/message"
)

// jsonReadSeeds are stored values as PostgreSQL writes them, and values the reader leaves to
// encoding/json.
var jsonReadSeeds = []string{
	`{}`, `null`, `[]`, ` { "a" : "b" , "n": -1.5e3, "t": true, "f": false, "z": null } `,
	`{"branch": "main", "replicas": 3, "é✓": "😀"}`, `{"a": "x\ny"}`, `{"a": {"nested": 1}}`, `{"a": 1}x`,
	`{"a": 01}`, `{"a": "b", "a": "c"}`, "{\"a\": \"\xff\"}", `{"a": 1,}`, `{"a"}`, `{`, `"s"`,
	`[{"log": "", "name": "infra", "runId": "r1", "status": "pending", "attempt": 1, "deadline": "2026-12-01T18:00:00.123456789Z", "dispatchedAt": "2026-12-01T17:00:00Z"}]`,
	`[{"name": "a", "status": "completed", "runId": "r", "attempt": 2, "dispatchedAt": "2026-12-01T17:00:00+02:00", "finishedAt": "2026-12-01T17:00:01Z", "description": "boom"}, {"name": "b", "status": "failed", "runId": "", "attempt": 0, "dispatchedAt": "0001-01-01T00:00:00Z"}]`,
	`[{"Name": "a"}]`, `[{"name": "a", "extra": 1}]`, `[{"attempt": 1.0}]`, `[{"attempt": 99999999999999999999}]`,
	`[{"attempt": -0}]`, `[{"deadline": null}]`, `[{"dispatchedAt": "yesterday"}]`, `[{"name": "a\u0041"}]`,
	`[{"name": "a"}, ]`, `[{"name": "a"}] x`, `[1]`, `[{"name": "a", "name": "b"}]`,
}

// TestStoredJSONReadLikeEncodingJSON: metadata and tasks decode to what encoding/json decodes,
// and fail where it fails.
func TestStoredJSONReadLikeEncodingJSON(t *testing.T) {
	judged := 0
	for _, s := range jsonReadSeeds {
		b := []byte(s)
		var wantMD message.Metadata
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		wantErr := dec.Decode(&wantMD)
		md, err := decodeMetadata(b)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(md, wantMD) {
			t.Errorf("metadata %s: %#v, %v; encoding/json: %#v, %v", s, md, err, wantMD, wantErr)
		}
		var wantTasks []message.StackTask
		wantErr = json.Unmarshal(b, &wantTasks)
		tasks, err := decodeTasks(b)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(tasks, wantTasks) {
			t.Errorf("tasks %s: %#v, %v; encoding/json: %#v, %v", s, tasks, err, wantTasks, wantErr)
		}
		if _, ok := readFlatMetadata(b); ok {
			judged++
		}
		if _, ok := readTasks(b); ok {
			judged++
		}
	}
	if judged < 6 {
		t.Errorf("the reader judged only %d of the seeds itself", judged)
	}
}

// FuzzStoredJSON: whatever the bytes, the reader decodes them as encoding/json does.
func FuzzStoredJSON(f *testing.F) {
	for _, s := range jsonReadSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if md, ok := readFlatMetadata(b); ok {
			var want message.Metadata
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&want); err != nil || !reflect.DeepEqual(md, want) {
				t.Fatalf("metadata %q: %#v; encoding/json: %#v, %v", b, md, want, err)
			}
		}
		if tasks, ok := readTasks(b); ok {
			var want []message.StackTask
			if err := json.Unmarshal(b, &want); err != nil || !reflect.DeepEqual(tasks, want) {
				t.Fatalf("tasks %q: %#v; encoding/json: %#v, %v", b, tasks, want, err)
			}
		}
	})
}
