package executor

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/stackseam/stackseam/internal/machine"
)

// Kind is an executor as machine files know it (a machine.Kind): an executor package makes its
// own with NewKind, and internal/executor/kinds lists it.
type Kind struct {
	name, rule string
	schema     []byte
	check      func(config machine.Field)
}

// NewKind returns the kind called name whose config problems carry rule, judged by check, with
// the JSON Schema fragment schema (see machine.Kind).
func NewKind(name, rule string, schema []byte, check func(config machine.Field)) Kind {
	return Kind{name: name, rule: rule, schema: schema, check: check}
}

// Name is what a task's `executor` says.
func (k Kind) Name() string { return k.name }

// Rule is the rule id of the kind's config problems.
func (k Kind) Rule() string { return k.rule }

// Schema is the JSON Schema fragment of the kind's config.
func (k Kind) Schema() []byte { return k.schema }

// CheckConfig judges a task's config.
func (k Kind) CheckConfig(config machine.Field) { k.check(config) }

// DecodeConfig reads the config of a task message into T. The state manager validated the
// machine file, but a task message is checked again, by the same rules and in the same words
// (machine.CheckConfig): it may come from anywhere. Numbers keep their exact text (json.Number).
func DecodeConfig[T any](kind machine.Kind, raw map[string]any) (T, error) {
	var c T
	if err := machine.CheckConfig(kind, raw); err != nil {
		return c, err
	}
	data, err := json.Marshal(raw)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		err = dec.Decode(&c)
	}
	if err != nil {
		return c, fmt.Errorf("the %s task's config is malformed: %w", kind.Name(), err)
	}
	return c, nil
}
