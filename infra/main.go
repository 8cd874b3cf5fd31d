// Command infra is the deployable stackseam CDK app (`cdk deploy` from the repository root, see
// cdk.json). With no context it creates everything; context values switch to existing
// resources:
//
//	stackName                the stack's name. Defaults to Stackseam.
//	vpcId                    an existing VPC (looked up: needs credentials, account and region).
//	databaseSecretArn        the complete ARN of an existing database's secret (RDS format);
//	databaseSecurityGroupId  the security group guarding that database (required with it);
//	databasePort             that database's port. Defaults to 5432.
//	allowedFunctions         functions the Lambda executor may invoke: comma-separated, or a JSON list in cdk.json.
//	terraformBinary          a linux/arm64 terraform or tofu binary. Defaults to OpenTofu built from source.
//	machinesDir              a folder uploaded to machines/ in the bucket on deploy.
//	schedules                events sent on a clock: a JSON list in cdk.json, or the same JSON as a string,
//	                         of {"name","expression","stackId","states","event","machine","metadata","disabled"}
//	                         (see stackseam.Schedule; expression and stackId and event are required).
//
// For example: cdk deploy -c vpcId=vpc-0123456789abcdef0 -c machinesDir=machines
// or -c 'schedules=[{"expression":"cron(0 22 ? * MON-FRI *)","stackId":"preview-42","event":"DESTROY"}]'
//
// The cdk-nag AwsSolutions pack runs on every synthesis; a finding fails `cdk synth`.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	stackseam "github.com/stackseam/stackseam/constructs"
)

func main() {
	app := awscdk.NewApp(nil)
	cfg, err := readConfig(func(key string) any { return app.Node().TryGetContext(jsii.String(key)) })
	if err == nil {
		err = build(app, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stackseam:", err)
		os.Exit(1)
	}
	app.Synth(nil)
}

// config is the app's configuration, read from CDK context.
type config struct {
	StackName               string
	VpcID                   string
	DatabaseSecretArn       string
	DatabaseSecurityGroupID string
	DatabasePort            int
	AllowedFunctions        []string
	TerraformBinary         string
	MachinesDir             string
	Schedules               []stackseam.Schedule
}

// scheduleJSON is one entry of the schedules context value.
type scheduleJSON struct {
	Name       string         `json:"name"`
	Expression string         `json:"expression"`
	StackID    string         `json:"stackId"`
	States     []string       `json:"states"`
	Event      string         `json:"event"`
	Machine    string         `json:"machine"`
	Metadata   map[string]any `json:"metadata"`
	Disabled   bool           `json:"disabled"`
}

// readSchedules decodes the schedules context value: a list (from cdk.json) or its JSON text
// (from -c). Unknown fields are refused, so a misspelt one is not silently dropped.
func readSchedules(v any) ([]stackseam.Schedule, error) {
	var raw []byte
	switch v := v.(type) {
	case string:
		raw = []byte(v)
	case []any:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("want a JSON list, got %v", v)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var entries []scheduleJSON
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("not a list of schedules: %w", err)
	}
	out := make([]stackseam.Schedule, len(entries))
	for i, e := range entries {
		out[i] = stackseam.Schedule(e)
	}
	return out, nil
}

// readConfig reads the context values get returns (nil when unset). Values given with
// `-c key=value` are strings; cdk.json may hold a JSON list for allowedFunctions and a number
// for databasePort. Every bad value is reported at once.
func readConfig(get func(string) any) (config, error) {
	cfg := config{StackName: "Stackseam"}
	var problems []string
	str := func(key string, dst *string) {
		switch v := get(key).(type) {
		case nil:
		case string:
			if v = strings.TrimSpace(v); v != "" {
				*dst = v
			}
		default:
			problems = append(problems, fmt.Sprintf("context %s: want a string, got %v", key, v))
		}
	}
	str("stackName", &cfg.StackName)
	str("vpcId", &cfg.VpcID)
	str("databaseSecretArn", &cfg.DatabaseSecretArn)
	str("databaseSecurityGroupId", &cfg.DatabaseSecurityGroupID)
	str("terraformBinary", &cfg.TerraformBinary)
	str("machinesDir", &cfg.MachinesDir)

	switch v := get("databasePort").(type) {
	case nil:
	case float64:
		cfg.DatabasePort = int(v)
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, fmt.Sprintf("context databasePort: %q is not a number", v))
		}
		cfg.DatabasePort = n
	default:
		problems = append(problems, fmt.Sprintf("context databasePort: want a number, got %v", v))
	}

	switch v := get("allowedFunctions").(type) {
	case nil:
	case string:
		for _, fn := range strings.Split(v, ",") {
			if fn = strings.TrimSpace(fn); fn != "" {
				cfg.AllowedFunctions = append(cfg.AllowedFunctions, fn)
			}
		}
	case []any:
		for _, fn := range v {
			s, ok := fn.(string)
			if !ok {
				problems = append(problems, fmt.Sprintf("context allowedFunctions: %v is not a string", fn))
				continue
			}
			cfg.AllowedFunctions = append(cfg.AllowedFunctions, s)
		}
	default:
		problems = append(problems, fmt.Sprintf("context allowedFunctions: want a comma-separated string or a list, got %v", v))
	}
	if v := get("schedules"); v != nil {
		schedules, err := readSchedules(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("context schedules: %v", err))
		}
		cfg.Schedules = schedules
	}
	if len(problems) > 0 {
		return cfg, errors.New(strings.Join(problems, "; "))
	}
	return cfg, nil
}

// build adds the stackseam stack described by cfg to app, with the cdk-nag AwsSolutions checks.
func build(app awscdk.App, cfg config) (err error) {
	// Invalid props panic in NewStackseam, as CDK constructors do; here they become an error
	// message instead of a stack trace.
	defer func() {
		if r := recover(); r != nil {
			var pe *stackseam.PropsError
			if e, ok := r.(error); ok && errors.As(e, &pe) {
				err = pe
				return
			}
			panic(r)
		}
	}()
	var env *awscdk.Environment
	if cfg.VpcID != "" {
		// A VPC lookup needs a concrete account and region: those of the CLI's credentials.
		env = &awscdk.Environment{
			Account: jsii.String(os.Getenv("CDK_DEFAULT_ACCOUNT")),
			Region:  jsii.String(os.Getenv("CDK_DEFAULT_REGION")),
		}
	}
	stack := awscdk.NewStack(app, jsii.String(cfg.StackName), &awscdk.StackProps{
		Env:         env,
		Description: jsii.String("stackseam: event-driven state machines for cloud stacks"),
	})
	props := &stackseam.StackseamProps{
		ExistingDatabasePort: cfg.DatabasePort,
		AllowedFunctions:     cfg.AllowedFunctions,
		TerraformBinary:      cfg.TerraformBinary,
		MachinesDir:          cfg.MachinesDir,
		Schedules:            cfg.Schedules,
	}
	if cfg.VpcID != "" {
		props.ExistingVpc = awsec2.Vpc_FromLookup(stack, jsii.String("Vpc"), &awsec2.VpcLookupOptions{VpcId: jsii.String(cfg.VpcID)})
	}
	if cfg.DatabaseSecretArn != "" {
		props.ExistingDatabaseSecret = awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("DatabaseSecret"), jsii.String(cfg.DatabaseSecretArn))
	}
	if cfg.DatabaseSecurityGroupID != "" {
		props.ExistingDatabaseSecurityGroup = awsec2.SecurityGroup_FromSecurityGroupId(stack, jsii.String("DatabaseSecurityGroup"), jsii.String(cfg.DatabaseSecurityGroupID), nil)
	}
	seam := stackseam.NewStackseam(stack, "Stackseam", props)

	output := func(id, description string, value *string) {
		awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{Value: value, Description: jsii.String(description)})
	}
	// The outputs the CLI's --stack-name reads.
	seam.AddOperatorOutputs()
	output("EventDeadLetterQueueUrl", "Events the state manager gave up on", seam.EventDeadLetterQueue.QueueUrl())
	output("TaskQueueUrl", "Task messages for the satisfier", seam.TaskQueue.QueueUrl())
	output("TaskDeadLetterQueueUrl", "Task messages the satisfier gave up on", seam.TaskDeadLetterQueue.QueueUrl())
	output("DatabaseSecretArn", "The database connection (RDS format)", seam.DatabaseSecret.SecretArn())
	output("StateManagerFunction", "The state manager function", seam.StateManager.FunctionName())
	output("SatisfierFunction", "The satisfier function", seam.Satisfier.FunctionName())
	output("NotificationTopicArn", "Subscribe here: transitions, task failures and stack removals", seam.NotificationTopic.TopicArn())
	output("DashboardName", "The CloudWatch dashboard of stackseam's metrics", seam.Dashboard.DashboardName())

	awscdk.Aspects_Of(stack).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return nil
}
