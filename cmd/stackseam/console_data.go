package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/internal/queue"
)

// consoleData is everything the console reads about stacks, asked through the read API: a
// read-only query.Reader on the database with the database flags, the deployed query function
// (query.Client) with --stack-name. The handlers are written once for both.
type consoleData struct{ api query.API }

// Reads is the read API a stack's timeline is read through, as `stackseam history` reads it.
func (d consoleData) Reads() query.API { return d.api }

// stackFilter narrows StackSummaries; zero fields select everything.
type stackFilter struct {
	Machine, State string
	// IDContains keeps the stacks whose id contains it, ignoring case.
	IDContains string
	Limit      int
}

// stackSummary is what the stacks page shows of one stack: its row without metadata, and the task
// counts.
type stackSummary = query.Summary

// History returns a stack's whole timeline (a task run's log key is found in it). A string
// that cannot be a stack id has none.
func (d consoleData) History(ctx context.Context, stackID string) ([]query.Entry, error) {
	if !message.ValidStackID(stackID) {
		return nil, nil
	}
	return (&historyReader{api: d.api, id: stackID}).all(ctx)
}

// StackSummaries returns the live stacks f selects, ordered by id, at most f.Limit of them (all
// when it is 0), and how many f selects in all. Overdue names the pending tasks past their
// deadline at now.
func (d consoleData) StackSummaries(ctx context.Context, f stackFilter, now time.Time) ([]stackSummary, int, error) {
	req := query.SummariesRequest{Filter: query.Filter{Machine: f.Machine, State: f.State}, IDContains: f.IDContains, Now: &now}
	var list []stackSummary
	for {
		req.Limit = query.MaxSummaryPageSize
		if f.Limit > 0 {
			req.Limit = min(f.Limit-len(list), query.MaxSummaryPageSize)
		}
		page, err := d.api.Summaries(ctx, req)
		if err != nil {
			return nil, 0, fmt.Errorf("error listing stacks: %w", err)
		}
		list = append(list, page.Summaries...)
		if page.NextCursor == "" || (f.Limit > 0 && len(list) >= f.Limit) {
			return list, page.Total, nil
		}
		req.Cursor = page.NextCursor
	}
}

// GetStack returns a live stack, or nil when there is none by that id.
func (d consoleData) GetStack(ctx context.Context, id string) (*engine.Stack, error) {
	if !message.ValidStackID(id) {
		return nil, nil
	}
	res, err := d.api.Stack(ctx, query.StackRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("error reading stack %s: %w", id, err)
	}
	return toEngineStack(res.Stack), nil
}

// Troubles returns, per stack id (of stackID only, unless it is ""), what went wrong with it
// since since that its task list does not show: runs the state manager failed itself, messages
// rejected, outbox messages parked, in that order.
func (d consoleData) Troubles(ctx context.Context, since time.Time, stackID string) (map[string][]string, error) {
	req := query.TroublesRequest{StackID: stackID, Since: &since, Paging: query.Paging{Limit: query.MaxTroublePageSize}}
	var list []query.Trouble
	for {
		page, err := d.api.Troubles(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("error reading settled runs, rejected and parked messages: %w", err)
		}
		list = append(list, page.Troubles...)
		if page.NextCursor == "" {
			break
		}
		req.Cursor = page.NextCursor
	}
	order := map[string]int{query.TroubleSettled: 0, query.TroubleRejected: 1, query.TroubleParked: 2}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.StackID != b.StackID {
			return a.StackID < b.StackID
		}
		if a.Kind != b.Kind {
			return order[a.Kind] < order[b.Kind]
		}
		return a.At.Before(b.At)
	})
	out := map[string][]string{}
	for _, t := range list {
		out[t.StackID] = append(out[t.StackID], troubleText(t))
	}
	return out, nil
}

// troubleText says why a trouble makes its stack stuck.
func troubleText(t query.Trouble) string {
	switch t.Kind {
	case query.TroubleSettled:
		return fmt.Sprintf("task %s failed by the state manager (%s): %s", t.Task, t.SettledBy, oneLine(t.Reason, 200))
	case query.TroubleParked:
		return oneLine(fmt.Sprintf("parked: %d message(s) that can never be sent, the last: %s", t.Count, t.Reason), 300)
	default:
		return oneLine(fmt.Sprintf("%s: %d message(s), the last: %s", t.Kind, t.Count, t.Reason), 300)
	}
}

// StateCounts returns the number of live stacks per machine and state.
func (d consoleData) StateCounts(ctx context.Context) (map[string]map[string]int, error) {
	res, err := d.api.StateCounts(ctx, query.StateCountsRequest{})
	if err != nil {
		return nil, fmt.Errorf("error counting stacks per state: %w", err)
	}
	out := map[string]map[string]int{}
	for _, c := range res.Counts {
		if out[c.Machine] == nil {
			out[c.Machine] = map[string]int{}
		}
		out[c.Machine][c.State] = c.Stacks
	}
	return out, nil
}

// MachineVersion returns a stored machine version by its hash (see engine.Stack.MachineHash).
func (d consoleData) MachineVersion(ctx context.Context, hash string) (name string, body []byte, err error) {
	res, err := d.api.MachineVersion(ctx, query.MachineVersionRequest{Hash: hash})
	if err != nil {
		return "", nil, fmt.Errorf("error loading machine version %s: %w", hash, err)
	}
	if res.Name == "" {
		return "", nil, fmt.Errorf("machine version %s is not stored", hash)
	}
	return res.Name, []byte(res.Body), nil
}

// ChangeMark returns a value that changes whenever a stack's history or rejections grow, so
// the live pages know when to read again.
func (d consoleData) ChangeMark(ctx context.Context) (string, error) {
	res, err := d.api.ChangeMark(ctx, query.ChangeMarkRequest{})
	if err != nil {
		return "", fmt.Errorf("error reading the change mark: %w", err)
	}
	return res.Mark, nil
}

// maxMachineFile bounds a machine file the console reads or accepts (the state manager's catalog
// refuses bigger files anyway).
const maxMachineFile = 1 << 20

// machineStore is where the console reads and saves machine files: a folder or an S3 prefix, as
// the state manager loads them.
type machineStore interface {
	// List returns the machine names, sorted.
	List(ctx context.Context) ([]string, error)
	// Read returns a machine's file: where it is (for problems' File) and its bytes. It wraps
	// os.ErrNotExist when no file defines the machine.
	Read(ctx context.Context, name string) (location string, body []byte, err error)
	// Write replaces (or creates) a machine's file.
	Write(ctx context.Context, name string, body []byte) error
	// String says where the files are.
	String() string
}

type dirMachines struct{ dir string }

func (d dirMachines) String() string { return d.dir }

func (d dirMachines) List(_ context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("error listing machine files in %s: %w", d.dir, err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := machine.IsMachineFile(e.Name()); ok && !e.IsDir() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// path returns the file of machine name, or "" when there is none. A name that is not a machine
// name never becomes a path (no "../").
func (d dirMachines) path(name string) string {
	if !validMachineName(name) {
		return ""
	}
	for _, ext := range []string{".yml", ".yaml"} {
		p := filepath.Join(d.dir, name+ext)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func (d dirMachines) Read(_ context.Context, name string) (string, []byte, error) {
	p := d.path(name)
	if p == "" {
		return "", nil, fmt.Errorf("machine %s: no %s.yml or %s.yaml in %s: %w", name, name, name, d.dir, os.ErrNotExist)
	}
	body, err := readLimited(os.Open(p))
	if err != nil {
		return "", nil, fmt.Errorf("error reading %s: %w", p, err)
	}
	return p, body, nil
}

func (d dirMachines) Write(_ context.Context, name string, body []byte) error {
	if !validMachineName(name) {
		return fmt.Errorf("%q cannot name a machine file", name)
	}
	p := d.path(name)
	if p == "" {
		p = filepath.Join(d.dir, name+".yml")
	}
	// Written aside and renamed, so the state manager never reads half a file.
	tmp := filepath.Join(d.dir, "."+name+".console-tmp")
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("error writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("error replacing %s: %w", p, err)
	}
	return nil
}

func readLimited(f *os.File, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return limitedRead(f)
}

func limitedRead(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxMachineFile+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxMachineFile {
		return nil, fmt.Errorf("the file is larger than %d bytes", maxMachineFile)
	}
	return body, nil
}

type s3Machines struct {
	client         *s3.Client
	bucket, prefix string
}

func (m *s3Machines) String() string { return "s3://" + m.bucket + "/" + m.prefix }

// keys maps machine names to their object keys (this prefix's objects only, as the catalog).
func (m *s3Machines) keys(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	pages := s3.NewListObjectsV2Paginator(m.client, &s3.ListObjectsV2Input{Bucket: aws.String(m.bucket),
		Prefix: aws.String(m.prefix), Delimiter: aws.String("/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("error listing machine files in %s: %w", m, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if name, ok := machine.IsMachineFile(strings.TrimPrefix(key, m.prefix)); ok {
				out[name] = key
			}
		}
	}
	return out, nil
}

func (m *s3Machines) List(ctx context.Context) ([]string, error) {
	keys, err := m.keys(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (m *s3Machines) Read(ctx context.Context, name string) (string, []byte, error) {
	keys, err := m.keys(ctx)
	if err != nil {
		return "", nil, err
	}
	key, ok := keys[name]
	if !ok {
		return "", nil, fmt.Errorf("machine %s: no %s.yml or %s.yaml in %s: %w", name, name, name, m, os.ErrNotExist)
	}
	res, err := m.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(m.bucket), Key: aws.String(key)})
	if err != nil {
		return "", nil, fmt.Errorf("error reading s3://%s/%s: %w", m.bucket, key, err)
	}
	defer res.Body.Close()
	body, err := limitedRead(res.Body)
	if err != nil {
		return "", nil, fmt.Errorf("error reading s3://%s/%s: %w", m.bucket, key, err)
	}
	return "s3://" + m.bucket + "/" + key, body, nil
}

func (m *s3Machines) Write(ctx context.Context, name string, body []byte) error {
	if !validMachineName(name) {
		return fmt.Errorf("%q cannot name a machine file", name)
	}
	keys, err := m.keys(ctx)
	if err != nil {
		return err
	}
	key, ok := keys[name]
	if !ok {
		key = m.prefix + name + ".yml"
	}
	_, err = m.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(m.bucket), Key: aws.String(key),
		Body: strings.NewReader(string(body)), ContentType: aws.String("application/yaml")})
	if err != nil {
		return fmt.Errorf("error writing s3://%s/%s: %w", m.bucket, key, err)
	}
	return nil
}

// maxLogBytes is how much of a task log the console shows: the end of a long log is where the
// error is, so it reads the last part.
const maxLogBytes = 512 << 10

// logReader reads a task run's log.
type logReader interface {
	// ReadLog returns the last maxLogBytes of the object and whether it was cut.
	ReadLog(ctx context.Context, bucket, key string) (text string, cut bool, err error)
}

type s3Logs struct{ client *s3.Client }

func (l *s3Logs) ReadLog(ctx context.Context, bucket, key string) (string, bool, error) {
	res, err := l.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			return "", false, fmt.Errorf("no log at s3://%s/%s: %w", bucket, key, os.ErrNotExist)
		}
		return "", false, fmt.Errorf("error reading the log at s3://%s/%s: %w", bucket, key, err)
	}
	defer res.Body.Close()
	// The whole object streams through, only its end is kept. (A suffix Range would save the
	// transfer, but not every S3 implementation answers one longer than the object.)
	t := &tailBuffer{max: maxLogBytes}
	if _, err := io.Copy(t, res.Body); err != nil {
		return "", false, fmt.Errorf("error reading the log at s3://%s/%s: %w", bucket, key, err)
	}
	text, cut := t.tail()
	return string(text), cut, nil
}

// tailBuffer keeps the last max bytes written to it (tail returns them). It compacts when it
// holds twice that, so memory stays bounded whatever the log's size.
type tailBuffer struct {
	buf []byte
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

// tail returns the last max bytes and whether anything before them was dropped.
func (t *tailBuffer) tail() ([]byte, bool) {
	if len(t.buf) > t.max {
		return t.buf[len(t.buf)-t.max:], true
	}
	return t.buf, t.cut
}

// publisher sends one event to a queue: the event queue, or the approvals queue for approvals.
type publisher func(ctx context.Context, ev message.Event) error

// sqsPublisher publishes as `stackseam send` and `stackseam approve` do: FIFO group = stack id, a fresh
// deduplication id.
func sqsPublisher(client *sqs.Client, url string) publisher {
	return func(ctx context.Context, ev message.Event) error {
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("error encoding the event: %w", err)
		}
		if _, err := message.ParseEvent(body); err != nil {
			return err
		}
		err = queue.Send(ctx, client, url, []queue.Outgoing{{Body: string(body), GroupID: ev.StackID, DedupID: newDedupID()}})
		if err != nil {
			return fmt.Errorf("error sending %s to %s: %w", ev.Event, url, err)
		}
		return nil
	}
}
