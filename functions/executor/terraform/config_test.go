package terraform_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/executor/terraform"
	"github.com/stackseam/stackseam/functions/message"
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
		{map[string]any{}, `config.source.type must be s3 or local, not ""; config.action must be apply or destroy, not ""`},
		{map[string]any{"source": map[string]any{"type": "s3", "bucket": "b"}, "action": "apply"}, "a source of type s3 needs bucket and key"},
		{map[string]any{"source": map[string]any{"type": "local"}, "action": "plan"}, "a source of type local needs location; config.action must be apply or destroy, not \"plan\""},
		{map[string]any{"source": "s3://b/k", "action": "apply"}, "the terraform task's config is malformed"},
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
	vars, err := terraform.Variables("feature-1",
		message.Metadata{"image": "v1", "replicas": json.Number("3"), "public": true, "stack_id": "spoofed", "region-name": "eu"},
		map[string]any{"image": "pinned", "_tier": "web"})
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"image":       "pinned", // the task's variables win over metadata
		"replicas":    json.Number("3"),
		"public":      true,
		"stack_id":    "feature-1", // always the stack's id
		"region-name": "eu",        // dashes are allowed in Terraform identifiers
		"_tier":       "web",
	}, vars)
}

func TestVariablesRejectInvalidIdentifiers(t *testing.T) {
	t.Parallel()
	_, err := terraform.Variables("s", message.Metadata{"api.image": "x", "2fast": "y", "ok": "z", "with space": "w"},
		map[string]any{"-flag": "v", "nested": map[string]any{"a": "b"}})
	require.EqualError(t, err, "cannot pass the stack's values to Terraform: "+
		`metadata key "2fast" is not a valid Terraform variable name (letters, digits, _ and -, starting with a letter or _); `+
		`metadata key "api.image" is not a valid Terraform variable name (letters, digits, _ and -, starting with a letter or _); `+
		`metadata key "with space" is not a valid Terraform variable name (letters, digits, _ and -, starting with a letter or _); `+
		`variable key "-flag" is not a valid Terraform variable name (letters, digits, _ and -, starting with a letter or _); `+
		`variable.nested is map[string]interface {}; Terraform variables here are strings, numbers or booleans`)
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
	vars, err := terraform.Variables("s-1", meta, nil)
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
	require.Equal(t, []string{"bucket=state-bucket", "key=m/s/infra", "region=eu-west-1"},
		terraform.BackendConfig("state-bucket", "eu-west-1", "m/s/infra", ""))

	require.Equal(t, []string{
		"bucket=b", "key=m/s/k", "region=us-east-1",
		`endpoints={s3="http://127.0.0.1:4566"}`,
		"use_path_style=true",
		"skip_credentials_validation=true",
		"skip_requesting_account_id=true",
		"skip_metadata_api_check=true",
		"skip_region_validation=true",
	}, terraform.BackendConfig("b", "us-east-1", "m/s/k", "http://127.0.0.1:4566"))

	// The endpoint is an HCL expression's string: it cannot close the string or start a template.
	cfg := terraform.BackendConfig("b", "r", "k", "http://x\"}, bucket=\"other${path.cwd}")
	require.Equal(t, `endpoints={s3="http://x\"}, bucket=\"other$${path.cwd}"}`, cfg[3])
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
	vars, err := terraform.Variables("s", message.Metadata{"a": 1.5, "b": 2, "c": int64(3)}, nil)
	require.NoError(t, err)
	data, err := terraform.VarsFile(vars)
	require.NoError(t, err)
	for _, want := range []string{`"a": 1.5`, `"b": 2`, `"c": 3`} {
		require.Contains(t, string(data), want, strconv.Quote(want))
	}
}
