package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/jsii-runtime-go"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	stackseam "github.com/stackseam/stackseam/constructs"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/executor/codebuild"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/settings"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
	"github.com/stackseam/stackseam/test/localenv"
)

// The deployed path, as far as it runs on one machine: the construct is synthesized, and
// everything the functions run with is read from its template — each function's environment,
// timeout and memory, the event-source mappings, the queues' visibility timeouts and redrive
// policies, the sweep rule — and the shipped bootstrap binaries, built as the construct bundles
// them, run in Lambda mode under the AWS Lambda Runtime Interface Emulator, fed by event-source
// mappings that behave like Lambda's. Only endpoints are swapped for local ones (see
// localValue), plus DATABASE_SSLROOTCERT: the test server's CA instead of the RDS bundle.
//
// What this does not prove: IAM (the local services accept any credentials; the template tests
// assert the statements), VPC networking, and the real SQS event-source mapping's own scaling.

// deployedPrefix is the construct's path in the synthesized stack.
const deployedPrefix = "Deployed/Stackseam/"

// cfnResource is one resource of the template.
type cfnResource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
	Metadata   map[string]any `json:"Metadata"`
}

// deployedTemplate is the synthesized template, indexed by construct path.
type deployedTemplate struct {
	resources map[string]cfnResource
	byPath    map[string]string // construct path below deployedPrefix → logical id
}

// synthesizeDeployed synthesizes the construct with zero props, as `make synth` would, except
// that bundling is skipped (aws:cdk:bundling-stacks is empty): the assets would be linux/arm64
// builds this machine cannot run, so the test builds the functions itself from the same flags.
// It synthesizes once per test process and every caller reads that template: the jsii runtime
// is one Node process per Go process, and two parallel tests calling into it at once have been
// seen to corrupt its replies ("invalid character '\x00'").
func synthesizeDeployed(t *testing.T) *deployedTemplate {
	t.Helper()
	deployedSynth.Do(func() { deployedSynth.tpl, deployedSynth.err = synthesize() })
	require.NoError(t, deployedSynth.err)
	return deployedSynth.tpl
}

var deployedSynth struct {
	sync.Once
	tpl *deployedTemplate
	err error
}

func synthesize() (*deployedTemplate, error) {
	// jsii prints a banner about Node 20 when it starts; these machines run Node 20 on purpose.
	// (os.Setenv: t.Setenv refuses parallel tests, and jsii starts once per process anyway.)
	os.Setenv("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	out, err := os.MkdirTemp("", "stackseam-deployed-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	app := awscdk.NewApp(&awscdk.AppProps{
		Outdir: jsii.String(out),
		Context: &map[string]any{
			"aws:cdk:enable-path-metadata": true,
			"aws:cdk:bundling-stacks":      []string{},
		},
	})
	stack := awscdk.NewStack(app, jsii.String("Deployed"), nil)
	stackseam.NewStackseam(stack, "Stackseam", nil)
	raw, err := json.Marshal(assertions.Template_FromStack(stack, nil).ToJSON())
	if err != nil {
		return nil, fmt.Errorf("reading the synthesized template: %w", err)
	}
	var tpl struct {
		Resources map[string]cfnResource `json:"Resources"`
	}
	if err := json.Unmarshal(raw, &tpl); err != nil {
		return nil, fmt.Errorf("reading the synthesized template: %w", err)
	}
	d := &deployedTemplate{resources: tpl.Resources, byPath: map[string]string{}}
	for id, r := range tpl.Resources {
		if p, ok := r.Metadata["aws:cdk:path"].(string); ok {
			d.byPath[strings.TrimPrefix(p, deployedPrefix)] = id
		}
	}
	return d, nil
}

// id returns the logical id of the resource at path.
func (d *deployedTemplate) id(t *testing.T, path string) string {
	t.Helper()
	id, ok := d.byPath[path]
	require.True(t, ok, "the template has no resource at %s%s", deployedPrefix, path)
	return id
}

func (d *deployedTemplate) props(t *testing.T, path string) map[string]any {
	t.Helper()
	return d.resources[d.id(t, path)].Properties
}

// deployedFunction is what the template gives one function.
type deployedFunction struct {
	id       string
	env      map[string]any // Environment.Variables, values still unresolved
	timeout  time.Duration
	memoryMB int
	mapping  deployedMapping // the mapping of its main queue (event or task queue)
	// mappings are all its event-source mappings, by queue logical id (the state manager has
	// the approvals queue's too).
	mappings map[string]deployedMapping
}

// deployedMapping is a function's SQS event-source mapping.
type deployedMapping struct {
	queueID                 string // the queue's logical id
	batchSize               int
	batchingWindow          time.Duration
	reportBatchItemFailures bool
	maxConcurrency          int // 0: not set
}

// deployedQueue is one queue's settings.
type deployedQueue struct {
	fifo, contentDedup bool
	visibilitySeconds  int
	maxReceiveCount    int
}

func number(t *testing.T, v any, what string) int {
	t.Helper()
	f, ok := v.(float64)
	require.True(t, ok, "%s: want a number, got %#v", what, v)
	return int(f)
}

func (d *deployedTemplate) function(t *testing.T, name, mainQueue string) deployedFunction {
	t.Helper()
	p := d.props(t, name+"/Resource")
	fn := deployedFunction{
		id:       d.id(t, name+"/Resource"),
		env:      p["Environment"].(map[string]any)["Variables"].(map[string]any),
		timeout:  time.Duration(number(t, p["Timeout"], name+" Timeout")) * time.Second,
		memoryMB: number(t, p["MemorySize"], name+" MemorySize"),
		mappings: map[string]deployedMapping{},
	}
	for _, r := range d.resources {
		if r.Type != "AWS::Lambda::EventSourceMapping" || !equalJSON(r.Properties["FunctionName"], map[string]any{"Ref": fn.id}) {
			continue
		}
		m := &deployedMapping{}
		arn := r.Properties["EventSourceArn"].(map[string]any)["Fn::GetAtt"].([]any)
		require.Equal(t, "Arn", arn[1])
		m.queueID = arn[0].(string)
		m.batchSize = number(t, r.Properties["BatchSize"], "BatchSize")
		if w, ok := r.Properties["MaximumBatchingWindowInSeconds"]; ok {
			m.batchingWindow = time.Duration(number(t, w, "MaximumBatchingWindowInSeconds")) * time.Second
		}
		m.reportBatchItemFailures = slices.Contains(r.Properties["FunctionResponseTypes"].([]any), any("ReportBatchItemFailures"))
		if sc, ok := r.Properties["ScalingConfig"].(map[string]any); ok {
			m.maxConcurrency = number(t, sc["MaximumConcurrency"], "MaximumConcurrency")
		}
		fn.mappings[m.queueID] = *m
	}
	main, ok := fn.mappings[d.id(t, mainQueue)]
	require.True(t, ok, "%s has an event-source mapping of %s", name, mainQueue)
	fn.mapping = main
	return fn
}

func (d *deployedTemplate) queue(t *testing.T, id string) deployedQueue {
	t.Helper()
	r := d.resources[id]
	require.Equal(t, "AWS::SQS::Queue", r.Type, id)
	q := deployedQueue{
		fifo:              r.Properties["FifoQueue"] == true,
		contentDedup:      r.Properties["ContentBasedDeduplication"] == true,
		visibilitySeconds: number(t, r.Properties["VisibilityTimeout"], id+" VisibilityTimeout"),
	}
	redrive, ok := r.Properties["RedrivePolicy"].(map[string]any)
	require.True(t, ok, "%s has a redrive policy", id)
	q.maxReceiveCount = number(t, redrive["maxReceiveCount"], id+" maxReceiveCount")
	return q
}

// sweep returns the rule that invokes fnID on a rate: its period and the target's Input.
func (d *deployedTemplate) sweep(t *testing.T, fnID string) (time.Duration, string) {
	t.Helper()
	var every time.Duration
	var input string
	for _, r := range d.resources {
		if r.Type != "AWS::Events::Rule" {
			continue
		}
		for _, target := range r.Properties["Targets"].([]any) {
			target := target.(map[string]any)
			if !equalJSON(target["Arn"], map[string]any{"Fn::GetAtt": []any{fnID, "Arn"}}) {
				continue
			}
			m := regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours)\)$`).FindStringSubmatch(r.Properties["ScheduleExpression"].(string))
			require.NotNil(t, m, "the sweep rule's schedule %v is a rate", r.Properties["ScheduleExpression"])
			n, _ := strconv.Atoi(m[1])
			every = time.Duration(n) * time.Minute
			if strings.HasPrefix(m[2], "hour") {
				every = time.Duration(n) * time.Hour
			}
			input = target["Input"].(string)
		}
	}
	require.NotZero(t, every, "a rule invokes the state manager on a schedule")
	return every, input
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// localValue resolves one template value for this machine. Literal values are kept as they
// are, except the Lambda task root: the construct bundles the satisfier's files (bootstrap,
// bin/tofu) into /var/task, which here is taskRoot. References (Ref, Fn::GetAtt) name deployed
// resources and are swapped for the local stand-in of the same resource in swaps, keyed by the
// logical id (Ref) or id.attribute (Fn::GetAtt); a reference the test has no stand-in for fails
// the test, so a new resource in a function's environment cannot go unnoticed.
func localValue(t *testing.T, name string, v any, swaps map[string]string, taskRoot string) string {
	t.Helper()
	switch v := v.(type) {
	case string:
		if strings.HasPrefix(v, "/var/task/") {
			return taskRoot + strings.TrimPrefix(v, "/var/task")
		}
		return v
	case map[string]any:
		key := ""
		if ref, ok := v["Ref"].(string); ok {
			key = ref
		} else if att, ok := v["Fn::GetAtt"].([]any); ok {
			key = fmt.Sprint(att[0], ".", att[1])
		}
		local, ok := swaps[key]
		require.True(t, ok, "%s=%v: no local stand-in for this resource", name, v)
		return local
	}
	t.Fatalf("%s=%#v: a value the test cannot resolve", name, v)
	return ""
}

// terraformRoleArn stands for the TerraformRole's ARN.
const terraformRoleArn = "arn:aws:iam::000000000000:role/stackseam-terraform"

// signingKeyID names the result signing key in the Secrets Manager fake.
const signingKeyID = "stackseam/result-signing-key"

// deployedSystem is the construct's functions running under the emulator with local stand-ins.
type deployedSystem struct {
	*system
	bucket   string
	lambda   *harness.LambdaFake
	mappings map[string]*harness.EventSourceMapping
	rie      map[string][]*harness.RIE
	sweep    *harness.Schedule
}

func queueArn(t *testing.T, url string) string {
	t.Helper()
	out, err := harness.SQSClient(t).GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	return out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
}

// TestDeployedSettingsRunALifecycle: a Terraform task's whole lifecycle (LAUNCH → RUN with the
// task applied → DESTROY → removed) through the shipped binaries in Lambda mode, with the
// template's settings.
func TestDeployedSettingsRunALifecycle(t *testing.T) {
	t.Parallel()
	tpl := synthesizeDeployed(t)
	ctx := context.Background()

	eventQueueID, taskQueueID := tpl.id(t, "EventQueue/Resource"), tpl.id(t, "TaskQueue/Resource")
	approvalQueueID, intakeQueueID := tpl.id(t, "ApprovalQueue/Resource"), tpl.id(t, "IntakeQueue/Resource")
	sm := tpl.function(t, "StateManager", "EventQueue/Resource")
	sat := tpl.function(t, "Satisfier", "TaskQueue/Resource")
	require.Len(t, sm.mappings, 3, "the state manager consumes the event, approvals and intake queues")
	require.Equal(t, sm.mapping, sm.mappings[approvalQueueID].withQueue(eventQueueID), "all with the same settings")
	require.Equal(t, sm.mapping, sm.mappings[intakeQueueID].withQueue(eventQueueID), "all with the same settings")
	require.Len(t, sat.mappings, 1)
	// The check the construct's own test makes, here on the template this test runs.
	require.Empty(t, settings.StateManager.CheckDeployed(slices.Collect(maps.Keys(sm.env))))
	require.Empty(t, settings.Satisfier.CheckDeployed(slices.Collect(maps.Keys(sat.env))))
	require.Equal(t, eventQueueID, sm.mapping.queueID, "the state manager consumes the event queue")
	require.Equal(t, taskQueueID, sat.mapping.queueID, "the satisfier consumes the task queue")

	// Local queues with the template's visibility timeouts and redrive policies (maxReceiveCount
	// into a dead-letter queue; the emulator moves messages as SQS does).
	// The database as deployed: TLS-only, reached through an RDS-format secret (verify-full; the
	// test CA stands in for the embedded RDS bundle). The result signing key is the other secret.
	server := harness.TLSDatabaseServer(t)
	db := server.AppDatabase(t)
	secrets := harness.NewSecretsFake(t)
	secrets.Put(dbSecretID, db.Secret())
	secrets.Put(signingKeyID, newID()+newID()+newID()+newID())
	dbURL := db.URL
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s := &system{t: t, ctx: ctx, dbURL: dbURL, db: pool, store: store.New(pool), sqs: harness.SQSClient(t)}
	createQueue := func(name, id string) (string, string) {
		q := tpl.queue(t, id)
		attrs := map[string]string{"VisibilityTimeout": strconv.Itoa(q.visibilitySeconds)}
		if q.fifo {
			attrs["ContentBasedDeduplication"] = strconv.FormatBool(q.contentDedup)
		}
		t.Logf("%s: visibility %ds, maxReceiveCount %d, fifo %t", name, q.visibilitySeconds, q.maxReceiveCount, q.fifo)
		return harness.CreateQueueWithAttributes(t, name, q.fifo, q.maxReceiveCount, attrs)
	}
	s.eventURL, s.eventDLQ = createQueue("deployed-events", eventQueueID)
	s.taskURL, s.taskDLQ = createQueue("deployed-tasks", taskQueueID)
	approvalURL, approvalDLQ := createQueue("deployed-approvals", approvalQueueID)
	intakeURL, intakeDLQ := createQueue("deployed-intake", intakeQueueID)
	ds := &deployedSystem{system: s, bucket: harness.CreateBucket(t, "deployed"), lambda: harness.NewLambdaFake(t),
		mappings: map[string]*harness.EventSourceMapping{}, rie: map[string][]*harness.RIE{}}

	// The stand-ins, by the logical id the template refers to.
	swaps := map[string]string{
		eventQueueID:             s.eventURL,
		eventQueueID + ".Arn":    queueArn(t, s.eventURL),
		taskQueueID:              s.taskURL,
		approvalQueueID:          approvalURL,
		approvalQueueID + ".Arn": queueArn(t, approvalURL),
		intakeQueueID:            intakeURL,
		intakeQueueID + ".Arn":   queueArn(t, intakeURL),
		tpl.id(t, "TaskDeadLetterQueue/Resource"):       s.taskDLQ,
		tpl.id(t, "Bucket/Resource"):                    ds.bucket,
		tpl.id(t, "NotificationTopic/Resource"):         s.topic(),
		tpl.id(t, "DatabaseSecret/Attachment/Resource"): secrets.ARN(dbSecretID),
		tpl.id(t, "ResultSigningKey/Resource"):          secrets.ARN(signingKeyID),
		tpl.id(t, "TaskBuildProject/Resource"):          "stackseam-task-builds",
		tpl.id(t, "TerraformRole/Resource") + ".Arn":    terraformRoleArn,
	}
	// Terraform runs with the TerraformRole, assumed per run (TERRAFORM_ROLE_ARN): a
	// protocol-level STS stands in for AWS's.
	stsFake := localenv.NewSTSFake()
	t.Cleanup(stsFake.Close)

	// The satisfier's task root is laid out as the construct bundles it: bootstrap, and the
	// Terraform binary in bin/ — here the host's OpenTofu of the same version.
	tofu := harness.TofuBinary(t)
	roots, envs := map[string]string{}, map[string][]string{}
	for _, fn := range []struct{ name, pkg string }{{"StateManager", "./functions/statemanager"}, {"Satisfier", "./functions/satisfier"}} {
		root := t.TempDir()
		require.NoError(t, os.Symlink(harness.BuildBootstrap(t, fn.pkg), filepath.Join(root, "bootstrap")))
		roots[fn.name] = root
	}
	require.NoError(t, os.MkdirAll(filepath.Join(roots["Satisfier"], "bin"), 0o755))
	require.NoError(t, os.Symlink(tofu, filepath.Join(roots["Satisfier"], "bin", "tofu")))

	// Machines and Terraform sources where the deployment keeps them: machines/ in the bucket
	// (the construct's MachinesDir upload) and the source under a key of the bucket.
	// The teardown runs on CodeBuild: the construct's project, run by the CodeBuild fake.
	machine := strings.ReplaceAll(provisionMachine, "BUCKET", ds.bucket)
	machine = strings.Replace(machine, "      action: destroy\n", "      action: destroy\n    runner: codebuild\n", 1)
	require.Contains(t, machine, "runner: codebuild")
	_, err = harness.S3Client(t).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(ds.bucket),
		Key: aws.String(stackseam.MachinesPrefix + "provision.yml"), Body: strings.NewReader(machine)})
	require.NoError(t, err)
	harness.UploadDir(t, ds.bucket, "terraform/infra", harness.Testdata(t, "terraform", "basic"))
	ds.lambda.Returns("notify-fn", `{"notified": true, "message_id": "m-1"}`)

	// The task builds as the template defines them: the project's environment (endpoints
	// swapped), its buildspec's one command, run in a source dir laid out as the satisfier's asset
	// (the satisfier's task root: bootstrap and bin/tofu); builds that end unsuccessfully reach the
	// task queue, as the construct's rule sends them.
	builds := harness.NewCodeBuildFake(t)
	project := tpl.props(t, "TaskBuildProject/Resource")
	var buildEnv []string
	for _, v := range project["Environment"].(map[string]any)["EnvironmentVariables"].([]any) {
		v := v.(map[string]any)
		name := v["Name"].(string)
		_, ok := settings.Satisfier.Lookup(name)
		require.True(t, ok, "the task build sets %s, which the satisfier does not read", name)
		buildEnv = append(buildEnv, name+"="+localValue(t, name, v["Value"], swaps, roots["Satisfier"]))
	}
	var spec struct {
		Phases struct {
			Build struct {
				Commands []string `json:"commands"`
			} `json:"build"`
		} `json:"phases"`
	}
	require.NoError(t, json.Unmarshal([]byte(project["Source"].(map[string]any)["BuildSpec"].(string)), &spec))
	require.Len(t, spec.Phases.Build.Commands, 1, "one command: the binary")
	command := strings.Fields(spec.Phases.Build.Commands[0])
	// The rule's pattern: which ended builds reach the task queue.
	pattern := tpl.props(t, "TaskBuildEnded/Resource")["EventPattern"].(map[string]any)
	var sent []string
	for _, st := range pattern["detail"].(map[string]any)["build-status"].([]any) {
		sent = append(sent, st.(string))
	}
	require.NotContains(t, sent, "SUCCEEDED", "a build that succeeded has reported")
	builds.Project("stackseam-task-builds", harness.CodeBuildProject{
		Command: command[0], Args: command[1:], SourceDir: roots["Satisfier"], Output: harness.BuildOutput(t),
		Env: append(append(harness.AWSEnv(t), secrets.Env(), stsFake.Env()), buildEnv...),
		Events: func(ev []byte) {
			if end, ok := codebuild.ParseBuildEnd(ev); ok && slices.Contains(sent, end.Status) {
				_ = queue.Send(context.Background(), s.sqs, s.taskURL, []queue.Outgoing{{Body: string(ev)}})
			}
		},
	})

	for _, fn := range []struct {
		name, queueURL, queueID string
		d                       deployedFunction
		declared                *settings.Declared
	}{
		{"StateManager", s.eventURL, eventQueueID, sm, settings.StateManager},
		{"Satisfier", s.taskURL, taskQueueID, sat, settings.Satisfier},
	} {
		env := map[string]string{}
		for name, v := range fn.d.env {
			env[name] = localValue(t, name, v, swaps, roots[fn.name])
		}
		if fn.name == "StateManager" {
			// The one swap that is not a resource: the CA the test server's certificate is from.
			env["DATABASE_SSLROOTCERT"] = server.RootCertPath()
		}
		for name := range env {
			_, ok := fn.declared.Lookup(name)
			require.True(t, ok, "%s: %s is not a variable the function reads", fn.name, name)
		}
		// The AWS SDK's endpoints: the emulator for SQS, S3 and SNS, the Lambda fake for Lambda
		// (Invoke, and the event-source-mapping operations); region and static credentials as
		// Lambda's execution role would give.
		list := append(harness.AWSEnv(t), ds.lambda.Env(), secrets.Env(), builds.Env(), stsFake.Env())
		for _, name := range slices.Sorted(maps.Keys(env)) {
			list = append(list, name+"="+env[name])
		}
		envs[fn.name] = list
		// MaximumConcurrency, scaled down to at most two execution environments.
		n := fn.d.mapping.maxConcurrency
		if n == 0 || n > 2 {
			n = 2
		}
		var invokers []harness.Invoker
		for i := range n {
			r := harness.StartRIE(t, fmt.Sprintf("%s-%d", fn.name, i), harness.RIEConfig{
				Bootstrap: filepath.Join(roots[fn.name], "bootstrap"), TaskRoot: roots[fn.name], Env: list,
				Name: strings.ToLower(fn.name), Timeout: fn.d.timeout, MemoryMB: fn.d.memoryMB,
			})
			ds.rie[fn.name] = append(ds.rie[fn.name], r)
			invokers = append(invokers, r)
		}
		m := &harness.EventSourceMapping{
			FunctionName: strings.ToLower(fn.name), QueueURL: fn.queueURL, EventSourceARN: queueArn(t, fn.queueURL),
			BatchSize: fn.d.mapping.batchSize, MaximumBatchingWindow: fn.d.mapping.batchingWindow,
			ReportBatchItemFailures: fn.d.mapping.reportBatchItemFailures, MaximumConcurrency: fn.d.mapping.maxConcurrency,
			Invokers: invokers,
		}
		ds.lambda.AddEventSourceMapping(m)
		ds.mappings[fn.name] = harness.StartEventSourceMapping(t, m)
		if fn.name == "StateManager" {
			// The approvals and intake queues' mappings, into the same execution environments.
			for name, url := range map[string]string{"approvals": approvalURL, "intake": intakeURL} {
				a := &harness.EventSourceMapping{
					FunctionName: m.FunctionName, QueueURL: url, EventSourceARN: queueArn(t, url),
					BatchSize: m.BatchSize, MaximumBatchingWindow: m.MaximumBatchingWindow,
					ReportBatchItemFailures: m.ReportBatchItemFailures, MaximumConcurrency: m.MaximumConcurrency,
					Invokers: invokers,
				}
				ds.lambda.AddEventSourceMapping(a)
				ds.mappings["StateManager/"+name] = harness.StartEventSourceMapping(t, a)
			}
		}
		t.Logf("%s: timeout %s, memory %d MB, batch %d, window %s, ReportBatchItemFailures %t, %d environments, env %v",
			fn.name, fn.d.timeout, fn.d.memoryMB, m.BatchSize, m.MaximumBatchingWindow, m.ReportBatchItemFailures, n, slices.Sorted(maps.Keys(env)))
	}

	// The sweep rule, at its rate and with its input, in an execution environment of its own.
	every, input := tpl.sweep(t, sm.id)
	sweeper := harness.StartRIE(t, "StateManager-sweep", harness.RIEConfig{
		Bootstrap: filepath.Join(roots["StateManager"], "bootstrap"), TaskRoot: roots["StateManager"],
		Env: envs["StateManager"], Name: "statemanager", Timeout: sm.timeout, MemoryMB: sm.memoryMB,
	})
	ds.sweep = harness.StartSchedule(t, &harness.Schedule{Every: every, Payload: []byte(input), Invoker: sweeper})
	res, err := ds.sweep.Fire(ctx) // once now: the rule's first firing is a period away
	require.NoError(t, err)
	require.False(t, res.Failed, "the scheduled sweep: %s", res.Payload)
	require.JSONEq(t, `{"ok": true}`, string(res.Payload))

	// The lifecycle.
	s.sendEvent("deployed-a", "LAUNCH", map[string]any{"machine": "provision", "metadata": map[string]any{"owner": "team-a"}})
	st := waitFor(t, s, "deployed-a", "RUN")
	require.Equal(t, "hello, stack deployed-a", st.Metadata["app"], "the Terraform task was applied")
	require.Equal(t, true, st.Metadata["notified"], "the Lambda task's result")
	state, ok := harness.ReadObject(t, ds.bucket, "provision/deployed-a/terraform/infra")
	require.True(t, ok, "the state is in the bucket")
	require.Contains(t, state, `"terraform_data"`)

	// A message from the approvals queue is told apart by the record's eventSourceARN: this
	// machine lists no approvals, so the approvals queue may carry none of its events.
	require.NoError(t, queue.Send(ctx, s.sqs, approvalURL, []queue.Outgoing{{GroupID: "deployed-a", DedupID: newID(),
		Body: `{"stackId":"deployed-a","event":"DESTROY","by":"someone"}`}}))
	require.Eventually(t, func() bool {
		return s.count(`SELECT count(*) FROM history WHERE stack_id = 'deployed-a' AND kind = 'rejected'
			AND reason LIKE 'the approvals queue carries only the events machine provision lists under approvals%'`) == 1
	}, time.Minute, 100*time.Millisecond, "the approval was recognised as one, and refused")
	require.Equal(t, "RUN", s.stack("deployed-a").State)
	require.Equal(t, 0, s.queueDepth(approvalDLQ))

	// DESTROY as a CloudSeam publisher sends it: to the intake, with no group id nor
	// deduplication id. Its record is told apart by its eventSourceARN and forwarded.
	_, err = s.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(intakeURL),
		MessageBody: aws.String(`{"stackId":"deployed-a","event":"DESTROY"}`)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.stack("deployed-a") == nil }, 3*time.Minute, 100*time.Millisecond,
		"stack deployed-a was never removed")
	state, _ = harness.ReadObject(t, ds.bucket, "provision/deployed-a/terraform/infra")
	require.NotContains(t, state, `"terraform_data"`, "destroy ran against the same state")
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, s.transitions("deployed-a"))
	require.Equal(t, 3, s.historyCount("deployed-a", "task-completed"))
	require.Len(t, builds.Builds(), 1, "the teardown ran in one build")
	require.Equal(t, "SUCCEEDED", builds.Builds()[0].Status())
	require.Contains(t, builds.Builds()[0].Output(), `"msg":"one-task runner started"`)

	// Both Terraform runs (the apply in Lambda, the teardown in the build) assumed the Terraform
	// role with the session policy of machine provision, each under its own session name.
	policy, err := terraform.SessionPolicy("aws", "provision", ds.bucket)
	require.NoError(t, err)
	assumed := stsFake.Requests()
	require.Len(t, assumed, 2, "one AssumeRole per Terraform run")
	for _, req := range assumed {
		require.Equal(t, terraformRoleArn, req["RoleArn"])
		require.JSONEq(t, policy, req["Policy"])
		require.True(t, strings.HasPrefix(req["RoleSessionName"], "tf-"), req["RoleSessionName"])
	}
	require.NotEqual(t, assumed[0]["RoleSessionName"], assumed[1]["RoleSessionName"])

	// Everything went through the mappings, in Lambda mode, and nothing was dead-lettered.
	require.Eventually(t, func() bool {
		return s.queueDepth(s.eventURL)+s.queueDepth(s.taskURL) == 0
	}, time.Minute, 100*time.Millisecond, "the queues drained")
	require.Equal(t, 0, s.queueDepth(s.eventDLQ))
	require.Equal(t, 0, s.queueDepth(s.taskDLQ))
	require.Equal(t, 0, s.queueDepth(intakeDLQ))
	require.Eventually(t, func() bool { return ds.mappings["StateManager/intake"].Deleted() == 1 }, time.Minute, 100*time.Millisecond,
		"the DESTROY, forwarded and deleted from the intake")
	require.Equal(t, int64(3), ds.mappings["Satisfier"].Deleted(), "three task messages, each deleted after its invocation")
	require.Equal(t, int64(0), ds.mappings["Satisfier"].FailedBatches())
	require.Equal(t, int64(0), ds.mappings["StateManager"].FailedBatches())
	require.GreaterOrEqual(t, ds.mappings["StateManager"].Deleted(), int64(5), "LAUNCH, DESTROY and three results")
	for _, name := range []string{"StateManager", "Satisfier"} {
		var out string
		for _, r := range ds.rie[name] {
			out += r.Output()
		}
		ready := map[string]string{"StateManager": "state manager ready", "Satisfier": "satisfier ready"}[name]
		require.Regexp(t, `"msg":"`+ready+`".*"lambda":true`, out, "%s ran in Lambda mode", name)
		// The emulator reports each invocation with the function's memory, the template's.
		memory := map[string]int{"StateManager": sm.memoryMB, "Satisfier": sat.memoryMB}[name]
		require.Contains(t, out, fmt.Sprintf("Memory Size: %d MB", memory))
	}
}

// withQueue is m for another queue, to compare the other settings.
func (m deployedMapping) withQueue(id string) deployedMapping {
	m.queueID = id
	return m
}

// waitFor waits until the stack is in state; Terraform under the emulator on a loaded machine
// takes longer than the local-mode tests allow.
func waitFor(t *testing.T, s *system, id, state string) *engine.Stack {
	t.Helper()
	var last *engine.Stack
	require.Eventually(t, func() bool {
		last = s.stack(id)
		return last != nil && last.State == state
	}, 3*time.Minute, 100*time.Millisecond, "stack %s never reached %s (last: %+v)", id, state, last)
	return last
}
