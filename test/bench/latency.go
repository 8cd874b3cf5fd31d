package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/test/localenv"
)

// duoMachine has one state with two Lambda tasks between LAUNCH and RUN.
const duoMachine = `version: 1
events: [LAUNCH, DESTROY]
states:
  INIT: {on: {LAUNCH: [{action: advance, state: PROVISION}]}}
  PROVISION:
    tasks: [first, second]
    on: {NEXT: [{action: advance, state: RUN}]}
  RUN: {on: {DESTROY: [{action: advance, state: GONE}]}}
  GONE: {terminal: true}
tasks:
  first: {executor: lambda, config: {name: first-fn}}
  second: {executor: lambda, config: {name: second-fn, args: {greeting: hello}}}
`

// system is both functions running in local mode against the emulator, the
// database and a fake Lambda, with their default settings.
type system struct {
	eventURL, taskURL string
	queues            []string
	lambda            *localenv.LambdaFake
	smEnv, satEnv     []string
	dbURL             string
}

func (b *bench) newSystem(ctx context.Context, label string) (*system, func(), error) {
	s := &system{}
	var err error
	cleanup := func() {
		for _, q := range s.queues {
			_ = localenv.DeleteQueue(context.Background(), b.sqs, q)
		}
		if s.lambda != nil {
			s.lambda.Close()
		}
	}
	var dlq string
	name := label + "-" + localenv.RandomHex(4)
	s.eventURL, dlq, err = localenv.CreateQueue(ctx, b.sqs, name+"-events", true, 5, nil)
	s.queues = append(s.queues, s.eventURL, dlq)
	if err != nil {
		return nil, cleanup, err
	}
	s.taskURL, dlq, err = localenv.CreateQueue(ctx, b.sqs, name+"-tasks", false, 5, nil)
	s.queues = append(s.queues, s.taskURL, dlq)
	if err != nil {
		return nil, cleanup, err
	}
	machines, err := os.MkdirTemp(b.work, "machines-")
	if err != nil {
		return nil, cleanup, err
	}
	if err := os.WriteFile(filepath.Join(machines, "duo.yml"), []byte(duoMachine), 0o644); err != nil {
		return nil, cleanup, err
	}
	if _, s.dbURL, err = b.database(label); err != nil {
		return nil, cleanup, err
	}
	s.lambda = localenv.NewLambdaFake()
	s.lambda.Returns("first-fn", `{"first": "done"}`)
	s.lambda.Returns("second-fn", `{"second": "done"}`)
	common := append(localenv.AWSEnv(b.emu.URL), "EVENT_QUEUE_URL="+s.eventURL, "TASK_QUEUE_URL="+s.taskURL)
	s.smEnv = append(slices.Clone(common), "MACHINES_DIR="+machines, "DATABASE_URL="+s.dbURL)
	s.satEnv = append(slices.Clone(common), s.lambda.Env())
	return s, cleanup, nil
}

// latency measures LAUNCH → RUN through both binaries: from just before the
// test sends LAUNCH to the state manager's log line saying the stack moved to
// RUN (its timestamp), one stack at a time; with -baseline, the baseline's
// binaries too, in alternating halves.
func (b *bench) latency(ctx context.Context) error {
	samples := map[string][]time.Duration{}
	for half := range 2 {
		for _, v := range b.variants() {
			got, err := b.latencyOf(ctx, v, b.o.stacks/2, half)
			if err != nil {
				return err
			}
			samples[v] = append(samples[v], got...)
		}
	}
	r := summarize(samples[""], 0)
	reference := "—"
	if b.o.baseline != "" {
		base := summarize(samples[baselineSuffix], 0)
		reference = fmt.Sprintf("baseline: %s / %s", ms(base.p50), ms(base.p99))
	}
	b.add(row{
		measure:   fmt.Sprintf("LAUNCH → RUN, 2 Lambda tasks, both binaries and the emulator, %d stacks (p50 / p99)", len(samples[""])),
		result:    fmt.Sprintf("%s / %s", ms(r.p50), ms(r.p99)),
		reference: reference,
		target:    "p50 < 100 ms",
		met:       verdict(r.p50 < 100*time.Millisecond),
	})
	return nil
}

// latencyOf measures n stacks' LAUNCH → RUN on the binaries of variant v.
func (b *bench) latencyOf(ctx context.Context, v string, n, round int) ([]time.Duration, error) {
	s, cleanup, err := b.newSystem(ctx, "latency")
	defer cleanup()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	arrived := map[string]chan time.Time{}
	waitFor := func(id string) chan time.Time {
		mu.Lock()
		defer mu.Unlock()
		if arrived[id] == nil {
			arrived[id] = make(chan time.Time, 1)
		}
		return arrived[id]
	}
	onLine := func(line string, _ time.Time) {
		if !strings.Contains(line, `"to":"RUN"`) {
			return
		}
		var rec struct {
			Time    time.Time `json:"time"`
			StackID string    `json:"stackId"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			waitFor(rec.StackID) <- rec.Time
		}
	}
	sm, err := start(b.bins["statemanager"+v], s.smEnv, "state manager ready", onLine)
	if err != nil {
		return nil, err
	}
	defer sm.stop()
	sat, err := start(b.bins["satisfier"+v], s.satEnv, "satisfier ready", nil)
	if err != nil {
		return nil, err
	}
	defer sat.stop()

	const warmup = 10
	var samples []time.Duration
	for i := range warmup + n {
		id := fmt.Sprintf("lat-%d-%04d", round, i)
		ch := waitFor(id)
		sent := time.Now()
		_, err := b.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.eventURL),
			MessageBody:    aws.String(fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"duo"}`, id)),
			MessageGroupId: aws.String(id), MessageDeduplicationId: aws.String(id)})
		if err != nil {
			return nil, err
		}
		select {
		case at := <-ch:
			if i >= warmup {
				samples = append(samples, at.Sub(sent))
			}
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("stack %s did not reach RUN within 30 s; state manager:\n%s\nsatisfier:\n%s",
				id, sm.out.tail(10), sat.out.tail(10))
		}
	}
	r := summarize(slices.Clone(samples), 0)
	progress("  %s%d stacks: p50 %s, p99 %s", label(v), len(samples), ms(r.p50), ms(r.p99))
	return samples, nil
}

// label names a variant in progress lines.
func label(v string) string {
	if v == "" {
		return ""
	}
	return "baseline: "
}
