package terraform

// Plan, approve, apply: the plan and drift actions and applying a saved plan (README.md,
// "Plan, approve, apply"). Everything the plan actions add to the executor lives in this file.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/message"
)

// PlansPrefix is where saved plans live in the bucket: one object per stack and plan task,
// PlanKey. A prefix of its own, like logs/, so that the satisfier's role can write and delete
// exactly there and a lifecycle rule can expire plans nobody applied.
const PlansPrefix = "plans/"

// PlanKey is where the plan of a stack's plan task is saved: `plans/<machine>/<stackId>/<task>.tfplan`.
// Each plan run replaces the last one, so only the latest plan of a task can ever be applied.
func PlanKey(machine, stackID, task string) string {
	return PlansPrefix + machine + "/" + stackID + "/" + task + ".tfplan"
}

// The object metadata a saved plan carries (S3 user metadata, x-amz-meta-…).
const (
	planMetaRun    = "stackseam-run"
	planMetaInputs = "stackseam-inputs"
)

// maxAddressesBytes bounds the JSON text of the addresses output: metadata values are at most
// 8 KiB, and a plan's summary should leave room for the rest of a stack's metadata.
const maxAddressesBytes = 4 << 10

// Summary is what a plan or drift check found, counted from the plan's JSON (`show -json`):
// resource addresses and actions only, never values, so nothing sensitive leaves the run.
type Summary struct {
	Add, Change, Destroy, Replace int
	// Addresses are "<action> <address>" for every resource that would change, in plan order.
	Addresses []string
	// Drifted are "<action> <address>" for every resource whose real object differs from the
	// state (the plan's resource_drift): what changed outside Terraform.
	Drifted []string
}

// Summarize counts the resource changes of a plan. A replacement counts as replace only, not as
// add and destroy too; reads of data sources and no-ops are not counted.
func Summarize(p *tfjson.Plan) Summary {
	var s Summary
	for _, rc := range p.ResourceChanges {
		if rc == nil || rc.Change == nil || rc.Mode == tfjson.DataResourceMode {
			continue
		}
		var action string
		switch a := rc.Change.Actions; {
		case a.Replace():
			s.Replace++
			action = "replace"
		case a.Create():
			s.Add++
			action = "create"
		case a.Update():
			s.Change++
			action = "update"
		case a.Delete():
			s.Destroy++
			action = "delete"
		default:
			continue
		}
		s.Addresses = append(s.Addresses, action+" "+rc.Address)
	}
	for _, rc := range p.ResourceDrift {
		if rc == nil || rc.Change == nil || rc.Mode == tfjson.DataResourceMode {
			continue
		}
		action := "update"
		if rc.Change.Actions.Delete() {
			action = "delete"
		}
		s.Drifted = append(s.Drifted, action+" "+rc.Address)
	}
	return s
}

// Outputs are the summary as a task's outputs, each key prefixed with the task's name
// (`review.add`…): a name with a dot can never be a Terraform variable, so the summary is not
// passed to later Terraform runs, and two plan tasks of a machine do not overwrite each other's.
func (s Summary) Outputs(task, found string, changes bool, runID, log string) (message.Metadata, []string) {
	out := message.Metadata{
		task + "." + found: changes,
		task + ".add":      json.Number(strconv.Itoa(s.Add)),
		task + ".change":   json.Number(strconv.Itoa(s.Change)),
		task + ".destroy":  json.Number(strconv.Itoa(s.Destroy)),
		task + ".replace":  json.Number(strconv.Itoa(s.Replace)),
		task + ".runId":    runID,
	}
	if log != "" {
		out[task+".log"] = log
	}
	var notes []string
	for key, list := range map[string][]string{".addresses": s.Addresses, ".drifted": s.Drifted} {
		text, left := jsonList(list, maxAddressesBytes)
		out[task+key] = text
		if left > 0 {
			out[task+key+"Omitted"] = json.Number(strconv.Itoa(left))
			notes = append(notes, fmt.Sprintf("%d address(es) left out of %s%s; the log lists them all", left, task, key))
		}
	}
	slices.Sort(notes)
	return out, notes
}

// jsonList is the JSON text of as many items of list as fit in max bytes, and how many did not.
func jsonList(list []string, max int) (string, int) {
	for n := len(list); n >= 0; n-- {
		b, _ := json.Marshal(append([]string{}, list[:n]...))
		if len(b) <= max {
			return string(b), len(list) - n
		}
	}
	return "[]", len(list)
}

// InputsDigest identifies what a plan was made from: the state location, the variable file and every
// source file (by path and content), before `init` adds its own files. An apply of a saved plan
// recomputes it and refuses to run when it differs, so a plan made from other variables or other
// files than the apply task has now is never applied as if it were current.
func InputsDigest(state string, varsJSON []byte, src string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "state %q\nvars %d\n", state, len(varsJSON))
	h.Write(varsJSON)
	var files []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("error reading the source for the plan's inputs: %w", err)
	}
	slices.Sort(files)
	for _, f := range files {
		rel, _ := filepath.Rel(src, f)
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("error reading the source for the plan's inputs: %w", err)
		}
		fmt.Fprintf(h, "file %q %d\n", filepath.ToSlash(rel), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// plan runs `plan -out`, reads what it found through `show -json`, and saves the plan file at
// PlanKey when there is something to apply (and removes an older one when there is not, so a
// plan that no longer describes the stack cannot be applied later).
func (r *Runner) plan(ctx context.Context, tf *tfexec.Terraform, task message.Task, varFile, work, inputs string, log *runLog) (executor.Outcome, error) {
	planFile, changes, summary, err := r.planAndShow(ctx, tf, varFile, work, "terraform plan")
	if err != nil {
		return executor.Outcome{}, err
	}
	key := PlanKey(task.Stack.Machine, task.Stack.ID, task.Task.Name)
	if changes {
		if err := r.savePlan(ctx, key, planFile, task.TaskRunID, inputs); err != nil {
			return executor.Outcome{}, err
		}
		fmt.Fprintf(log, "stackseam: plan saved at s3://%s/%s: %d to add, %d to change, %d to destroy, %d to replace\n",
			r.Bucket, key, summary.Add, summary.Change, summary.Destroy, summary.Replace)
	} else {
		if err := r.removePlan(ctx, key); err != nil {
			return executor.Outcome{}, err
		}
		fmt.Fprintf(log, "stackseam: no changes; no plan saved\n")
	}
	return r.planOutcome(task, summary, changes, message.OutcomeChanges, message.OutcomeNoChanges), nil
}

// drift runs a plan that is never saved: with `-detailed-exitcode`, it finds every difference
// between the configuration and the real infrastructure — what changed outside Terraform (the
// refresh, listed as drifted) and what Terraform would do about it. A stack whose configuration
// was applied has none, so any difference is drift.
func (r *Runner) drift(ctx context.Context, tf *tfexec.Terraform, task message.Task, varFile, work string, log *runLog) (executor.Outcome, error) {
	_, drifted, summary, err := r.planAndShow(ctx, tf, varFile, work, "terraform plan (drift check)")
	if err != nil {
		return executor.Outcome{}, err
	}
	if drifted {
		fmt.Fprintf(log, "stackseam: drift: %d to add, %d to change, %d to destroy, %d to replace; changed outside Terraform: %d\n",
			summary.Add, summary.Change, summary.Destroy, summary.Replace, len(summary.Drifted))
	} else {
		fmt.Fprintf(log, "stackseam: no drift\n")
	}
	return r.planOutcome(task, summary, drifted, message.OutcomeDrift, message.OutcomeNoDrift), nil
}

// planOutcome is the outcome of a plan or drift task: found (kind) or not (none), with the
// summary's outputs and notes.
func (r *Runner) planOutcome(task message.Task, summary Summary, found bool, kind, none string) executor.Outcome {
	outputs, notes := summary.Outputs(task.Task.Name, kind, found, task.TaskRunID, r.logURL(task))
	outcome := none
	if found {
		outcome = kind
	}
	return executor.Outcome{Outputs: outputs, Notes: notes, Outcome: outcome}
}

// planAndShow runs `plan -out` into the work folder and summarises the plan it wrote (see show);
// changes is whether it found any. what names the plan in an error.
func (r *Runner) planAndShow(ctx context.Context, tf *tfexec.Terraform, varFile, work, what string) (planFile string, changes bool, summary Summary, err error) {
	planFile = filepath.Join(work, "stackseam.tfplan")
	if changes, err = tf.Plan(ctx, tfexec.VarFile(varFile), tfexec.Lock(false), tfexec.Out(planFile)); err != nil {
		return "", false, Summary{}, fmt.Errorf("%s failed: %w", what, err)
	}
	if summary, err = r.show(ctx, tf, planFile); err != nil {
		return "", false, Summary{}, err
	}
	return planFile, changes, summary, nil
}

// show reads a plan file's JSON and summarises it. The JSON holds the planned values, sensitive
// ones included, so it never reaches the log.
func (r *Runner) show(ctx context.Context, tf *tfexec.Terraform, planFile string) (Summary, error) {
	tf.SetStdout(nil)
	p, err := tf.ShowPlanFile(ctx, planFile)
	if err != nil {
		return Summary{}, fmt.Errorf("terraform show of the plan failed: %w", err)
	}
	return Summarize(p), nil
}

// ErrStalePlan is the error of an apply whose saved plan cannot be applied any more: the state
// or the inputs changed since it was made, or it was replaced or removed. Plan again.
var ErrStalePlan = errors.New("the saved plan cannot be applied")

// applyPlan applies the saved plan of the plan task cfg.Plan, exactly as it was made, and
// removes it: a plan is applied at most once. It is refused, with the reason, when it is
// missing, when it is not the plan run the stack's metadata names (the one a person saw and
// approved), when the inputs changed since, or when OpenTofu finds the state changed since.
func (r *Runner) applyPlan(ctx context.Context, tf *tfexec.Terraform, task message.Task, planTask, work, inputs string, log *runLog) (executor.Outcome, error) {
	key := PlanKey(task.Stack.Machine, task.Stack.ID, planTask)
	obj, err := r.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String(key)})
	if err != nil {
		if notFound(err) {
			return executor.Outcome{}, fmt.Errorf("%w: there is no saved plan of task %s for stack %s at s3://%s/%s "+
				"(it was applied or refused already, the plan found no changes, or it expired): run the plan again",
				ErrStalePlan, planTask, task.Stack.ID, r.Bucket, key)
		}
		return executor.Outcome{}, fmt.Errorf("error reading the saved plan s3://%s/%s: %w", r.Bucket, key, err)
	}
	planFile := filepath.Join(work, "stackseam.tfplan")
	err = writeFile(planFile, obj.Body)
	obj.Body.Close()
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("error reading the saved plan s3://%s/%s: %w", r.Bucket, key, err)
	}
	run, madeFrom := obj.Metadata[planMetaRun], obj.Metadata[planMetaInputs]
	fmt.Fprintf(log, "stackseam: applying the saved plan s3://%s/%s of task %s, run %s\n", r.Bucket, key, planTask, run)
	// From here on the plan is used: whatever happens, it is not applied a second time.
	defer func() {
		if err := r.removePlan(ctx, key); err != nil {
			fmt.Fprintf(log, "stackseam: warning: %v\n", err)
		}
	}()
	if approved, ok := task.Stack.Metadata[planTask+".runId"].(string); ok && approved != run {
		return executor.Outcome{}, fmt.Errorf("%w: the saved plan of task %s is from run %s, but the stack's metadata names run %s "+
			"(the plan that was shown and approved); a later plan replaced it: review and approve that one",
			ErrStalePlan, planTask, run, approved)
	}
	if madeFrom != inputs {
		return executor.Outcome{}, fmt.Errorf("%w: the inputs changed since the plan of task %s was made "+
			"(the variables, the source files or the state key this task has now differ from the plan's): run the plan again",
			ErrStalePlan, planTask)
	}
	if err := tf.Apply(ctx, tfexec.DirOrPlan(planFile), tfexec.Lock(false)); err != nil {
		if strings.Contains(err.Error(), "Saved plan is stale") {
			return executor.Outcome{}, fmt.Errorf("%w: the state changed since the plan of task %s was made, and OpenTofu refuses a stale plan: %v",
				ErrStalePlan, planTask, err)
		}
		return executor.Outcome{}, fmt.Errorf("terraform apply of the saved plan failed: %w", err)
	}
	return r.outputs(ctx, tf)
}

// savePlan uploads a plan file with the run and the digest of the inputs it was made from.
func (r *Runner) savePlan(ctx context.Context, key, planFile, runID, inputs string) error {
	f, err := os.Open(planFile)
	if err != nil {
		return fmt.Errorf("error reading the plan file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("error reading the plan file: %w", err)
	}
	_, err = r.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(r.Bucket), Key: aws.String(key), Body: io.Reader(f), ContentLength: aws.Int64(info.Size()),
		// Encrypted at rest by the bucket's default encryption (the construct's bucket: S3-managed
		// keys; an existing bucket keeps its own, KMS included), as the state is.
		ContentType: aws.String("application/octet-stream"),
		Metadata:    map[string]string{planMetaRun: runID, planMetaInputs: inputs},
	})
	if err != nil {
		return fmt.Errorf("error saving the plan at s3://%s/%s: %w", r.Bucket, key, err)
	}
	return nil
}

// removePlan deletes a saved plan; one that is already gone is fine.
func (r *Runner) removePlan(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	_, err := r.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String(key)})
	if err != nil && !notFound(err) {
		return fmt.Errorf("error removing the saved plan s3://%s/%s: %w", r.Bucket, key, err)
	}
	return nil
}

// logURL is where Run stores the run's log.
func (r *Runner) logURL(task message.Task) string {
	return "s3://" + r.Bucket + "/" + LogKey(task)
}
