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
