package query

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every field of Request is a question of the table, under its JSON name, and a request holding
// it alone parses: a question added to Request but not to questions would be refused.
func TestEveryRequestFieldIsAQuestion(t *testing.T) {
	t.Parallel()
	fields := reflect.TypeOf(Request{})
	require.Len(t, questions, fields.NumField())
	_, bad := ParseRequest([]byte(`{}`))
	require.NotNil(t, bad)
	for i := range fields.NumField() {
		name, _, _ := strings.Cut(fields.Field(i).Tag.Get("json"), ",")
		require.Equal(t, name, questions[i].name())
		require.Contains(t, bad.Message, name)
		payload, err := json.Marshal(map[string]any{name: map[string]any{}})
		require.NoError(t, err)
		req, refused := ParseRequest(payload)
		require.Nil(t, refused, name)
		require.True(t, questions[i].asked(&req), name)
	}
}

// Filter and Paging are embedded: their fields stand in the request's own JSON object.
func TestFilterAndPagingAreFieldsOfTheRequest(t *testing.T) {
	t.Parallel()
	want := StacksRequest{Filter: Filter{Machine: "env", State: "RUN"}, Paging: Paging{Limit: 5, Cursor: "c"}}
	body, err := json.Marshal(want)
	require.NoError(t, err)
	require.JSONEq(t, `{"machine": "env", "state": "RUN", "limit": 5, "cursor": "c"}`, string(body))
	req, refused := ParseRequest([]byte(`{"stacks": ` + string(body) + `}`))
	require.Nil(t, refused)
	require.Equal(t, want, *req.Stacks)
}
