package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/store"
)

var importCommand = &command{
	name:    "import",
	args:    "cloudseam",
	summary: "bring stacks over from CloudSeam (its PostgreSQL table or a DynamoDB scan)",
	help: `
Reads CloudSeam's stacks — from its PostgreSQL table (id, machine, data: the
stack as JSON; --cloudseam-table, in stackseam's database unless
--cloudseam-database-url names CloudSeam's), or from a DynamoDB table export,
the JSON that ` + "`aws dynamodb scan --table-name Stacks`" + ` prints
(--dynamodb-scan FILE, - for stdin) — and stores each in stackseam with its
machine, state, previous state, metadata and tasks, so it continues where
CloudSeam left it. A task CloudSeam had satisfied is completed, one in error
is failed with its message, and one still pending is pending under a new run
id: a result CloudSeam's satisfier sends for it names the task, which settles
it (README "Results by task name"), or ` + "`stackseam retry --pending ID`" + `
dispatches it again.

A stack stackseam has, or imported before and has since removed, is left
alone, so importing twice changes nothing. A stack whose id, machine name,
state or metadata stackseam cannot take is refused with the reason, and the
command exits 1; with --machines DIR each stack's machine file must exist
there and have the stack's state and tasks. --dry-run shows what would
happen and writes nothing. The database flags are those of ` + "`stackseam stacks`" + `
(DATABASE_SCHEMA names stackseam's schema).

examples:
  stackseam import cloudseam --dry-run
  stackseam import cloudseam --cloudseam-database-url postgres://cs@old-db/cloudseam
  aws dynamodb scan --table-name Stacks > stacks.json
  stackseam import cloudseam --dynamodb-scan stacks.json --machines machines/`,
	run: runImport,
}

// cloudSeamTableRe is a table name the import may read: [schema.]table, plain identifiers.
var cloudSeamTableRe = regexp.MustCompile(`^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$`)

func runImport(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	dryRun := fs.Bool("dry-run", false, "show what would be imported; write nothing")
	table := fs.String("cloudseam-table", "public.stacks", "CloudSeam's PostgreSQL `TABLE` ([schema.]name)")
	csURL := fs.String("cloudseam-database-url", "", "PostgreSQL `URL` of CloudSeam's database (default: stackseam's own, shared with CloudSeam)")
	scan := fs.String("dynamodb-scan", "", "read the stacks from this `FILE` (- for stdin), the JSON `aws dynamodb scan` prints, instead of PostgreSQL")
	machinesDir := fs.String("machines", "", "check each stack against the machine files in `DIR`")
	var db databaseFlags
	db.register(fs)
	var out outputFlag
	out.register(fs)
	pos, code, done := parseFlags(fs, args, c.stdout, c.stderr)
	if done {
		return code
	}
	if len(pos) != 1 || pos[0] != "cloudseam" {
		return usageError(c, fs, "say what to import from: stackseam import cloudseam")
	}
	if *scan != "" && *csURL != "" {
		return usageError(c, fs, "--dynamodb-scan and --cloudseam-database-url are two sources; give one")
	}
	if !cloudSeamTableRe.MatchString(*table) {
		return usageError(c, fs, "--cloudseam-table %q must be [schema.]table, lower-case letters, digits and _", *table)
	}
	st, err := db.openForImport(ctx, c)
	if err != nil {
		return fail(c, cmd, err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return fail(c, cmd, fmt.Errorf("error preparing stackseam's tables: %w", err))
	}

	var records []cloudSeamRecord
	var from string
	if *scan != "" {
		from = "cloudseam dynamodb scan " + filepath.Base(*scan)
		records, err = readDynamoDBScan(*scan)
	} else {
		from = "cloudseam postgres " + *table
		records, err = readCloudSeamTable(ctx, st, *csURL, *table)
	}
	if err != nil {
		return fail(c, cmd, err)
	}

	machines := map[string]*machine.Machine{}
	machineErrs := map[string]error{}
	var results []importResult
	now := time.Now().UTC()
	for _, rec := range records {
		res := importResult{StackID: rec.id, Machine: rec.machine}
		stack, err := rec.stack(now)
		if err == nil && *machinesDir != "" {
			err = checkAgainstMachine(*machinesDir, stack, machines, machineErrs)
		}
		if err != nil {
			res.Outcome, res.Reason = "refused", err.Error()
			results = append(results, res)
			continue
		}
		res.State, res.Tasks = stack.State, taskSummary(stack.Tasks)
		outcome, err := st.ImportStack(ctx, *stack, from, *dryRun)
		if err != nil {
			return fail(c, cmd, err)
		}
		res.Outcome = string(outcome)
		results = append(results, res)
	}
	sort.Slice(results, func(i, j int) bool { return results[i].StackID < results[j].StackID })
	refused := 0
	for _, r := range results {
		if r.Outcome == "refused" {
			refused++
		}
	}
	if out.json() {
		if err := writeJSON(c.stdout, map[string]any{"dryRun": *dryRun, "from": from, "stacks": results}); err != nil {
			return fail(c, cmd, err)
		}
	} else {
		printImport(c.stdout, results, *dryRun)
	}
	if refused > 0 {
		return exitFail
	}
	return exitOK
}

// importResult is one stack's line of the report.
type importResult struct {
	StackID string `json:"stackId"`
	Machine string `json:"machine,omitempty"`
	State   string `json:"state,omitempty"`
	Tasks   string `json:"tasks,omitempty"`
	// Outcome is imported, exists, imported-before (store.ImportOutcome) or refused.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

func printImport(w io.Writer, results []importResult, dryRun bool) {
	tw := newTable(w)
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Outcome]++
		outcome := r.Outcome
		if dryRun && outcome == string(store.Imported) {
			outcome = "would import"
		}
		detail := r.Tasks
		if r.Reason != "" {
			detail = r.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", outcome, printable(r.StackID), printable(r.Machine), r.State, oneLine(detail, 200))
	}
	_ = tw.Flush()
	verb := "imported"
	if dryRun {
		verb = "would be imported (dry run: nothing was written)"
	}
	fmt.Fprintf(w, "%d stacks: %d %s, %d already in stackseam, %d imported before and since removed, %d refused\n",
		len(results), counts[string(store.Imported)], verb, counts[string(store.ImportExists)], counts[string(store.ImportedBefore)], counts["refused"])
}

func taskSummary(tasks []message.StackTask) string {
	if len(tasks) == 0 {
		return "no tasks"
	}
	parts := make([]string, len(tasks))
	for i, t := range tasks {
		parts[i] = t.Name + " " + string(t.Status)
	}
	return "tasks: " + strings.Join(parts, ", ")
}

// cloudSeamRecord is one stored CloudSeam stack: its id and machine (the table's columns, or the
// item's attributes) and the stack itself as CloudSeam serialised it.
type cloudSeamRecord struct {
	id, machine string
	data        json.RawMessage
}

// cloudSeamStack is a stack as CloudSeam's state machine stores it: JSON.stringify of its Stack
// object, whose state lives in the property `_state` behind a getter; tasks are {name, status:
// PENDING|SATISFIED|ERROR, errorMessage?} (earlier versions: {name, satisfied}); DynamoDB items
// also carry createdAt and updatedAt in milliseconds.
type cloudSeamStack struct {
	ID            string          `json:"id"`
	Machine       string          `json:"machine"`
	State         string          `json:"_state"`
	PlainState    string          `json:"state"`
	PreviousState *string         `json:"previousState"`
	Metadata      map[string]any  `json:"metadata"`
	Tasks         []cloudSeamTask `json:"tasks"`
	CreatedAt     *json.Number    `json:"createdAt"`
}

type cloudSeamTask struct {
	Name         string `json:"name"`
	Status       string `json:"status"`
	Satisfied    *bool  `json:"satisfied"`
	ErrorMessage string `json:"errorMessage"`
}

// statePattern is what a state name is in a machine file.
var statePattern = regexp.MustCompile(`^[A-Z0-9-]+$`)

// validTaskName bounds an imported task's name as a machine file can write one: not empty, valid
// UTF-8 without control characters, at most 256 bytes.
func validTaskName(name string) bool {
	return name != "" && len(name) <= 256 && utf8.ValidString(name) &&
		!strings.ContainsFunc(name, unicode.IsControl)
}

// stack turns the record into a stackseam stack, or says why it cannot be one. The id, machine
// and metadata are judged by the state manager's own parser (message.ParseEvent), so an imported
// stack never holds what an event could not bring.
func (r cloudSeamRecord) stack(now time.Time) (*engine.Stack, error) {
	var cs cloudSeamStack
	dec := json.NewDecoder(bytes.NewReader(r.data))
	dec.UseNumber()
	if err := dec.Decode(&cs); err != nil {
		return nil, fmt.Errorf("the stored stack is not CloudSeam's JSON: %v", err)
	}
	if cs.ID == "" {
		cs.ID = r.id
	}
	if cs.Machine == "" {
		cs.Machine = r.machine
	}
	if r.id != "" && cs.ID != r.id {
		return nil, fmt.Errorf("the row's id %q and the stored stack's id %q differ", r.id, cs.ID)
	}
	state := cs.State
	if state == "" {
		state = cs.PlainState
	}
	if !statePattern.MatchString(state) {
		return nil, fmt.Errorf("state %q is not a state name", state)
	}
	// Null values are keys CloudSeam kept with a null (Object.assign); stackseam removes them.
	metadata := message.Metadata{}
	for k, v := range cs.Metadata {
		if v != nil {
			metadata[k] = v
		}
	}
	probe, err := json.Marshal(map[string]any{"stackId": cs.ID, "machine": cs.Machine, "event": "IMPORT", "metadata": metadata})
	if err != nil {
		return nil, fmt.Errorf("the stack cannot be encoded: %v", err)
	}
	if _, err := message.ParseEvent(probe); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), message.ErrInvalid.Error()+": "))
	}
	if cs.Machine == "" {
		return nil, errors.New("the stack names no machine")
	}
	if n := metadata.Bytes(); n > message.MaxStackMetadataBytes {
		return nil, fmt.Errorf("its metadata is %d bytes; a stack's is at most %d", n, message.MaxStackMetadataBytes)
	}
	created := now
	if cs.CreatedAt != nil {
		if ms, err := cs.CreatedAt.Int64(); err == nil && ms > 0 {
			created = time.UnixMilli(ms).UTC()
		}
	}
	st := &engine.Stack{ID: cs.ID, Machine: cs.Machine, State: state, Metadata: metadata, Tasks: []message.StackTask{},
		Version: 1, CreatedAt: created, StateEnteredAt: now, LastActivityAt: now}
	if cs.PreviousState != nil && *cs.PreviousState != "" {
		if !statePattern.MatchString(*cs.PreviousState) {
			return nil, fmt.Errorf("previous state %q is not a state name", *cs.PreviousState)
		}
		st.PreviousState = *cs.PreviousState
	}
	seen := map[string]bool{}
	for _, t := range cs.Tasks {
		if !validTaskName(t.Name) || seen[t.Name] {
			return nil, fmt.Errorf("task %q is not a task name, or is listed twice", t.Name)
		}
		seen[t.Name] = true
		task := message.StackTask{Name: t.Name, RunID: newImportRunID(), Attempt: 1, DispatchedAt: now}
		status := t.Status
		if status == "" && t.Satisfied != nil {
			status = map[bool]string{true: "SATISFIED", false: "PENDING"}[*t.Satisfied]
		}
		switch status {
		case "PENDING":
			task.Status = message.TaskPending
		case "SATISFIED":
			task.Status = message.TaskCompleted
			task.FinishedAt = &now
		case "ERROR":
			task.Status = message.TaskFailed
			task.FinishedAt = &now
			// Text PostgreSQL can store: valid UTF-8 without NUL.
			task.Description = message.CutUTF8(strings.ReplaceAll(strings.ToValidUTF8(t.ErrorMessage, "\uFFFD"), "\x00", "\uFFFD"), 16384)
			if task.Description == "" {
				task.Description = "failed in CloudSeam without a message"
			}
		default:
			return nil, fmt.Errorf("task %s has status %q; CloudSeam's are PENDING, SATISFIED and ERROR", t.Name, status)
		}
		st.Tasks = append(st.Tasks, task)
	}
	return st, nil
}

// checkAgainstMachine checks that st's machine file is in dir, valid, and has st's state and tasks.
func checkAgainstMachine(dir string, st *engine.Stack, cache map[string]*machine.Machine, errs map[string]error) error {
	m, ok := cache[st.Machine]
	if !ok && errs[st.Machine] == nil {
		var err error
		for _, ext := range []string{".yml", ".yaml"} {
			m, err = catalog.ParseFile(filepath.Join(dir, st.Machine+ext))
			if !errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		if err != nil {
			errs[st.Machine] = err
		} else {
			cache[st.Machine] = m
		}
	}
	if err := errs[st.Machine]; err != nil {
		return fmt.Errorf("machine %s: %v", st.Machine, err)
	}
	state := m.States[st.State]
	if state == nil {
		return fmt.Errorf("machine %s has no state %s", st.Machine, st.State)
	}
	for _, t := range st.Tasks {
		if !slices.Contains(state.Tasks, t.Name) {
			return fmt.Errorf("state %s of machine %s has no task %s", st.State, st.Machine, t.Name)
		}
	}
	return nil
}

// readCloudSeamTable reads CloudSeam's stacks table: from stackseam's own database (whose pool's
// search_path is stackseam's schema, so the table is named with its schema) or from url.
func readCloudSeamTable(ctx context.Context, st *store.Store, url, table string) ([]cloudSeamRecord, error) {
	query := "SELECT id::text, machine::text, data::text FROM " + table + " ORDER BY id"
	var rows pgx.Rows
	if url == "" {
		rows, _ = st.Pool().Query(ctx, query)
	} else {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			// The error may echo the URL, password included.
			return nil, errors.New("error connecting to CloudSeam's database (--cloudseam-database-url)")
		}
		defer conn.Close(context.WithoutCancel(ctx))
		rows, _ = conn.Query(ctx, query)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (cloudSeamRecord, error) {
		var r cloudSeamRecord
		var data string
		err := row.Scan(&r.id, &r.machine, &data)
		r.data = json.RawMessage(data)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("error reading CloudSeam's stacks from %s: %w", table, err)
	}
	return recs, nil
}

// readDynamoDBScan reads the JSON `aws dynamodb scan` prints: {"Items": [{attr: {"S": …}}, …]}.
func readDynamoDBScan(path string) ([]cloudSeamRecord, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("error reading the DynamoDB scan: %w", err)
	}
	var scan struct {
		Items []map[string]json.RawMessage `json:"Items"`
	}
	if err := json.Unmarshal(raw, &scan); err != nil {
		return nil, fmt.Errorf("the DynamoDB scan is not the JSON `aws dynamodb scan` prints: %w", err)
	}
	recs := make([]cloudSeamRecord, 0, len(scan.Items))
	for i, item := range scan.Items {
		plain := map[string]any{}
		for k, v := range item {
			val, err := dynamoValue(v)
			if err != nil {
				return nil, fmt.Errorf("item %d, attribute %s: %w", i, k, err)
			}
			plain[k] = val
		}
		data, err := json.Marshal(plain)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		id, _ := plain["id"].(string)
		m, _ := plain["machine"].(string)
		recs = append(recs, cloudSeamRecord{id: id, machine: m, data: data})
	}
	return recs, nil
}

// dynamoValue turns one attribute value of DynamoDB's JSON ({"S": "x"}, {"N": "3"}, {"BOOL":
// true}, {"NULL": true}, {"M": {…}}, {"L": […]}) into a plain JSON value. Numbers keep their text.
func dynamoValue(raw json.RawMessage) (any, error) {
	var av map[string]json.RawMessage
	if err := json.Unmarshal(raw, &av); err != nil || len(av) != 1 {
		return nil, errors.New("not a DynamoDB attribute value (one of S, N, BOOL, NULL, M, L)")
	}
	for typ, v := range av {
		switch typ {
		case "S":
			var s string
			err := json.Unmarshal(v, &s)
			return s, err
		case "N":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, err
			}
			n := json.Number(s)
			if _, err := n.Float64(); err != nil {
				return nil, fmt.Errorf("number %q: %w", s, err)
			}
			return n, nil
		case "BOOL":
			var b bool
			err := json.Unmarshal(v, &b)
			return b, err
		case "NULL":
			return nil, nil
		case "M":
			var m map[string]json.RawMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return nil, err
			}
			out := map[string]any{}
			for k, e := range m {
				val, err := dynamoValue(e)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				out[k] = val
			}
			return out, nil
		case "L":
			var l []json.RawMessage
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, err
			}
			out := make([]any, len(l))
			for i, e := range l {
				val, err := dynamoValue(e)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				out[i] = val
			}
			return out, nil
		default:
			return nil, fmt.Errorf("attribute type %s is not one CloudSeam stored", typ)
		}
	}
	return nil, nil
}

// newImportRunID is the run id an imported task gets: CloudSeam had none, and a result for the run
// settles it by task name (the engine), so it only has to be unique, like the state manager's.
func newImportRunID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
