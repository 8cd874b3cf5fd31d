package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/stackseam/stackseam/internal/message"
)

// Scope gives each Terraform run credentials that reach, in the stackseam bucket, only its own
// machine's objects (<machine>/*: the state of the machine's stacks and their lock files): an
// sts:AssumeRole of the Terraform role with a session policy (SessionPolicy), served to Terraform
// by a credentials endpoint of the run's own (Endpoint), which renews the session before it
// ends. The Go code of the
// satisfier keeps its own credentials for what it does itself (sources, logs, the lock it takes,
// fences, plans). See README.md, "The task satisfier", and constructs/README.md, "What Terraform
// tasks may touch".
type Scope struct {
	// STS assumes the role. Required.
	STS *sts.Client
	// RoleARN is the Terraform role (TERRAFORM_ROLE_ARN). Required.
	RoleARN string
	// MaxDuration is the longest session asked for: STS grants one hour at most when the
	// caller's own credentials come from a role (role chaining: a Lambda function's), else up to
	// the role's MaxSessionDuration. A longer session STS refuses for role chaining is asked for
	// again with MaxChainedSession; the run's credentials endpoint assumes the role again before
	// each session ends, so the run keeps its access however long it lasts. Defaults to
	// MaxChainedSession.
	MaxDuration time.Duration
	// ExpiryWindow is how long before a session ends the run's credentials endpoint assumes the
	// role again. Defaults to DefaultExpiryWindow.
	ExpiryWindow time.Duration
}

// MaxChainedSession is the longest session STS grants to a role assumed with a role's own
// credentials (role chaining), whatever the role's MaxSessionDuration.
const MaxChainedSession = time.Hour

// MaxSession is the longest session STS grants at all (a role's MaxSessionDuration at most).
const MaxSession = 12 * time.Hour

// minSession is the shortest session STS grants.
const minSession = 15 * time.Minute

// maxSessionPolicy is STS's limit on a session policy's plain text (before its own packing,
// which compresses further; staying under the plain limit is the safe side).
const maxSessionPolicy = 2048

// credentialVariables are the environment variables through which Terraform's AWS SDKs could find
// credentials other than the assumed ones: they are removed from a scoped run's environment.
var credentialVariables = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME"}

// policyDocument and policyStatement are the IAM JSON a session policy is written in.
type policyDocument struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid         string         `json:"Sid"`
	Effect      string         `json:"Effect"`
	Action      any            `json:"Action"`
	Resource    any            `json:"Resource,omitempty"`
	NotResource any            `json:"NotResource,omitempty"`
	Condition   map[string]any `json:"Condition,omitempty"`
}

// SessionPolicy is the session policy of one run of machine's Terraform: everything the role
// allows outside buckets, and in each of buckets only objects under <machine>/ (the state layout
// <machine>/<stackId>/<key> and its .tflock files) and listing those. buckets are the stackseam
// bucket and, when the script's backend block names another, the run's state bucket. The
// session's permissions are the intersection of this and the role's own policies, so the role's
// denies (machines/, fences/, the bucket's settings) still hold. Listing also allows the S3
// backend's workspace prefix (env:/), which `init` lists to find workspaces and which stackseam
// never writes to. partition is the ARN partition (aws, aws-cn, …).
func SessionPolicy(partition, machine string, buckets ...string) (string, error) {
	if machine == "" || strings.ContainsAny(machine, "/*?") || len(buckets) == 0 {
		return "", fmt.Errorf("no session policy for machine %q in buckets %q", machine, buckets)
	}
	var outside, objects, listed []string
	for _, b := range buckets {
		if b == "" {
			return "", fmt.Errorf("no session policy for machine %q in an unnamed bucket", machine)
		}
		arn := "arn:" + partition + ":s3:::" + b
		outside = append(outside, arn, arn+"/*")
		objects = append(objects, arn+"/"+machine+"/*")
		listed = append(listed, arn)
	}
	doc := policyDocument{Version: "2012-10-17", Statement: []policyStatement{
		{Sid: "OutsideTheBuckets", Effect: "Allow", Action: "*", NotResource: outside},
		{Sid: "OwnMachineObjects", Effect: "Allow", Action: "s3:*", Resource: objects},
		{Sid: "ListOwnMachine", Effect: "Allow", Action: "s3:ListBucket", Resource: listed,
			Condition: map[string]any{"StringLike": map[string]any{"s3:prefix": []string{machine + "/*", "env:/*"}}}},
	}}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("error encoding the session policy: %w", err)
	}
	if len(b) > maxSessionPolicy {
		return "", fmt.Errorf("the session policy for machine %s is %d characters, more than STS's %d", machine, len(b), maxSessionPolicy)
	}
	return string(b), nil
}

// sessionNameUnsafe is what a role session name may not hold (STS allows [\w+=,.@-]).
var sessionNameUnsafe = regexp.MustCompile(`[^\w+=,.@-]`)

// SessionName is the role session name of a run: "tf-" and the run id, with characters STS does
// not allow replaced, cut to STS's 64. It shows in CloudTrail as the session that made each call.
func SessionName(runID string) string {
	name := "tf-" + sessionNameUnsafe.ReplaceAllString(runID, "_")
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// SessionDuration is how long a run's credentials must last: from now to the run's deadline plus
// the stop grace, at least STS's 15 minutes and at most longest. A run without a deadline gets longest.
func SessionDuration(ctx context.Context, stopGrace, longest time.Duration) time.Duration {
	d := longest
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl) + stopGrace + time.Minute // a minute for the log and the lock release
	}
	return max(min(d, longest), minSession).Truncate(time.Second)
}

// assumer is the credentials provider behind a run's endpoint: each Retrieve assumes the
// Terraform role with the run's session policy and session name, for the run's remaining time
// (SessionDuration) at most longest. When STS refuses a session longer than an hour for role
// chaining, it asks for the chained hour, then and from then on: the endpoint's cache assumes
// the role again before each session ends.
type assumer struct {
	scope     *Scope
	runCtx    context.Context // its deadline is the run's; not used to cancel calls
	name      string
	policy    string
	machine   string
	stopGrace time.Duration
	// onCredentials is told each session's credentials, so that the run's log masks them.
	onCredentials func(aws.Credentials)

	mu      sync.Mutex
	longest time.Duration
}

// Retrieve implements aws.CredentialsProvider.
func (a *assumer) Retrieve(ctx context.Context) (aws.Credentials, error) {
	a.mu.Lock()
	longest := a.longest
	a.mu.Unlock()
	assume := func(d time.Duration) (*sts.AssumeRoleOutput, error) {
		return a.scope.STS.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn:         aws.String(a.scope.RoleARN),
			RoleSessionName: aws.String(a.name),
			Policy:          aws.String(a.policy),
			DurationSeconds: aws.Int32(int32(d / time.Second)),
		})
	}
	d := SessionDuration(a.runCtx, a.stopGrace, longest)
	out, err := assume(d)
	var apiErr smithy.APIError
	if err != nil && d > MaxChainedSession && errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" &&
		strings.Contains(apiErr.ErrorMessage(), "chaining") {
		a.mu.Lock()
		a.longest = MaxChainedSession
		a.mu.Unlock()
		d = MaxChainedSession
		out, err = assume(d)
	}
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("error assuming the Terraform role %s for machine %s: %w", a.scope.RoleARN, a.machine, err)
	}
	c := out.Credentials
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretAccessKey) == "" || aws.ToString(c.SessionToken) == "" {
		return aws.Credentials{}, errors.New("assuming the Terraform role gave no credentials")
	}
	creds := aws.Credentials{AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken), Source: "stackseam-terraform-role"}
	if c.Expiration != nil {
		creds.CanExpire, creds.Expires = true, *c.Expiration
	} else {
		creds.CanExpire, creds.Expires = true, time.Now().Add(d)
	}
	if a.onCredentials != nil {
		a.onCredentials(creds)
	}
	return creds, nil
}

// endpoint starts the credentials endpoint of task's run and assumes the role once through it,
// so that a role that cannot be assumed fails the run before Terraform starts. It returns a
// note for the run's log when the sessions are shorter than the run (they are renewed).
func (s *Scope) endpoint(ctx context.Context, task message.Task, buckets []string, stopGrace time.Duration,
	onCredentials func(aws.Credentials)) (*Endpoint, string, error) {
	partition := "aws"
	if parts := strings.SplitN(s.RoleARN, ":", 3); len(parts) == 3 && parts[0] == "arn" {
		partition = parts[1]
	} else {
		return nil, "", fmt.Errorf("the Terraform role %q is not an ARN", s.RoleARN)
	}
	policy, err := SessionPolicy(partition, task.Stack.Machine, buckets...)
	if err != nil {
		return nil, "", err
	}
	longest := s.MaxDuration
	if longest <= 0 {
		longest = MaxChainedSession
	}
	a := &assumer{scope: s, runCtx: ctx, name: SessionName(task.TaskRunID), policy: policy, machine: task.Stack.Machine,
		stopGrace: stopGrace, onCredentials: onCredentials, longest: longest}
	e, err := StartEndpoint(a, s.ExpiryWindow)
	if err != nil {
		return nil, "", err
	}
	first, err := e.Retrieve(ctx)
	if err != nil {
		e.Close()
		return nil, "", err
	}
	// The cache gives a session's end less the window as its expiry: what Terraform is told, so
	// that its SDK comes back for the next session when the cache has it.
	end := first.Expires.Add(s.expiryWindow())
	note := ""
	if dl, ok := ctx.Deadline(); ok && end.Before(dl.Add(stopGrace)) {
		note = fmt.Sprintf("Terraform's credentials last until %s, less than the run's time: they are renewed %s before they end",
			end.UTC().Format(time.RFC3339), s.expiryWindow())
	}
	return e, note, nil
}

func (s *Scope) expiryWindow() time.Duration {
	if s.ExpiryWindow > 0 {
		return s.ExpiryWindow
	}
	return DefaultExpiryWindow
}
