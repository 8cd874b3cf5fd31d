package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/signing"
)

var completeCommand = &command{
	name:    "complete",
	args:    "",
	summary: "settle a task by name, as an operator finishing a manual step (a signed result)",
	help: `
Sends TASK_COMPLETED (or, with --failed, TASK_ERROR with that description)
for the task --task of the stack: a result that names the task without a run
id, which settles the task's current run while it is pending (README "Results
by task name"). The state manager accepts results only with the result
signing key's signature when it has one, so this command signs the result
with the key in --signing-secret-id (default $RESULT_SIGNING_SECRET_ID, the
construct's ResultSigningKey secret; reading it needs
secretsmanager:GetSecretValue on it) or, locally, $RESULT_SIGNING_KEY. Without
either the result goes unsigned, which only a state manager without a key
accepts.

examples:
  stackseam complete --stack feature/login --task approve
  stackseam complete --stack feature/login --task approve --failed "rejected by QA"`,
	run: runComplete,
}

func runComplete(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	var t targetFlags
	task := t.register(fs, "task", "the `TASK` to settle (required)")
	failed := fs.String("failed", "", "report the task failed, with this `DESCRIPTION`")
	secretID := fs.String("signing-secret-id", "", "the Secrets Manager `SECRET` holding the result signing key (default $RESULT_SIGNING_SECRET_ID)")
	var sf sendFlags
	sf.register(fs)
	if code, ok := t.parse(c, fs, args); !ok {
		return code
	}
	ev := message.Event{StackID: t.stack, Event: message.EventTaskCompleted, Task: &message.TaskSpec{Name: *task}}
	if *failed != "" {
		ev.Event, ev.Description = message.EventTaskError, *failed
	}
	secret := first(*secretID, c.getenv("RESULT_SIGNING_SECRET_ID"))
	raw := c.getenv("RESULT_SIGNING_KEY")
	keyFor := func(ctx context.Context, cfg aws.Config) (signing.Key, error) {
		var client *secretsmanager.Client
		if secret != "" {
			client = secretsmanager.NewFromConfig(cfg)
		}
		key, err := signing.Load(ctx, client, secret, raw)
		if err != nil {
			return key, err
		}
		if !key.Required() {
			fmt.Fprintln(c.stderr, "stackseam complete: no result signing key (RESULT_SIGNING_SECRET_ID, RESULT_SIGNING_KEY): the result goes unsigned")
		}
		return key, nil
	}
	return publishSigned(ctx, c, cmd, fs, &sf, ev, keyFor)
}
