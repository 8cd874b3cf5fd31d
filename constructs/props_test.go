package stackseam_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
	"github.com/stretchr/testify/require"

	stackseam "github.com/stackseam/stackseam/constructs"
)

// Validation only looks at which fields are set, so these stand-ins need no jsii objects.
type (
	someVpc    struct{ awsec2.IVpc }
	someGroup  struct{ awsec2.ISecurityGroup }
	someSecret struct{ awssecretsmanager.ISecret }
	someBucket struct{ awss3.IBucket }
	someType   struct{ awsec2.InstanceType }
	// someTopic answers Fifo, which Validate asks an existing topic.
	someTopic struct {
		awssns.ITopic
		fifo bool
	}
)

func (t someTopic) Fifo() *bool { return &t.fifo }

func TestZeroPropsAreValid(t *testing.T) {
	t.Parallel()
	require.NoError(t, (&stackseam.StackseamProps{}).Validate())
	require.NoError(t, (*stackseam.StackseamProps)(nil).Validate())
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o644))
	props := &stackseam.StackseamProps{
		ExistingVpc:                   someVpc{},
		VpcProps:                      &awsec2.VpcProps{},
		ExistingDatabaseSecret:        someSecret{},
		DatabaseInstanceType:          someType{},
		DatabaseMultiAz:               true,
		DatabaseRemovalPolicy:         awscdk.RemovalPolicy_DESTROY,
		DatabaseDeletionProtection:    jsii.Bool(false),
		ExistingDatabasePort:          70000,
		ExistingBucket:                someBucket{},
		BucketRemovalPolicy:           awscdk.RemovalPolicy_DESTROY,
		ExistingLoggingBucket:         someBucket{},
		MachinesDir:                   notDir,
		EventQueueMaxReceiveCount:     -1,
		TaskQueueMaxReceiveCount:      1001,
		StateManagerMemorySize:        64,
		StateManagerBatchSize:         11,
		StateManagerMaxConcurrency:    1,
		SatisfierMemorySize:           20000,
		SatisfierEphemeralStorageSize: 256,
		SatisfierMaxConcurrency:       5000,
		QueryReservedConcurrency:      -1,
		StateManagerTimeout:           1500 * time.Millisecond,
		SatisfierTimeout:              16 * time.Minute,
		EventQueueAgeAlarmThreshold:   30 * time.Second,
		TaskQueueAgeAlarmThreshold:    90500 * time.Millisecond,
		SweepInterval:                 90 * time.Second,
		ExistingNotificationTopic:     someTopic{fifo: true},
		NotificationTopicProps:        &awssns.TopicProps{Fifo: jsii.Bool(true)},
		Schedules:                     []stackseam.Schedule{{Expression: "rate(1 minutes)", StackID: "s", Event: "NEXT"}},
		TerraformBinary:               filepath.Join(t.TempDir(), "missing"),
		AllowedFunctions:              []string{"ok-name", "prod-*", "arn:aws:lambda:eu-west-1:123:function:x", "fn:alias"},
		LogLevel:                      "verbose",
		ModuleDir:                     t.TempDir(),
	}
	err := props.Validate()
	var pe *stackseam.PropsError
	require.True(t, errors.As(err, &pe), "%v", err)
	want := []string{
		"ExistingVpc and VpcProps are mutually exclusive",
		"ExistingDatabaseSecret needs ExistingDatabaseSecurityGroup",
		"DatabaseInstanceType cannot be combined with ExistingDatabaseSecret",
		"DatabaseMultiAz cannot be combined with ExistingDatabaseSecret",
		"DatabaseRemovalPolicy cannot be combined with ExistingDatabaseSecret",
		"DatabaseDeletionProtection cannot be combined with ExistingDatabaseSecret",
		"ExistingDatabasePort 70000 is not a port",
		"BucketRemovalPolicy cannot be combined with ExistingBucket",
		"ExistingLoggingBucket cannot be combined with ExistingBucket",
		"MachinesDir \"" + notDir + "\" is not a directory",
		"EventQueueMaxReceiveCount -1 is out of range (1–1000)",
		"TaskQueueMaxReceiveCount 1001 is out of range (1–1000)",
		"StateManagerMemorySize 64 is out of range (128–10240)",
		"StateManagerBatchSize 11 is out of range (1–10)",
		"StateManagerMaxConcurrency 1 is out of range (2–1000)",
		"SatisfierMemorySize 20000 is out of range (128–10240)",
		"SatisfierEphemeralStorageSize 256 is out of range (512–10240)",
		"SatisfierMaxConcurrency 5000 is out of range (2–1000)",
		"QueryReservedConcurrency -1 is out of range (1–1000)",
		"StateManagerTimeout 1.5s must be whole seconds between 1s and 15m",
		"SatisfierTimeout 16m0s must be whole seconds between 1s and 15m",
		"EventQueueAgeAlarmThreshold 30s must be whole seconds, at least 1m",
		"TaskQueueAgeAlarmThreshold 1m30.5s must be whole seconds, at least 1m",
		"SweepInterval 1m30s must be whole minutes between 1m and 24h (an EventBridge rate)",
		"ExistingNotificationTopic and NotificationTopicProps are mutually exclusive",
		"ExistingNotificationTopic is a FIFO topic",
		"NotificationTopicProps.Fifo is not supported",
		`Schedules[0] (s-NEXT): Expression "rate(1 minutes)": EventBridge wants the singular for 1: rate(1 minute)`,
		"Schedules[0] (s-NEXT): NEXT is fired by the state manager",
		"TerraformBinary",
		`AllowedFunctions entry "prod-*" is not a function name`,
		`AllowedFunctions entry "arn:aws:lambda:eu-west-1:123:function:x" is not a function name`,
		`LogLevel "verbose" is not one of DEBUG, INFO, WARN, ERROR`,
		"has no go.mod",
	}
	require.Len(t, pe.Problems, len(want), strings.Join(pe.Problems, "\n"))
	for i, w := range want {
		require.Contains(t, pe.Problems[i], w)
	}
	require.True(t, strings.HasPrefix(err.Error(), "invalid StackseamProps (34 problems):\n  - ExistingVpc"), err.Error())
}

func TestValidateOperationsProps(t *testing.T) {
	t.Parallel()
	require.NoError(t, (&stackseam.StackseamProps{
		ExistingNotificationTopic:   someTopic{},
		SweepInterval:               24 * time.Hour,
		EventQueueAgeAlarmThreshold: time.Minute,
		TaskQueueAgeAlarmThreshold:  6 * time.Hour,
	}).Validate())
	require.NoError(t, (&stackseam.StackseamProps{NotificationTopicProps: &awssns.TopicProps{DisplayName: jsii.String("seam")}, SweepInterval: time.Minute}).Validate())
	err := (&stackseam.StackseamProps{SweepInterval: 25 * time.Hour}).Validate()
	var pe *stackseam.PropsError
	require.True(t, errors.As(err, &pe))
	require.Equal(t, []string{"SweepInterval 25h0m0s must be whole minutes between 1m and 24h (an EventBridge rate)"}, pe.Problems)
}

func TestValidateDatabaseSecurityGroupPairing(t *testing.T) {
	t.Parallel()
	err := (&stackseam.StackseamProps{ExistingDatabaseSecurityGroup: someGroup{}, ExistingDatabasePort: 5433}).Validate()
	var pe *stackseam.PropsError
	require.True(t, errors.As(err, &pe))
	require.Equal(t, []string{
		"ExistingDatabaseSecurityGroup is only valid with ExistingDatabaseSecret",
		"ExistingDatabasePort is only valid with ExistingDatabaseSecret",
	}, pe.Problems)
	require.NoError(t, (&stackseam.StackseamProps{
		ExistingDatabaseSecret: someSecret{}, ExistingDatabaseSecurityGroup: someGroup{}, ExistingDatabasePort: 5433,
		LogLevel: "warn", AllowedFunctions: []string{"fn", "fn:$LATEST", "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:3"},
	}).Validate())
}

// NewStackseam validates before it creates anything, so a bad call fails fast and whole.
func TestNewStackseamPanicsWithEveryProblem(t *testing.T) {
	t.Parallel()
	defer func() {
		r := recover()
		err, ok := r.(error)
		require.True(t, ok, "panic value %v", r)
		var pe *stackseam.PropsError
		require.True(t, errors.As(err, &pe))
		require.Len(t, pe.Problems, 2)
	}()
	stackseam.NewStackseam(nil, "Invalid", &stackseam.StackseamProps{ExistingVpc: someVpc{}, VpcProps: &awsec2.VpcProps{}, LogLevel: "loud"})
}

func TestAllowLambdaTasksRefusesWildcards(t *testing.T) {
	t.Parallel()
	defer func() {
		var pe *stackseam.PropsError
		require.True(t, errors.As(recover().(error), &pe))
		require.Equal(t, []string{
			`AllowLambdaTasks: "deploy-*" is not a function name, name:qualifier or function ARN (wildcards are not allowed)`,
			`AllowLambdaTasks: "*" is not a function name, name:qualifier or function ARN (wildcards are not allowed)`,
		}, pe.Problems)
	}()
	(&stackseam.Stackseam{}).AllowLambdaTasks("ok", "deploy-*", "*")
}
