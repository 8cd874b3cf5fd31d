package terraform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/message"
)

// The actions and source types a terraform task may name (docs/design.md §"Executors").
const (
	ActionApply   = "apply"
	ActionDestroy = "destroy"
	SourceS3      = "s3"
	SourceLocal   = "local"
)

// The plan actions (README.md, "Plan, approve, apply"): plan saves a plan for a later
// `apply` with `plan: <task>`; drift plans without saving and reports whether the real
// infrastructure and the state differ from the configuration.
const (
	ActionPlan  = "plan"
	ActionDrift = "drift"
)

// Config is a terraform task's config: `{source, action, variables?, plan?}`.
type Config struct {
	Source    Source         `json:"source"`
	Action    string         `json:"action"`
	Variables map[string]any `json:"variables,omitempty"`
	// Plan, with action apply only, names the plan task of the same machine whose saved plan
	// the apply runs, exactly as planned; "" applies the configuration as it is.
	Plan string `json:"plan,omitempty"`
}

// Source says where a task's Terraform files are: every object under an S3 prefix (Bucket, Key)
// or a local folder or file (Location).
type Source struct {
	Type     string `json:"type"`
	Bucket   string `json:"bucket,omitempty"`
	Key      string `json:"key,omitempty"`
	Location string `json:"location,omitempty"`
}

// String names the source as a person would look for it.
func (s Source) String() string {
	if s.Type == SourceS3 {
		return "s3://" + s.Bucket + "/" + s.Key
	}
	return s.Location
}

// ParseConfig reads a terraform task's config from a task message (see executor.DecodeConfig).
func ParseConfig(raw map[string]any) (Config, error) {
	return executor.DecodeConfig[Config](Kind, raw)
}

// CheckLocation checks a local source's location: a relative path inside the sources dir
// (TERRAFORM_SOURCES_DIR), so neither an absolute path nor a ".." element, which could reach any
// file the satisfier can read. Symbolic links that leave the dir are refused when the source is
// copied.
func CheckLocation(location string) error {
	if filepath.IsAbs(location) || strings.HasPrefix(location, "/") {
		return fmt.Errorf("config.source.location %q is absolute; a local source is a path relative to the satisfier's TERRAFORM_SOURCES_DIR", location)
	}
	if slices.Contains(strings.Split(filepath.ToSlash(location), "/"), "..") {
		return fmt.Errorf("config.source.location %q contains \"..\"; a local source stays inside the satisfier's TERRAFORM_SOURCES_DIR", location)
	}
	return nil
}

// StateKey is the S3 backend key of a stack's state for one source:
// `<machine>/<stackId>/<source key or location>`, as CloudSeam names it, so that an apply task
// and the destroy task with the same source share the state. The key or location is cleaned
// first — "terraform/app/" gives ".../terraform/app", "/var/task/infra" gives ".../var/task/infra"
// — because the S3 backend rejects a key that ends with a slash or holds "//".
func StateKey(machine, stackID string, src Source) string {
	where := src.Key
	if src.Type == SourceLocal {
		where = filepath.ToSlash(src.Location)
	}
	return machine + "/" + stackID + "/" + strings.TrimPrefix(path.Clean("/"+where), "/")
}

// LockKey is the S3 backend's lock file of the state at stateKey (use_lockfile): OpenTofu creates
// it with a conditional PutObject (If-None-Match: *), reads it, and deletes it when done.
func LockKey(stateKey string) string { return stateKey + ".tflock" }

// LogKey is where the log of one task run is stored in the bucket.
func LogKey(task message.Task) string {
	return message.TaskLogKey(task.Stack.Machine, task.Stack.ID, task.Task.Name, task.TaskRunID)
}

// identifier is what Terraform accepts as a variable name (hclsyntax.ValidIdentifier).
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// StackIDVariable is the variable that always holds the stack's id.
const StackIDVariable = "stack_id"

// Variables returns the values a run passes to Terraform: the stack's metadata that the
// configuration declares as variables (declared, from DeclaredVariables), then the task's
// variables (which win over metadata of the same name: the machine's author chose them for this
// task), then stack_id, which is always the stack's id. Metadata is whatever publishers and
// earlier tasks put there, so a key the configuration does not declare — or cannot declare, such
// as "owner.email" — is left out and named in skipped (sorted) rather than failing the run: one
// stray key must not break every later task of the stack, destroy included. The task's variables
// are written by the machine's author and are passed whether declared or not (Terraform warns
// about an undeclared one in the log); a key that is not a Terraform identifier or a value that
// is not a string, number or boolean is an error that lists every such variable.
func Variables(stackID string, metadata message.Metadata, variables map[string]any, declared map[string]bool) (vars map[string]any, skipped []string, err error) {
	vars = map[string]any{}
	for k, v := range metadata {
		if !declared[k] || !scalar(v) {
			skipped = append(skipped, k)
			continue
		}
		vars[k] = v
	}
	slices.Sort(skipped)
	var problems []string
	for k, v := range variables {
		if !identifier.MatchString(k) {
			problems = append(problems, fmt.Sprintf("variable key %q is not a valid Terraform variable name "+
				"(letters, digits, _ and -, starting with a letter or _)", k))
			continue
		}
		if !scalar(v) {
			problems = append(problems, fmt.Sprintf("variable.%s is %T; Terraform variables here are strings, numbers or booleans", k, v))
			continue
		}
		vars[k] = v
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, nil, errors.New("cannot pass the task's variables to Terraform: " + strings.Join(problems, "; "))
	}
	vars[StackIDVariable] = stackID
	return vars, skipped, nil
}

// scalar reports whether v is a value a variable here may hold: a string, number or boolean.
func scalar(v any) bool {
	switch v.(type) {
	case string, json.Number, bool, float64, int, int64:
		return true
	}
	return false
}

// VarsFile is the JSON variable file (-var-file) holding vars. A file rather than -var flags:
// values stay literal — JSON strings in a .tfvars.json file are not templates, so `${...}`,
// quotes, newlines and leading dashes arrive as they are — and a variable the script does not
// declare is only a warning there, where a -var flag would be an error.
func VarsFile(vars map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(vars); err != nil {
		return nil, fmt.Errorf("error encoding the variable file: %w", err)
	}
	return buf.Bytes(), nil
}

// BackendConfig returns the -backend-config settings of `init`: the state's bucket, key and region
// — so a script needs only `backend "s3" {}` —, the S3 lock file (use_lockfile=true: one run per
// state at a time, LockKey) and, when endpoint is set (an S3 emulator), the
// endpoint with path-style addressing and the checks that only real AWS can answer turned off.
func BackendConfig(bucket, region, key, endpoint string) []string {
	cfg := []string{"bucket=" + bucket, "key=" + key, "region=" + region, "use_lockfile=true"}
	if endpoint != "" {
		cfg = append(cfg,
			"endpoints={s3="+hclString(endpoint)+"}",
			"use_path_style=true",
			"skip_credentials_validation=true",
			"skip_requesting_account_id=true",
			"skip_metadata_api_check=true",
			"skip_region_validation=true",
		)
	}
	return cfg
}

// hclString quotes s as an HCL string literal. Terraform parses a -backend-config value of an
// object type as an HCL expression, so the endpoint must not be able to close the string or start
// a template.
func hclString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "${", "$${", "%{", "%%{")
	return `"` + r.Replace(s) + `"`
}
