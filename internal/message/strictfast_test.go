package message

import (
	"testing"
	"unicode/utf8"
)

// FuzzStrictFast: strictFast, the allocation-free check ParseEvent tries first, accepts only
// bodies strictJSON accepts, so which of the two judged a body never changes the answer.
func FuzzStrictFast(f *testing.F) {
	for _, s := range append(eventSeeds(f), strictFastSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) || !strictFast(body, eventFields, eventNested) {
			return
		}
		if err := strictJSON(body, eventFields, eventNested); err != nil {
			t.Fatalf("strictFast accepted %q, which strictJSON refuses: %v", body, err)
		}
	})
}

// strictFastSeeds are bodies at the edges of the rules both checks apply.
var strictFastSeeds = []string{
	`{"stackId":"a","event":"X","metadata":{"n":1e400}}`, `{"stackId":"a","event":"X","metadata":{"n":1e-70}}`,
	`{"stackId":"a","event":"X","metadata":{"n":-0.5E+3,"m":0}}`, `{"stackId":"a","stackId":"b"}`,
	`{"stackId":"a","metadata":{"k":1,"k":2}}`, `{"StackId":"a"}`, `{"task":{"name":"x","Name":"y"}}`,
	`{"task":[{"bogus":1}]}`, `{"task":{"config":{"any":{"deep":[1,{"x":null}]}}}}`, "{\"stackId\":\"\uFFFE\"}",
	"{\"stackId\":\"\xef\xbf\xbf\"}", `{"stackId":"a\u0000"}`, ` {"stackId":"a"} `, `{"stackId":"a"}x`,
	`{"stackId":01}`, `{"stackId":-}`, `{"stackId":1.}`, `{"stackId":tru}`, `{}`, `{"a":1,}`,
}

// TestStrictFastAgrees: on every seed both checks give the same answer where strictFast judges,
// and strictFast does judge the plain bodies publishers and the satisfier send (without it, every
// event would pay for strictJSON's token walk again).
func TestStrictFastAgrees(t *testing.T) {
	for _, s := range strictFastSeeds {
		body := []byte(s)
		fast := utf8.Valid(body) && strictFast(body, eventFields, eventNested)
		slow := strictJSON(body, eventFields, eventNested)
		if fast && slow != nil {
			t.Errorf("strictFast accepted %s, which strictJSON refuses: %v", s, slow)
		}
	}
	for _, s := range []string{
		`{"stackId":"feature-123","machine":"qa-env","action":"LAUNCH","metadata":{"apiImage":"latest","replicas":3,"public":true}}`,
		`{"stackId":"s1","event":"ACCESS","metadata":{"gone":null,"kept":"v"},"ifVersion":4}`,
		`{"stackId":"s1","event":"TASK_COMPLETED","taskRunId":"r1","task":{"name":"infra","executor":"terraform","config":{"vars":{"a":[1,2.5e3]}}},"outputs":{"url":"x","n":1.5}}`,
		" {\n\t\"stackId\" : \"é/ü\", \"event\":\"X\" }\r\n",
	} {
		if !strictFast([]byte(s), eventFields, eventNested) {
			t.Errorf("strictFast does not judge %s", s)
		}
		if err := strictJSON([]byte(s), eventFields, eventNested); err != nil {
			t.Errorf("strictJSON refuses %s: %v", s, err)
		}
	}
}

// BenchmarkParseEvent parses the events of a lifecycle as the state manager receives them.
func BenchmarkParseEvent(b *testing.B) {
	bodies := [][]byte{
		[]byte(`{"stackId":"b1-0","event":"LAUNCH","machine":"pair","metadata":{"branch":"main"}}`),
		[]byte(`{"stackId":"b1-0","event":"TASK_COMPLETED","taskRunId":"0123456789abcdef0123456789abcdef"}`),
		[]byte(`{"stackId":"b1-0","event":"TASK_COMPLETED","taskRunId":"r1","task":{"name":"infra","executor":"terraform","config":{}},"outputs":{"url":"x","n":1.5}}`),
		[]byte(`{"stackId":"b1-0","event":"DESTROY"}`),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ParseEvent(bodies[i%len(bodies)]); err != nil {
			b.Fatal(err)
		}
	}
}
