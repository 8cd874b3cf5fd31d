package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/stackseam/stackseam/internal/message"
)

// Scope gives each Terraform run credentials that reach, in the stackseam bucket, only its own
// machine's objects (<machine>/*: the state of the machine's stacks and their lock files): an
// sts:AssumeRole of the Terraform role with a session policy (SessionPolicy). The Go code of the
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
	// again with MaxChainedSession, and the run's log says its credentials may end before it
	// does. Defaults to MaxChainedSession.
	MaxDuration time.Duration
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

// credentials assumes the Terraform role for task's run and returns the environment variables
// that give Terraform the session's credentials, and a note when the run may outlive them.
func (s *Scope) credentials(ctx context.Context, task message.Task, buckets []string, stopGrace time.Duration) (map[string]string, string, error) {
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
	d := SessionDuration(ctx, stopGrace, longest)
	assume := func(d time.Duration) (*sts.AssumeRoleOutput, error) {
		return s.STS.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn:         aws.String(s.RoleARN),
			RoleSessionName: aws.String(SessionName(task.TaskRunID)),
			Policy:          aws.String(policy),
			DurationSeconds: aws.Int32(int32(d / time.Second)),
		})
	}
	out, err := assume(d)
	var apiErr smithy.APIError
	if err != nil && d > MaxChainedSession && errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" &&
		strings.Contains(apiErr.ErrorMessage(), "chaining") {
		d = MaxChainedSession
		out, err = assume(d)
	}
	note := ""
	if dl, ok := ctx.Deadline(); ok && time.Until(dl)+stopGrace > d {
		note = fmt.Sprintf("Terraform's credentials last %s, less than the run's time: its AWS calls after that fail", d)
	}
	if err != nil {
		return nil, "", fmt.Errorf("error assuming the Terraform role %s for machine %s: %w", s.RoleARN, task.Stack.Machine, err)
	}
	c := out.Credentials
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretAccessKey) == "" || aws.ToString(c.SessionToken) == "" {
		return nil, "", errors.New("assuming the Terraform role gave no credentials")
	}
	return map[string]string{
		"AWS_ACCESS_KEY_ID":     aws.ToString(c.AccessKeyId),
		"AWS_SECRET_ACCESS_KEY": aws.ToString(c.SecretAccessKey),
		"AWS_SESSION_TOKEN":     aws.ToString(c.SessionToken),
	}, note, nil
}
