package terraform_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	return dir
}

func TestDeclaredBackend(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		files map[string]string
		want  terraform.Backend
		err   string
	}{
		"empty block": {files: map[string]string{"main.tf": `terraform {
  backend "s3" {}
}`}},
		"CloudSeam script": {files: map[string]string{"main.tf": `terraform {
  required_version = ">= 0.11"
  backend "s3" {
    bucket         = "team-terraform-state"
    region         = "us-west-2"
    key            = "ignored: the key is always <machine>/<stackId>/<source key>"
    dynamodb_table = "terraform-locks"
  }
}
resource "terraform_data" "x" {}`}, want: terraform.Backend{Bucket: "team-terraform-state", Region: "us-west-2"}},
		"JSON": {files: map[string]string{"main.tf.json": `{"terraform": {"backend": {"s3": {"bucket": "b-json", "region": "eu-west-1"}}}}`},
			want: terraform.Backend{Bucket: "b-json", Region: "eu-west-1"}},
		"override wins": {files: map[string]string{
			"main.tf":     backendBlock("s3", `bucket = "first"`, `region = "us-east-1"`),
			"override.tf": backendBlock("s3", `bucket = "overridden"`),
		}, want: terraform.Backend{Bucket: "overridden", Region: "us-east-1"}},
		"tofu file replaces tf": {files: map[string]string{
			"main.tf":   backendBlock("s3", `bucket = "for-terraform"`),
			"main.tofu": backendBlock("s3", `bucket = "for-tofu"`),
		}, want: terraform.Backend{Bucket: "for-tofu"}},
		"other backend":    {files: map[string]string{"main.tf": backendBlock("local", `path = "x"`)}},
		"no backend":       {files: map[string]string{"main.tf": `resource "terraform_data" "x" {}`, "sub/x.tf": backendBlock("s3", `bucket = "module"`)}},
		"not a literal":    {files: map[string]string{"main.tf": backendBlock("s3", `bucket = var.b`)}, err: `backend "s3" bucket must be a literal string`},
		"broken file":      {files: map[string]string{"main.tf": `terraform { backend "s3" {`}, err: "error reading the backend settings in main.tf"},
		"number as region": {files: map[string]string{"main.tf": backendBlock("s3", `region = 5`)}, err: "region must be a literal string"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := terraform.DeclaredBackend(writeFiles(t, c.files))
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

// TestStateKeysForEverySourceKind is the mapping docs/migrating-from-cloudseam.md documents:
// stackseam's key, and the key CloudSeam used when it differs (which a run adopts).
func TestStateKeysForEverySourceKind(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		src            terraform.Source
		stack          string
		key, cloudSeam string
	}{
		{terraform.Source{Type: "s3", Bucket: "b", Key: "feature-env"}, "feature-1", "qa/feature-1/feature-env", ""},
		{terraform.Source{Type: "s3", Bucket: "b", Key: "feature-env/"}, "feature-1", "qa/feature-1/feature-env", "qa/feature-1/feature-env/"},
		{terraform.Source{Type: "s3", Bucket: "b", Key: "tf/app/main.tf"}, "feature/login", "qa/feature/login/tf/app/main.tf", ""},
		{terraform.Source{Type: "s3", Bucket: "b", Key: "/tf//app/"}, "s", "qa/s/tf/app", "qa/s//tf//app/"},
		{terraform.Source{Type: "local", Location: "infra"}, "feature/login", "qa/feature/login/infra", "qa/feature/login/undefined"},
	} {
		require.Equal(t, c.key, terraform.StateKey("qa", c.stack, c.src), c.src)
		require.Equal(t, c.cloudSeam, terraform.LegacyStateKey("qa", c.stack, c.src), c.src)
	}
}

// TestScriptBackendBucketIsKeptAndCloudSeamStateAdopted: a CloudSeam script naming its own state
// bucket keeps it — state and lock file live there, under CloudSeam's key — and a stack whose state
// CloudSeam left under its own key (here a local source's `…/undefined`) is destroyed from that
// state instead of finding none.
func TestScriptBackendBucketIsKeptAndCloudSeamStateAdopted(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	teamState := harness.CreateBucket(t, "team-"+t.Name())
	r.SourcesDir = writeFiles(t, map[string]string{"infra/main.tf": `terraform {
  backend "s3" {
    bucket = "` + teamState + `"
    region = "` + harness.Region + `"
  }
}
variable "stack_id" { type = string }
resource "terraform_data" "app" { input = var.stack_id }
output "app" { value = terraform_data.app.output }
`})
	task := func(action string) message.Task {
		tk := tfTask(action, map[string]any{"source": localSource("infra"), "action": action}, nil)
		tk.Stack.ID = "feature/login"
		return tk
	}
	out, err := r.Run(context.Background(), task("apply"))
	require.NoError(t, err, storedLogOrEmpty(t, r, out.Log))
	require.Equal(t, "feature/login", out.Outputs["app"])
	state, ok := harness.ReadObject(t, teamState, "m/feature/login/infra")
	require.True(t, ok, "the state is in the script's bucket")
	require.Contains(t, state, `"terraform_data"`)
	_, ok = harness.ReadObject(t, r.Bucket, "m/feature/login/infra")
	require.False(t, ok, "and not in the satisfier's")
	_, ok = harness.ReadObject(t, teamState, "m/feature/login/infra.tflock")
	require.False(t, ok, "the lock file, taken in the state's bucket, is released")
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "state s3://"+teamState+"/m/feature/login/infra")
	require.Contains(t, log, "the script's backend names the state bucket "+teamState)

	// As CloudSeam left it: the state under <machine>/<stackId>/undefined, none under stackseam's key.
	s3c := harness.S3Client(t)
	ctx := context.Background()
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(teamState), Key: aws.String("m/feature/login/undefined"),
		Body: strings.NewReader(state)})
	require.NoError(t, err)
	_, err = s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(teamState), Key: aws.String("m/feature/login/infra")})
	require.NoError(t, err)

	out, err = r.Run(ctx, task("destroy"))
	require.NoError(t, err, storedLogOrEmpty(t, r, out.Log))
	log = storedLog(t, r, out.Log)
	require.Contains(t, log, "adopted CloudSeam's state s3://"+teamState+"/m/feature/login/undefined as m/feature/login/infra")
	require.Contains(t, log, "Destroy complete! Resources: 1 destroyed", "the resource CloudSeam created is found and destroyed")
	state, ok = harness.ReadObject(t, teamState, "m/feature/login/infra")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`)
	_, ok = harness.ReadObject(t, teamState, "m/feature/login/undefined")
	require.True(t, ok, "CloudSeam's object is left in place")
}

// backendBlock is a terraform block with one backend block holding attrs, one a line.
func backendBlock(kind string, attrs ...string) string {
	return "terraform {\n  backend \"" + kind + "\" {\n    " + strings.Join(attrs, "\n    ") + "\n  }\n}\n"
}

func storedLogOrEmpty(t *testing.T, r *terraform.Runner, url string) string {
	if url == "" {
		return ""
	}
	return storedLog(t, r, url)
}
