package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/stretchr/testify/require"

	stackseam "github.com/stackseam/stackseam/constructs"
)

const (
	account   = "123456789012"
	region    = "eu-west-1"
	vpcID     = "vpc-0123456789abcdef0"
	secretArn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:platform/postgres-AbCdEf"
	dbGroup   = "sg-0123456789abcdef0"
)

var lookupSubnets = []string{"subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"}

func TestReadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := readConfig(func(string) any { return nil })
	require.NoError(t, err)
	require.Equal(t, config{StackName: "Stackseam"}, cfg)
}

func TestReadConfigFromCommandLineAndCdkJSON(t *testing.T) {
	t.Parallel()
	// -c key=value gives strings.
	cli := map[string]any{
		"stackName": "Seam", "vpcId": vpcID, "databaseSecretArn": secretArn, "databaseSecurityGroupId": dbGroup,
		"databasePort": "6432", "allowedFunctions": "notify, audit:live,,", "terraformBinary": "/opt/terraform",
		"machinesDir": "machines",
		"schedules":   `[{"name":"nightly","expression":"cron(0 22 ? * MON-FRI *)","stackId":"preview-42","event":"DESTROY"}]`,
	}
	cfg, err := readConfig(func(k string) any { return cli[k] })
	require.NoError(t, err)
	require.Equal(t, config{StackName: "Seam", VpcID: vpcID, DatabaseSecretArn: secretArn, DatabaseSecurityGroupID: dbGroup,
		DatabasePort: 6432, AllowedFunctions: []string{"notify", "audit:live"}, TerraformBinary: "/opt/terraform",
		MachinesDir: "machines", Schedules: []stackseam.Schedule{
			{Name: "nightly", Expression: "cron(0 22 ? * MON-FRI *)", StackID: "preview-42", Event: "DESTROY"}}}, cfg)

	// cdk.json may hold JSON values.
	file := map[string]any{"databasePort": 6432.0, "allowedFunctions": []any{"notify", "audit:live"},
		"schedules": []any{map[string]any{"expression": "rate(1 day)", "stackId": "qa", "event": "LAUNCH", "machine": "qa-env",
			"metadata": map[string]any{"size": 3.0}, "disabled": true}}}
	cfg, err = readConfig(func(k string) any { return file[k] })
	require.NoError(t, err)
	require.Equal(t, 6432, cfg.DatabasePort)
	require.Equal(t, []string{"notify", "audit:live"}, cfg.AllowedFunctions)
	require.Equal(t, []stackseam.Schedule{{Expression: "rate(1 day)", StackID: "qa", Event: "LAUNCH", Machine: "qa-env",
		Metadata: map[string]any{"size": 3.0}, Disabled: true}}, cfg.Schedules)
}

func TestReadConfigReportsEveryBadValue(t *testing.T) {
	t.Parallel()
	bad := map[string]any{"vpcId": 12.0, "databasePort": "five", "allowedFunctions": []any{"ok", 3.0}, "machinesDir": true,
		"schedules": []any{map[string]any{"expresion": "rate(1 day)"}}}
	_, err := readConfig(func(k string) any { return bad[k] })
	require.EqualError(t, err, "context vpcId: want a string, got 12; context machinesDir: want a string, got true; "+
		`context databasePort: "five" is not a number; context allowedFunctions: 3 is not a string; `+
		`context schedules: not a list of schedules: json: unknown field "expresion"`)

	for v, want := range map[any]string{
		`{"stackId":"s"}`: "context schedules: not a list of schedules: json: cannot unmarshal object into Go value of type []main.scheduleJSON",
		3.0:               "context schedules: want a JSON list, got 3",
	} {
		_, err := readConfig(func(k string) any { return map[string]any{"schedules": v}[k] })
		require.EqualError(t, err, want)
	}
}

// Invalid combinations come back as the construct's *PropsError, not a panic.
func TestBuildReturnsPropsErrors(t *testing.T) {
	t.Parallel()
	app := awscdk.NewApp(nil)
	err := build(app, config{StackName: "Invalid", DatabaseSecretArn: secretArn, AllowedFunctions: []string{"fn-*"}})
	var pe *stackseam.PropsError
	require.True(t, errors.As(err, &pe), "%v", err)
	require.Len(t, pe.Problems, 2, pe.Error())
}

func TestCdkJSONRunsThisApp(t *testing.T) {
	t.Parallel()
	var c struct {
		App string `json:"app"`
	}
	raw, err := os.ReadFile(filepath.Join("..", "cdk.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &c))
	require.Equal(t, "go run ./infra", c.App)
}

// One synthesis of two stacks: the zero-configuration app, and the app configured with every
// context value (a looked-up VPC, an existing database), as `cdk synth -c …` would give.
var (
	synthOnce sync.Once
	synthDir  string
	synthErr  error
)

func synthesize(t *testing.T) string {
	t.Helper()
	synthOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				synthErr = fmt.Errorf("synthesis panicked: %v", r)
			}
		}()
		synthDir, synthErr = synthApp()
	})
	require.NoError(t, synthErr)
	return synthDir
}

func synthApp() (string, error) {
	dir, err := os.MkdirTemp("", "stackseam-infra-test-")
	if err != nil {
		return "", err
	}
	stub := filepath.Join(dir, "terraform")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		return "", err
	}
	// The context cdk.json gives the CLI, plus what a VPC lookup would have cached in
	// cdk.context.json.
	raw, err := os.ReadFile(filepath.Join("..", "cdk.json"))
	if err != nil {
		return "", err
	}
	var cdkJSON struct {
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(raw, &cdkJSON); err != nil {
		return "", err
	}
	ctx := cdkJSON.Context
	ctx["aws:cdk:enable-path-metadata"] = true
	ctx["vpc-provider:account="+account+":filter.vpc-id="+vpcID+":region="+region+":returnAsymmetricSubnets=true"] = map[string]any{
		"vpcId": vpcID, "vpcCidrBlock": "10.20.0.0/16", "availabilityZones": []any{},
		"subnetGroups": []any{map[string]any{"name": "Private", "type": "Private", "subnets": []any{
			map[string]any{"subnetId": lookupSubnets[0], "cidr": "10.20.0.0/20", "availabilityZone": region + "a", "routeTableId": "rtb-0aaaaaaaaaaaaaaa1"},
			map[string]any{"subnetId": lookupSubnets[1], "cidr": "10.20.16.0/20", "availabilityZone": region + "b", "routeTableId": "rtb-0bbbbbbbbbbbbbbb2"},
		}}},
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(filepath.Join(dir, "cdk.out")), Context: &ctx})
	if err := build(app, config{StackName: "Defaults", TerraformBinary: stub}); err != nil {
		return "", err
	}
	if err := build(app, config{StackName: "Configured", VpcID: vpcID, DatabaseSecretArn: secretArn,
		DatabaseSecurityGroupID: dbGroup, DatabasePort: 6432, AllowedFunctions: []string{"notify", "audit:live"},
		TerraformBinary: stub, MachinesDir: filepath.Join("..", "machines"),
		Schedules: []stackseam.Schedule{{Expression: "cron(0 22 ? * MON-FRI *)", StackID: "preview-42", Event: "DESTROY"}}}); err != nil {
		return "", err
	}
	app.Synth(nil)
	return filepath.Join(dir, "cdk.out"), nil
}

func TestMain(m *testing.M) {
	// The configured stack's environment is the CLI's (CDK_DEFAULT_*), as in `cdk deploy`.
	os.Setenv("CDK_DEFAULT_ACCOUNT", account)
	os.Setenv("CDK_DEFAULT_REGION", region)
	code := m.Run()
	if synthDir != "" {
		os.RemoveAll(filepath.Dir(synthDir))
	}
	os.Exit(code)
}

type templateJSON struct {
	Resources map[string]struct {
		Type       string         `json:"Type"`
		Properties map[string]any `json:"Properties"`
	} `json:"Resources"`
	Outputs map[string]any `json:"Outputs"`
}

func readTemplate(t *testing.T, dir, stack string) templateJSON {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, stack+".template.json"))
	require.NoError(t, err)
	var tpl templateJSON
	require.NoError(t, json.Unmarshal(raw, &tpl))
	return tpl
}

func count(tpl templateJSON, typ string) int {
	n := 0
	for _, r := range tpl.Resources {
		if r.Type == typ {
			n++
		}
	}
	return n
}

func TestSynthNeedsNoLookupsAndIsNagClean(t *testing.T) {
	dir := synthesize(t)
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	var manifest map[string]any
	require.NoError(t, json.Unmarshal(raw, &manifest))
	require.Nil(t, manifest["missing"], "context lookups would be needed")
	for _, stack := range []string{"Defaults", "Configured"} {
		raw, err := os.ReadFile(filepath.Join(dir, stack+".metadata.json"))
		require.NoError(t, err)
		var meta map[string][]struct {
			Type string `json:"type"`
			Data any    `json:"data"`
		}
		require.NoError(t, json.Unmarshal(raw, &meta))
		for path, entries := range meta {
			for _, e := range entries {
				require.NotContains(t, []string{"aws:cdk:error", "aws:cdk:warning"}, e.Type, "%s %s: %v", stack, path, e.Data)
			}
		}
		_, err = os.Stat(filepath.Join(dir, "AwsSolutions-"+stack+"-NagReport.csv"))
		require.NoError(t, err, "cdk-nag did not run on %s", stack)
	}
}

func TestDefaultsStack(t *testing.T) {
	tpl := readTemplate(t, synthesize(t), "Defaults")
	require.Equal(t, 1, count(tpl, "AWS::EC2::VPC"))
	require.Equal(t, 1, count(tpl, "AWS::RDS::DBInstance"))
	require.Equal(t, 3, count(tpl, "AWS::Lambda::Function"), "state manager, satisfier, query")
	outputs := make([]string, 0, len(tpl.Outputs))
	for k := range tpl.Outputs {
		outputs = append(outputs, k)
	}
	require.ElementsMatch(t, []string{"EventQueueUrl", "EventDeadLetterQueueUrl", "TaskQueueUrl", "TaskDeadLetterQueueUrl",
		"BucketName", "DatabaseSecretArn", "StateManagerFunction", "SatisfierFunction", "NotificationTopicArn", "DashboardName",
		"QueryFunctionName", "QueryFunctionArn", "ApprovalQueueUrl", "IntakeQueueUrl"}, outputs)
	require.Equal(t, 2, count(tpl, "AWS::Events::Rule"), "the sweep and the task builds' end; no schedules")
}

func TestConfiguredStackUsesTheGivenResources(t *testing.T) {
	tpl := readTemplate(t, synthesize(t), "Configured")
	require.Equal(t, 0, count(tpl, "AWS::EC2::VPC"))
	require.Equal(t, 0, count(tpl, "AWS::RDS::DBInstance"))
	require.Equal(t, 1, count(tpl, "AWS::SecretsManager::Secret"), "the result signing key only; the database secret is given")
	require.Equal(t, 1, count(tpl, "Custom::CDKBucketDeployment"))
	require.Equal(t, 3, count(tpl, "AWS::Events::Rule"), "the sweep, the schedule and the task builds' end")
	var invoke any
	for _, r := range tpl.Resources {
		switch r.Type {
		case "AWS::Lambda::Function":
			if vpc, ok := r.Properties["VpcConfig"].(map[string]any); ok {
				require.Equal(t, []any{lookupSubnets[0], lookupSubnets[1]}, vpc["SubnetIds"])
				env := r.Properties["Environment"].(map[string]any)["Variables"].(map[string]any)
				if _, sm := env["DATABASE_SECRET_ID"]; sm {
					require.Equal(t, secretArn, env["DATABASE_SECRET_ID"])
				} else {
					require.Equal(t, "/var/task/bin/terraform", env["TERRAFORM_BINARY"])
				}
			}
		case "AWS::EC2::SecurityGroupIngress":
			require.Equal(t, dbGroup, r.Properties["GroupId"])
			require.Equal(t, 6432.0, r.Properties["FromPort"])
		case "AWS::IAM::Policy":
			for _, st := range r.Properties["PolicyDocument"].(map[string]any)["Statement"].([]any) {
				if st.(map[string]any)["Sid"] == "InvokeAllowedFunctions" {
					invoke = st.(map[string]any)["Resource"]
				}
			}
		}
	}
	fn := func(name string) any {
		return map[string]any{"Fn::Join": []any{"", []any{"arn:", map[string]any{"Ref": "AWS::Partition"},
			":lambda:" + region + ":" + account + ":function:" + name}}}
	}
	require.Equal(t, []any{fn("notify"), fn("audit:live")}, invoke)
}
