package terraform_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/message"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	c, err := terraform.ParseConfig(map[string]any{
		"source":    map[string]any{"type": "s3", "bucket": "b", "key": "infra/"},
		"action":    "apply",
		"variables": map[string]any{"size": json.Number("2.50"), "name": "x"},
	})
	require.NoError(t, err)
	require.Equal(t, terraform.Source{Type: "s3", Bucket: "b", Key: "infra/"}, c.Source)
	require.Equal(t, "s3://b/infra/", c.Source.String())
	require.Equal(t, json.Number("2.50"), c.Variables["size"], "numbers keep their exact text")

	c, err = terraform.ParseConfig(map[string]any{"source": map[string]any{"type": "local", "location": "tf/infra"}, "action": "destroy"})
	require.NoError(t, err)
	require.Equal(t, "tf/infra", c.Source.String())

	for _, tc := range []struct {
		config map[string]any
		want   string
	}{
		// A task message is judged by the rules the machine parser applies, in the same words.
		{map[string]any{}, "the terraform task's config is invalid: a terraform config needs a source: {type: s3, bucket, key} or {type: local, location}; " +
			"a terraform config needs an action: apply, destroy, plan or drift"},
		{map[string]any{"source": map[string]any{"type": "s3", "bucket": "b"}, "action": "apply"}, "a source of type s3 needs key"},
		{map[string]any{"source": map[string]any{"type": "local"}, "action": "show"}, "config.action must be apply, destroy, plan or drift, not \"show\"; a source of type local needs location"},
		{map[string]any{"source": map[string]any{"type": "local", "location": "tf"}, "action": "destroy", "plan": "review"}, "config.plan belongs on action apply only"},
		{map[string]any{"source": "s3://b/k", "action": "apply"}, "config.source must be a mapping, not a string"},
		{map[string]any{"source": map[string]any{"type": "local", "location": "/var/task/infra"}, "action": "apply"},
			`config.source.location "/var/task/infra" is absolute`},
		{map[string]any{"source": map[string]any{"type": "local", "location": "infra/../../etc"}, "action": "apply"},
			`config.source.location "infra/../../etc" contains ".."`},
	} {
		_, err := terraform.ParseConfig(tc.config)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestStateAndLogKeys(t *testing.T) {
	t.Parallel()
	for where, want := range map[string]string{
		"terraform/infra":  "qa-env/feature-1/terraform/infra",
		"terraform/infra/": "qa-env/feature-1/terraform/infra", // the backend rejects a trailing slash
		"terraform//infra": "qa-env/feature-1/terraform/infra", // and "//"
		"/var/task/infra":  "qa-env/feature-1/var/task/infra",
		"./tf/dns":         "qa-env/feature-1/tf/dns",
		"infra/main.tf":    "qa-env/feature-1/infra/main.tf",
	} {
		require.Equal(t, want, terraform.StateKey("qa-env", "feature-1", terraform.Source{Type: "s3", Bucket: "b", Key: where}), where)
		require.Equal(t, want, terraform.StateKey("qa-env", "feature-1", terraform.Source{Type: "local", Location: where}), where)
	}
	task := message.Task{Task: message.TaskSpec{Name: "infra"}, Stack: message.Stack{ID: "feature-1", Machine: "qa-env"}, TaskRunID: "r-1"}
	require.Equal(t, "logs/qa-env/feature-1/infra/r-1.log", terraform.LogKey(task))
}

func TestVariablesPrecedence(t *testing.T) {
	t.Parallel()
	declared := map[string]bool{"image": true, "replicas": true, "public": true, "stack_id": true, "region-name": true}
	vars, skipped, err := terraform.Variables("feature-1",
		message.Metadata{"image": "v1", "replicas": json.Number("3"), "public": true, "stack_id": "spoofed", "region-name": "eu"},
		map[string]any{"image": "pinned", "_tier": "web"}, declared)
	require.NoError(t, err)
	require.Empty(t, skipped)
	require.Equal(t, map[string]any{
		"image":       "pinned", // the task's variables win over metadata
		"replicas":    json.Number("3"),
		"public":      true,
		"stack_id":    "feature-1", // always the stack's id
		"region-name": "eu",        // dashes are allowed in Terraform identifiers
		"_tier":       "web",       // task variables go in even when undeclared: Terraform warns
	}, vars)
}

func TestVariablesPassOnlyDeclaredMetadata(t *testing.T) {
	t.Parallel()
	vars, skipped, err := terraform.Variables("s",
		message.Metadata{"owner.email": "a@b.example", "2fast": "y", "with space": "w", "unused": "u", "image": "v1"},
		nil, map[string]bool{"image": true, "stack_id": true})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"image": "v1", "stack_id": "s"}, vars)
	require.Equal(t, []string{"2fast", "owner.email", "unused", "with space"}, skipped,
		"keys Terraform cannot or does not declare are left out, never an error")

	vars, skipped, err = terraform.Variables("s", message.Metadata{"image": "v1"}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"stack_id": "s"}, vars, "a configuration declaring nothing gets only stack_id")
	require.Equal(t, []string{"image"}, skipped)
}

func TestVariablesRejectInvalidTaskVariables(t *testing.T) {
	t.Parallel()
	_, _, err := terraform.Variables("s", message.Metadata{"api.image": "x"},
		map[string]any{"-flag": "v", "nested": map[string]any{"a": "b"}, "ok": "z"}, nil)
	require.EqualError(t, err, "cannot pass the task's variables to Terraform: "+
		`variable key "-flag" is not a valid Terraform variable name (letters, digits, _ and -, starting with a letter or _); `+
		`variable.nested is map[string]interface {}; Terraform variables here are strings, numbers or booleans`)
}

func TestDeclaredVariables(t *testing.T) {
	t.Parallel()
	declared, err := terraform.DeclaredVariables(filepath.Join("..", "..", "..", "test", "testdata", "terraform", "basic"))
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"stack_id": true, "greeting": true}, declared, "the root module only, not its modules'")

	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("main.tf", `variable "from_tf" {}`+"\n")
	write("main.tofu", `variable "from_tofu" {}`+"\n") // OpenTofu reads this one instead of main.tf
	write("extra.tf.json", `{"variable": {"from_json": {"type": "string"}}}`)
	write("more.tofu.json", `{"variable": {"from_tofu_json": {}}}`)
	write("notes.txt", `variable "not_config" {}`)
	declared, err = terraform.DeclaredVariables(dir)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"from_tofu": true, "from_json": true, "from_tofu_json": true}, declared)

	write("broken.tf", "variable \"half\" {\n")
	declared, err = terraform.DeclaredVariables(dir)
	require.ErrorContains(t, err, "error reading the variable declarations in the source")
	require.True(t, declared["from_tofu"], "what could be read is still returned")
}

// hostile are values that a shell, an HCL template or a flag parser would change; through the
// variable file they must reach Terraform unchanged. The real-tofu test echoes them back.
var hostile = map[string]string{
	"quoted":     `she said "hi" and 'bye' \ back\slash`,
	"shell":      "$(rm -rf /) `reboot` ; && | > /dev/null a=b --force",
	"template":   "${var.stack_id} %{ if true }yes%{ endif } $${escaped}",
	"dashes":     "-var=evil --auto-approve -",
	"multi_line": "line one\nline two\r\n\ttabbed = \"x\"\n",
}

func TestVarsFileKeepsValuesLiteral(t *testing.T) {
	t.Parallel()
	meta := message.Metadata{}
	for k, v := range hostile {
		meta[k] = v
	}
	meta["count_of"] = json.Number("12345678901234567890")
	declared := map[string]bool{"count_of": true}
	for k := range hostile {
		declared[k] = true
	}
	vars, _, err := terraform.Variables("s-1", meta, nil, declared)
	require.NoError(t, err)
	data, err := terraform.VarsFile(vars)
	require.NoError(t, err)

	var back map[string]any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&back))
	for k, v := range hostile {
		require.Equal(t, v, back[k], k)
	}
	require.Equal(t, json.Number("12345678901234567890"), back["count_of"], "a big number is not rounded")
	require.Contains(t, string(data), `"${var.stack_id}`, "no HTML escaping or other rewriting")
}

func TestBackendConfig(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"bucket=state-bucket", "key=m/s/infra", "region=eu-west-1", "use_lockfile=true"},
		terraform.BackendConfig("state-bucket", "eu-west-1", "m/s/infra", ""))

	require.Equal(t, []string{
		"bucket=b", "key=m/s/k", "region=us-east-1", "use_lockfile=true",
		`endpoints={s3="http://127.0.0.1:4566"}`,
		"use_path_style=true",
		"skip_credentials_validation=true",
		"skip_requesting_account_id=true",
		"skip_metadata_api_check=true",
		"skip_region_validation=true",
	}, terraform.BackendConfig("b", "us-east-1", "m/s/k", "http://127.0.0.1:4566"))

	// The endpoint is an HCL expression's string: it cannot close the string or start a template.
	cfg := terraform.BackendConfig("b", "r", "k", "http://x\"}, bucket=\"other${path.cwd}")
	require.Equal(t, `endpoints={s3="http://x\"}, bucket=\"other$${path.cwd}"}`, cfg[4])
}

func TestEnv(t *testing.T) {
	t.Parallel()
	r := &terraform.Runner{
		PluginCacheDir: "/cache",
		Environ: []string{"PATH=/bin", "AWS_REGION=eu-west-1", "TF_VAR_sneaky=x", "TF_CLI_ARGS=-destroy",
			"TF_CLI_ARGS_apply=-refresh=false", "TF_LOG=TRACE", "TF_WORKSPACE=other", "CHECKPOINT_DISABLE=", "NOEQUALS"},
	}
	env, err := r.Env()
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"PATH":                "/bin",
		"AWS_REGION":          "eu-west-1",
		"TF_PLUGIN_CACHE_DIR": "/cache",
		"TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE": "true",
		"CHECKPOINT_DISABLE":                             "1",
		"HOME":                                           os.TempDir(),
	}, env, "variables that would change the command behind its back are dropped")

	r.Environ = []string{"HOME=/home/x", "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE=false"}
	env, err = r.Env()
	require.NoError(t, err)
	require.Equal(t, "/home/x", env["HOME"])
	require.Equal(t, "false", env["TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE"], "an operator's choice stands")
	require.Equal(t, filepath.Join("/cache"), env["TF_PLUGIN_CACHE_DIR"])
}

func TestVariablesAcceptGoNumbers(t *testing.T) {
	t.Parallel()
	vars, _, err := terraform.Variables("s", message.Metadata{"a": 1.5, "b": 2, "c": int64(3)}, nil,
		map[string]bool{"a": true, "b": true, "c": true})
	require.NoError(t, err)
	data, err := terraform.VarsFile(vars)
	require.NoError(t, err)
	for _, want := range []string{`"a": 1.5`, `"b": 2`, `"c": 3`} {
		require.Contains(t, string(data), want, strconv.Quote(want))
	}
}
