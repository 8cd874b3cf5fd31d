package stackseam_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
	"github.com/stretchr/testify/require"

	stackseam "github.com/stackseam/stackseam/constructs"
)

// One app with two stacks is synthesized once for the whole package: starting jsii and
// building the functions are the slow parts, and every assertion reads the same output.
//
//   - "Default": NewStackseam with zero props, except a stub Terraform binary, because
//     cross-compiling OpenTofu takes minutes (`make synth` does the real thing).
//   - "Embedded": an application stack that passes its own VPC, bucket, database secret and
//     security group, as the README's embedding example does, its own notification topic
//     (encrypted with its own key), and schedules.
//
// The functions themselves are really built (go build for linux/arm64) in both.

const (
	embeddedAccount   = "123456789012"
	embeddedRegion    = "eu-west-1"
	embeddedSecretArn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/postgres-AbCdEf"
	embeddedDBGroup   = "sg-0123456789abcdef0"
	embeddedBucket    = "app-stackseam"
	embeddedSources   = "app-terraform-sources"
	embeddedAuditArn  = "arn:aws:lambda:eu-west-1:123456789012:function:audit:live"
	embeddedTopicName = "app-alarms"
)

var embeddedSubnets = []string{"subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"}

// embeddedSchedules: a named cron schedule, an unnamed rate schedule that may create its stack
// (with metadata that needs escaping in JSON), a disabled one and a broadcast.
var embeddedSchedules = []stackseam.Schedule{
	{Name: "nightly-destroy", Expression: "cron(0 22 ? * MON-FRI *)", StackID: "preview-42", Event: "DESTROY"},
	{Expression: "rate(1 day)", StackID: "qa", Event: "LAUNCH", Machine: "qa-env",
		Metadata: map[string]any{"branch": "main", "size": 3, "warm": true, "note": `say "hi" \ & bye ✓`}},
	{Name: "paused", Expression: "rate(5 minutes)", StackID: "qa", Event: "RETRY_FAILED_TASKS", Disabled: true},
	// A broadcast: every running stack of reviewed-env checks for drift at 02:00.
	{Name: "nightly-drift", Expression: "cron(0 2 * * ? *)", Machine: "reviewed-env", States: []string{"RUN"}, Event: "CHECK-DRIFT"},
}

// stacks are the two synthesized stacks — the construct with its defaults, and embedded in a
// team's stack — each with the path of the construct in it.
var stacks = []struct{ name, prefix string }{{"Default", def}, {"Embedded", emb}}

// synthesized is the shared output: the cloud assembly directory and each stack's template.
type synthesized struct {
	outdir    string
	stub      []byte // the stub Terraform binary's content
	templates map[string]*template
	messages  map[string][]message // per stack: errors and warnings recorded during synth
	elapsed   time.Duration
}

type template struct {
	Resources map[string]*resource `json:"Resources"`
	Outputs   map[string]any       `json:"Outputs"`
	byPath    map[string]string    // construct path → logical id
}

type resource struct {
	Type           string         `json:"Type"`
	Properties     map[string]any `json:"Properties"`
	Metadata       map[string]any `json:"Metadata"`
	DeletionPolicy string         `json:"DeletionPolicy"`
	DependsOn      []string       `json:"DependsOn"`
}

type message struct {
	Level string // aws:cdk:error, aws:cdk:warning
	Path  string
	Text  string
}

var (
	shared     *synthesized
	sharedErr  error
	sharedOnce sync.Once
	tmpRoot    string
)

func TestMain(m *testing.M) {
	// jsii prints a banner about Node 20 on every start; the tests run on it on purpose.
	os.Setenv("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	var err error
	if tmpRoot, err = os.MkdirTemp("", "stackseam-constructs-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

// synth returns the shared synthesized app, making it on first use.
func synth(t *testing.T) *synthesized {
	t.Helper()
	sharedOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				sharedErr = fmt.Errorf("synthesis panicked: %v", r)
			}
		}()
		shared, sharedErr = build()
	})
	require.NoError(t, sharedErr)
	return shared
}

func build() (*synthesized, error) {
	started := time.Now()
	s := &synthesized{outdir: filepath.Join(tmpRoot, "cdk.out"), stub: []byte("#!/bin/sh\necho stub terraform\n")}
	stub := filepath.Join(tmpRoot, "stub", "tofu")
	if err := os.MkdirAll(filepath.Dir(stub), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(stub, s.stub, 0o755); err != nil {
		return nil, err
	}
	app := awscdk.NewApp(&awscdk.AppProps{
		Outdir:  jsii.String(s.outdir),
		Context: &map[string]any{"aws:cdk:enable-path-metadata": true},
	})
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)

	def := awscdk.NewStack(app, jsii.String("Default"), nil)
	stackseam.NewStackseam(def, "Stackseam", &stackseam.StackseamProps{TerraformBinary: stub})

	embeddedStack(app, stub)

	app.Synth(nil)
	s.elapsed = time.Since(started)
	return s, s.load()
}

// embeddedStack is an application that already has a VPC, a bucket and a PostgreSQL database.
func embeddedStack(app awscdk.App, stub string) {
	stack := awscdk.NewStack(app, jsii.String("Embedded"), &awscdk.StackProps{
		Env: &awscdk.Environment{Account: jsii.String(embeddedAccount), Region: jsii.String(embeddedRegion)},
	})
	vpc := awsec2.Vpc_FromVpcAttributes(stack, jsii.String("AppVpc"), &awsec2.VpcAttributes{
		VpcId:                      jsii.String("vpc-0123456789abcdef0"),
		AvailabilityZones:          jsii.Strings("eu-west-1a", "eu-west-1b"),
		PrivateSubnetIds:           jsii.Strings(embeddedSubnets...),
		PrivateSubnetRouteTableIds: jsii.Strings("rtb-0aaaaaaaaaaaaaaa1", "rtb-0bbbbbbbbbbbbbbb2"),
	})
	bucket := awss3.Bucket_FromBucketName(stack, jsii.String("AppBucket"), jsii.String(embeddedBucket))
	secret := awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("AppDatabaseSecret"), jsii.String(embeddedSecretArn))
	dbGroup := awsec2.SecurityGroup_FromSecurityGroupId(stack, jsii.String("AppDatabaseGroup"), jsii.String(embeddedDBGroup), nil)
	topic := awssns.NewTopic(stack, jsii.String("Alarms"), &awssns.TopicProps{TopicName: jsii.String(embeddedTopicName), EnforceSSL: jsii.Bool(true)})
	// The application's own notification topic, encrypted with its own key.
	notificationsKey := awskms.NewKey(stack, jsii.String("NotificationsKey"), &awskms.KeyProps{EnableKeyRotation: jsii.Bool(true)})
	notifications := awssns.NewTopic(stack, jsii.String("Notifications"), &awssns.TopicProps{MasterKey: notificationsKey, EnforceSSL: jsii.Bool(true)})

	seam := stackseam.NewStackseam(stack, "Stackseam", &stackseam.StackseamProps{
		ExistingVpc:                   vpc,
		VpcSubnets:                    &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS},
		ExistingBucket:                bucket,
		ExistingDatabaseSecret:        secret,
		ExistingDatabaseSecurityGroup: dbGroup,
		ExistingDatabasePort:          6432,
		QueryReservedConcurrency:      5,
		MachinesDir:                   filepath.Join("..", "machines"),
		AllowedFunctions:              []string{"notify", embeddedAuditArn},
		AlarmActions:                  []awscloudwatch.IAlarmAction{awscloudwatchactions.NewSnsAction(topic)},
		LogLevel:                      "debug",
		StateManagerTimeout:           30 * time.Second,
		SatisfierTimeout:              10 * time.Minute,
		TerraformBinary:               stub,
		ExistingNotificationTopic:     notifications,
		SweepInterval:                 5 * time.Minute,
		EventQueueAgeAlarmThreshold:   10 * time.Minute,
		Schedules:                     embeddedSchedules,
	})
	ci := awsiam.NewRole(stack, jsii.String("Publisher"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewAccountPrincipal(jsii.String(embeddedAccount)),
	})
	seam.GrantPublishEvents(ci)
	approver := awsiam.NewRole(stack, jsii.String("Approver"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewAccountPrincipal(jsii.String(embeddedAccount)),
	})
	seam.GrantApprove(approver)
	// People and CI jobs that operate the deployment: one may read, one may act, one neither.
	seam.GrantRead(awsiam.NewRole(stack, jsii.String("Reader"), &awsiam.RoleProps{AssumedBy: awsiam.NewAccountPrincipal(jsii.String(embeddedAccount))}))
	seam.GrantOperate(awsiam.NewRole(stack, jsii.String("Operator"), &awsiam.RoleProps{AssumedBy: awsiam.NewAccountPrincipal(jsii.String(embeddedAccount))}))
	awsiam.NewRole(stack, jsii.String("Bystander"), &awsiam.RoleProps{AssumedBy: awsiam.NewAccountPrincipal(jsii.String(embeddedAccount))})
	seam.AddTerraformPermissions(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("sns:Publish"),
		Resources: &[]*string{topic.TopicArn()},
	}))
	seam.GrantTerraformSources(awss3.Bucket_FromBucketName(stack, jsii.String("Sources"), jsii.String(embeddedSources)), "terraform/")
	seam.GrantTerraformState(awss3.Bucket_FromBucketName(stack, jsii.String("TeamState"), jsii.String(embeddedTeamState)))
}

// embeddedTeamState is a state bucket CloudSeam scripts name in their backend block.
const embeddedTeamState = "team-terraform-state"

// load reads the templates and the recorded messages from the cloud assembly.
func (s *synthesized) load() error {
	raw, err := os.ReadFile(filepath.Join(s.outdir, "manifest.json"))
	if err != nil {
		return err
	}
	var manifest struct {
		Artifacts map[string]struct {
			Type                   string    `json:"type"`
			Metadata               stackMeta `json:"metadata"`
			AdditionalMetadataFile string    `json:"additionalMetadataFile"`
		} `json:"artifacts"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return err
	}
	s.templates = map[string]*template{}
	s.messages = map[string][]message{}
	for name, art := range manifest.Artifacts {
		if art.Type != "aws:cloudformation:stack" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.outdir, name+".template.json"))
		if err != nil {
			return err
		}
		var t template
		if err := json.Unmarshal(raw, &t); err != nil {
			return err
		}
		t.byPath = map[string]string{}
		for id, r := range t.Resources {
			if p, ok := r.Metadata["aws:cdk:path"].(string); ok {
				t.byPath[p] = id
			}
		}
		s.templates[name] = &t
		meta := art.Metadata
		if art.AdditionalMetadataFile != "" { // newer assemblies keep the metadata beside the template
			raw, err := os.ReadFile(filepath.Join(s.outdir, art.AdditionalMetadataFile))
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &meta); err != nil {
				return err
			}
		}
		for path, entries := range meta {
			for _, e := range entries {
				if e.Type == "aws:cdk:error" || e.Type == "aws:cdk:warning" {
					s.messages[name] = append(s.messages[name], message{Level: e.Type, Path: path, Text: fmt.Sprint(e.Data)})
				}
			}
		}
	}
	return nil
}

// stackMeta is a stack's metadata by construct path.
type stackMeta map[string][]struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// id is the logical id of the resource at a construct path ("Default/Stackseam/EventQueue/Resource").
func (t *template) id(tb testing.TB, path string) string {
	tb.Helper()
	id, ok := t.byPath[path]
	require.True(tb, ok, "no resource at path %s", path)
	return id
}

// res is the resource at a construct path.
func (t *template) res(tb testing.TB, path string) *resource {
	tb.Helper()
	return t.Resources[t.id(tb, path)]
}

// ofType returns the resources of one CloudFormation type by logical id.
func (t *template) ofType(typ string) map[string]*resource {
	out := map[string]*resource{}
	for id, r := range t.Resources {
		if r.Type == typ {
			out[id] = r
		}
	}
	return out
}

// statementsOf returns the statements of every policy attached to the role at rolePath, and
// fails when the role has managed or inline policies of its own.
func (t *template) statementsOf(tb testing.TB, rolePath string) []any {
	tb.Helper()
	roleID := t.id(tb, rolePath)
	role := t.Resources[roleID]
	require.Nil(tb, role.Properties["ManagedPolicyArns"], "role %s must not use managed policies", rolePath)
	require.Nil(tb, role.Properties["Policies"], "role %s: statements are expected in attached policies", rolePath)
	var out []any
	for _, p := range t.ofType("AWS::IAM::Policy") {
		for _, r := range p.Properties["Roles"].([]any) {
			if ref, ok := r.(map[string]any); ok && ref["Ref"] == roleID {
				out = append(out, p.Properties["PolicyDocument"].(map[string]any)["Statement"].([]any)...)
			}
		}
	}
	return out
}

// normalize turns Go literals into what encoding/json decodes ([]string → []any, …).
func normalize(tb testing.TB, v any) any {
	tb.Helper()
	raw, err := json.Marshal(v)
	require.NoError(tb, err)
	var out any
	require.NoError(tb, json.Unmarshal(raw, &out))
	return out
}

func getAtt(id, attr string) map[string]any { return map[string]any{"Fn::GetAtt": []any{id, attr}} }
func ref(id string) map[string]any          { return map[string]any{"Ref": id} }
func join(parts ...any) map[string]any      { return map[string]any{"Fn::Join": []any{"", parts}} }

func allow(sid string, actions any, resource any) map[string]any {
	st := map[string]any{"Effect": "Allow", "Action": actions, "Resource": resource}
	if sid != "" {
		st["Sid"] = sid
	}
	return st
}

var (
	consumeActions = []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
	logActions     = []string{"logs:CreateLogStream", "logs:PutLogEvents"}
	// neverWriteActions are denied to the satisfier on machines/ and fences/: every object write.
	neverWriteActions = []string{"s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutObjectTagging",
		"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteObjectTagging", "s3:RestoreObject"}
	// bucketChangeActions are denied to the satisfier on the bucket.
	bucketChangeActions = []string{"s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy", "s3:PutBucketAcl",
		"s3:PutBucketVersioning", "s3:PutEncryptionConfiguration", "s3:PutLifecycleConfiguration",
		"s3:PutReplicationConfiguration", "s3:PutBucketNotification", "s3:PutBucketPublicAccessBlock",
		"s3:PutBucketOwnershipControls", "s3:PutBucketObjectLockConfiguration", "s3:PutBucketCORS", "s3:PutBucketWebsite"}
	vpcActions = []string{"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
		"ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
)

// assetDir is the staged asset directory of a function, from its code's S3 key (<hash>.zip).
func (s *synthesized) assetDir(tb testing.TB, fn *resource) string {
	tb.Helper()
	key, ok := fn.Properties["Code"].(map[string]any)["S3Key"].(string)
	require.True(tb, ok, "function code has no literal S3Key")
	return filepath.Join(s.outdir, "asset."+strings.TrimSuffix(key, ".zip"))
}
