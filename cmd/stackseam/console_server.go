package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
)

// consoleAssets is the web app: plain HTML, CSS and JavaScript, no build step and nothing
// fetched from elsewhere (console_web/NOTICE lists what is vendored: nothing yet).
//
//go:embed console_web
var consoleAssets embed.FS

// consoleServer serves `stackseam console`.
type consoleServer struct {
	data     consoleData
	machines machineStore
	logs     logReader // nil without an AWS configuration
	// logsMissing says why logs cannot be read when logs is nil.
	logsMissing string
	logBucket   string
	publish     publisher // nil unless actions are allowed
	// approve sends approvals to the approvals queue; nil unless actions are allowed and the
	// queue is known (approvalsMissing then says why).
	approve          publisher
	approvalsMissing string
	// approver is the name approvals carry in `by`: the AWS caller identity when STS tells it,
	// else the operator, as `stackseam approve` chooses it.
	approver string
	// allowActions lets POSTs that change something through.
	allowActions bool
	operator     string
	// token is required on every request when set (bound beyond loopback).
	token string
	// csrf must come back in the X-Stackseam-Csrf header of every POST.
	csrf string
	now  func() time.Time
	// poll is how often the live stream looks for changes.
	poll time.Duration

	svgMu    sync.Mutex
	svgCache map[string][]byte

	// markMu guards the change mark shared by every live stream, so the database is asked at
	// most once per poll however many pages are open.
	markMu   sync.Mutex
	mark     string
	markErr  error
	markTime time.Time
}

// changeMark returns the data's change mark, read at most once per poll interval.
func (s *consoleServer) changeMark(ctx context.Context) (string, error) {
	s.markMu.Lock()
	defer s.markMu.Unlock()
	if t := time.Now(); t.Sub(s.markTime) >= s.poll || s.markTime.IsZero() {
		s.mark, s.markErr = s.data.ChangeMark(ctx)
		s.markTime = t
		if s.markErr != nil && ctx.Err() != nil {
			s.markTime = time.Time{} // this page went away; its error is nobody else's
		}
	}
	return s.mark, s.markErr
}

const (
	tokenCookie = "stackseam_console"
	csrfHeader  = "X-Stackseam-Csrf"
	// stuckWindow is how far back rejections and force-settled runs mark a stack as stuck, as
	// `stackseam stacks --stuck` does by default.
	stuckWindow = 24 * time.Hour
	// maxListed bounds the stacks page's rows: filters narrow a larger set.
	maxListed = 2000
)

// contentSecurityPolicy allows the console's own files only: no inline script or style, no
// other origin, no framing. Values from stacks can only ever become text.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *consoleServer) handler() http.Handler {
	mux := http.NewServeMux()
	web, _ := fs.Sub(consoleAssets, "console_web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(web)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, web, "index.html")
	})
	mux.HandleFunc("GET /api/session", s.session)
	mux.HandleFunc("GET /api/stacks", api(s.stacks))
	mux.HandleFunc("GET /api/stack", api(s.story))
	mux.HandleFunc("GET /api/log", api(s.log))
	mux.HandleFunc("GET /api/live", s.live)
	mux.HandleFunc("GET /api/machines", api(s.machineList))
	mux.HandleFunc("GET /api/machine", api(s.machineFile))
	mux.HandleFunc("GET /api/machine/graph.svg", api(s.machineGraph))
	mux.HandleFunc("POST /api/validate", api(s.validate))
	mux.HandleFunc("POST /api/send", s.action(api(s.send)))
	mux.HandleFunc("POST /api/retry", s.action(api(s.retry)))
	mux.HandleFunc("POST /api/approve", s.action(api(s.approveAction)))
	mux.HandleFunc("POST /api/machine/save", s.action(api(s.saveMachine)))
	return s.guard(mux)
}

// guard applies what every request needs: security headers, the token (when bound beyond
// loopback) or a loopback Host (so a DNS-rebinding page cannot reach a local console), and the
// CSRF checks on anything but GET.
func (s *consoleServer) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer") // the token may be in the URL
		h.Set("Cache-Control", "no-store")
		if s.token == "" {
			if !loopbackHost(r.Host) {
				http.Error(w, "this console answers to localhost only (bound to loopback)", http.StatusMisdirectedRequest)
				return
			}
		} else if !s.authorized(w, r) {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := s.checkCSRF(r); err != nil {
				httpError(w, http.StatusForbidden, err.Error())
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, 2*maxMachineFile)
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks the token: a cookie set on a first visit, or ?token= on that visit (then
// set as a cookie and removed from the address bar), or an Authorization: Bearer header.
func (s *consoleServer) authorized(w http.ResponseWriter, r *http.Request) bool {
	if c, err := r.Cookie(tokenCookie); err == nil && s.tokenOK(c.Value) {
		return true
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenOK(b) {
		return true
	}
	q := r.URL.Query()
	if t := q.Get("token"); t != "" && s.tokenOK(t) && r.Method == http.MethodGet {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false
	}
	httpError(w, http.StatusUnauthorized, "this console needs its token: open the URL `stackseam console` printed when it started")
	return false
}

func (s *consoleServer) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// checkCSRF refuses a request another site could have made: the CSRF header must carry this
// server's value (which only a page of this origin can read), and Origin and Sec-Fetch-Site, when
// the browser sends them, must name this origin.
func (s *consoleServer) checkCSRF(r *http.Request) error {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.csrf)) != 1 {
		return errors.New("missing or wrong " + csrfHeader + " header: reload the page")
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return fmt.Errorf("cross-origin request from %s refused", o)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("request from a %s page refused", site)
	}
	return nil
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// action wraps a handler that changes something: refused unless actions are allowed.
func (s *consoleServer) action(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.allowActions {
			httpError(w, http.StatusForbidden, "the console is read-only: start it with --allow-actions to send events, retry tasks and save machines")
			return
		}
		h(w, r)
	}
}

// apiError is every error's JSON body.
type apiError struct {
	Error string `json:"error"`
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeAPI(w, code, apiError{Error: msg})
}

// statusError is a failure the console answers with a status of its own (a request it refuses,
// a file that is not there). Any other error a handler returns is its source's (the database,
// the query function, S3, SQS): 502 Bad Gateway.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// withStatus is the failure answered with code and msg.
func withStatus(code int, msg string) error { return &statusError{code: code, msg: msg} }

// api adapts a handler that returns what went wrong: it answers the error (see statusError).
func api(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			code := http.StatusBadGateway
			var se *statusError
			if errors.As(err, &se) {
				code = se.code
			}
			httpError(w, code, err.Error())
		}
	}
}

// readFailure is a failed read's answer: a request the read API refused (a filter too long, say)
// is the page's mistake, anything else the database's or the query function's.
func readFailure(err error) error {
	var refused *query.Error
	if errors.As(err, &refused) {
		return withStatus(http.StatusBadRequest, err.Error())
	}
	return err
}

func writeAPI(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	// HTML escaping on: a value that ends up in a page by mistake is still inert.
	_ = json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("error reading the request: %w", err)
	}
	return nil
}

// sessionJSON tells the page what this console allows.
type sessionJSON struct {
	AllowActions bool   `json:"allowActions"`
	Operator     string `json:"operator"`
	CSRF         string `json:"csrf"`
	Machines     string `json:"machines"`
	// Approvals says whether approvals can be sent (actions allowed and an approvals queue
	// known); ApprovalsMissing says why not, Approver is the name they carry.
	Approvals        bool   `json:"approvals"`
	ApprovalsMissing string `json:"approvalsMissing,omitempty"`
	Approver         string `json:"approver,omitempty"`
}

func (s *consoleServer) session(w http.ResponseWriter, _ *http.Request) {
	writeAPI(w, http.StatusOK, sessionJSON{AllowActions: s.allowActions, Operator: s.operator, CSRF: s.csrf, Machines: s.machines.String(),
		Approvals: s.allowActions && s.approve != nil, ApprovalsMissing: s.approvalsMissing, Approver: s.approver})
}

// stackRowJSON is one line of the stacks page.
type stackRowJSON struct {
	// Summary is the row as the read API answers it, without Overdue: Stuck says it in words.
	query.Summary
	// Stuck says why the stack needs a look; empty when it does not.
	Stuck []string `json:"stuck,omitempty"`
}

type stacksJSON struct {
	Now      time.Time           `json:"now"`
	Stacks   []stackRowJSON      `json:"stacks"`
	Total    int                 `json:"total"`
	Machines map[string][]string `json:"machines"` // machine → its states with stacks, for the filters
}

func (s *consoleServer) stacks(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q := r.URL.Query()
	now := s.now()
	list, total, err := s.data.StackSummaries(ctx, stackFilter{Machine: q.Get("machine"), State: q.Get("state"),
		IDContains: q.Get("q"), Limit: maxListed}, now)
	if err != nil {
		return readFailure(err)
	}
	troubles, err := s.data.Troubles(ctx, now.Add(-stuckWindow), "")
	if err != nil {
		return err
	}
	counts, err := s.data.StateCounts(ctx)
	if err != nil {
		return err
	}
	out := stacksJSON{Now: now.UTC(), Stacks: []stackRowJSON{}, Total: total, Machines: map[string][]string{}}
	for m, states := range counts {
		for st := range states {
			out.Machines[m] = append(out.Machines[m], st)
		}
		sort.Strings(out.Machines[m])
	}
	for _, st := range list {
		row := stackRowJSON{Summary: st}
		for _, task := range st.Overdue {
			row.Stuck = append(row.Stuck, fmt.Sprintf("task %s is overdue and not settled yet", task))
		}
		row.Overdue = nil
		row.Stuck = append(row.Stuck, troubles[st.ID]...)
		out.Stacks = append(out.Stacks, row)
	}
	writeAPI(w, http.StatusOK, out)
	return nil
}

// storyEntryJSON is one line of a stack's timeline.
type storyEntryJSON struct {
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	Text       string    `json:"text"`
	Task       string    `json:"task,omitempty"`
	TaskRunID  string    `json:"taskRunId,omitempty"`
	DurationMS *int64    `json:"durationMs,omitempty"`
	// Summary is the plan or drift summary a transition raised by a task's outcome carries
	// (README.md, "Plan, approve, apply": the same summary reaches the notifications).
	Summary *planSummaryJSON `json:"summary,omitempty"`
}

// planSummaryJSON is a plan or drift summary as `stackseam plan --output json` gives it, with
// the count of addresses that did not fit and whether the run's log can be shown.
type planSummaryJSON struct {
	planSummary
	AddressesOmitted any `json:"addressesOmitted,omitempty"`
}

// planSummariesJSON reads the summaries in md (a stack's metadata or a transition's summary)
// with the reader of `stackseam plan`.
func planSummariesJSON(md message.Metadata) []planSummaryJSON {
	out := []planSummaryJSON{}
	for _, p := range planSummaries(md) {
		out = append(out, planSummaryJSON{planSummary: p, AddressesOmitted: md[p.Task+".addressesOmitted"]})
	}
	return out
}

// storyRunJSON is a task run with where its log is.
type storyRunJSON struct {
	taskRunJSON
	HasLog bool `json:"hasLog"`
}

type storyJSON struct {
	StackID string     `json:"stackId"`
	Now     time.Time  `json:"now"`
	Stack   *stackJSON `json:"stack"`
	// Header is the history's first line (state, or when the stack was removed).
	Header   string           `json:"header"`
	Entries  []storyEntryJSON `json:"entries"`
	States   []stateVisitJSON `json:"states"`
	Runs     []storyRunJSON   `json:"runs"`
	Troubles []string         `json:"troubles"`
	// Accepts lists the events the current state handles that may be sent to the event queue;
	// Approvals the ones the machine lists under approvals (sent to the approvals queue).
	Accepts   []string `json:"accepts"`
	Approvals []string `json:"approvals"`
	// Plans are the plan and drift summaries in the stack's metadata, as `stackseam plan`
	// shows them.
	Plans []planSummaryJSON `json:"plans"`
}

func (s *consoleServer) story(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.URL.Query().Get("id")
	if id == "" {
		return withStatus(http.StatusBadRequest, "name a stack: ?id=")
	}
	hr := &historyReader{api: s.data.Reads(), id: id}
	entries, err := hr.next(ctx)
	if err != nil {
		return err
	}
	stack, err := s.data.GetStack(ctx, id)
	if err != nil {
		return err
	}
	if stack == nil && len(entries) == 0 {
		return withStatus(http.StatusNotFound, fmt.Sprintf("stack %s has no history: no event ever named it", id))
	}
	now := s.now()
	sum := summarize(entries, stack, now)
	out := storyJSON{StackID: id, Now: now.UTC(), Header: printable(historyHeader(id, entries, stack, now)),
		Entries: []storyEntryJSON{}, States: sum.states, Runs: []storyRunJSON{}, Troubles: []string{}, Accepts: []string{},
		Approvals: []string{}, Plans: []planSummaryJSON{}}
	if out.States == nil {
		out.States = []stateVisitJSON{}
	}
	for i := 0; i < len(entries); {
		// An event and the state change it caused are one line, as in `stackseam history`.
		text, e, n := timelineLine(entries, i)
		i += n
		je := storyEntryJSON{At: e.At, Kind: e.Kind, Text: printable(strings.TrimSpace(text)), Task: e.Task, TaskRunID: e.TaskRunID,
			DurationMS: e.DurationMS}
		if raw, ok := e.Detail["summary"].(map[string]any); ok && e.Kind == engine.KindTransition {
			if plans := planSummariesJSON(message.Metadata(raw)); len(plans) > 0 {
				je.Summary = &plans[0]
			}
		}
		out.Entries = append(out.Entries, je)
	}
	for _, run := range sum.runs {
		out.Runs = append(out.Runs, storyRunJSON{taskRunJSON: run, HasLog: run.Status == string(message.TaskCompleted) || run.Status == string(message.TaskFailed)})
	}
	if stack != nil {
		j := newStackJSON(stack, now)
		out.Stack = &j
		out.Accepts, out.Approvals = s.accepts(ctx, stack)
		out.Plans = planSummariesJSON(stack.Metadata)
		for _, t := range stack.Tasks {
			if t.Status == message.TaskPending && t.Deadline != nil && !t.Deadline.After(now) {
				out.Troubles = append(out.Troubles, fmt.Sprintf("task %s is overdue since %s and not settled yet", t.Name, formatTime(*t.Deadline)))
			}
		}
		if troubles, err := s.data.Troubles(ctx, now.Add(-stuckWindow), id); err == nil {
			out.Troubles = append(out.Troubles, troubles[id]...)
		}
	}
	writeAPI(w, http.StatusOK, out)
	return nil
}

// stackMachine returns the machine the state manager applies a stack's next event with: the file
// as it is now when it is valid and still has the stack's state, else the version the stack last
// ran on (README.md, "When a machine file changes").
func (s *consoleServer) stackMachine(ctx context.Context, st *engine.Stack) (*machine.Machine, error) {
	loc, body, err := s.machines.Read(ctx, st.Machine)
	if err == nil {
		if m, perr := machine.Parse(st.Machine, loc, body, kinds.All); perr == nil && m.States[st.State] != nil {
			return m, nil
		}
	}
	if st.MachineHash != "" {
		if name, body, verr := s.data.MachineVersion(ctx, st.MachineHash); verr == nil {
			return machine.Parse(name, "", body, kinds.All)
		}
	}
	if err == nil {
		err = fmt.Errorf("machine %s has no valid version with state %s", st.Machine, st.State)
	}
	return nil, err
}

// accepts lists the events a stack's current state handles: those a publisher may send, and
// apart the approval events (the machine's approvals), which the state manager takes from the
// approvals queue only. None when the machine cannot be read.
func (s *consoleServer) accepts(ctx context.Context, st *engine.Stack) (events, approvals []string) {
	events, approvals = []string{}, []string{}
	m, err := s.stackMachine(ctx, st)
	if err != nil {
		return events, approvals
	}
	state := m.States[st.State]
	if state == nil {
		return events, approvals
	}
	for ev := range state.On {
		switch {
		case ev == machine.EventNext:
		case m.NeedsApproval(ev):
			approvals = append(approvals, ev)
		default:
			events = append(events, ev)
		}
	}
	sort.Strings(events)
	sort.Strings(approvals)
	return events, approvals
}

// log serves a task run's log as plain text. Only the key the satisfier writes for a run of this
// stack is read (logs/MACHINE/STACK/TASK/RUN.log), so the endpoint cannot be pointed elsewhere.
func (s *consoleServer) log(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, runID := r.URL.Query().Get("stack"), r.URL.Query().Get("run")
	rows, err := s.data.History(ctx, id)
	if err != nil {
		return err
	}
	var key, bucket string
	for _, row := range rows {
		if row.TaskRunID != runID || runID == "" {
			continue
		}
		if row.Kind == engine.KindDispatched {
			key = message.TaskLogKey(row.Machine, id, row.Task, runID)
		}
		if u, ok := row.Detail["log"].(string); ok && key != "" {
			if b, k, ok := parseS3URL(u); ok && k == key {
				bucket = b
			}
		}
	}
	// The configured bucket wins: a result names its log, but a forged result should not point
	// the console at another bucket.
	bucket = first(s.logBucket, bucket)
	switch {
	case key == "":
		return withStatus(http.StatusNotFound, fmt.Sprintf("stack %s has no task run %s", id, runID))
	case bucket == "":
		return withStatus(http.StatusNotFound, "the run's result named no log, and no log bucket is set (--bucket or BUCKET)")
	case s.logs == nil:
		return withStatus(http.StatusServiceUnavailable, "cannot read logs: "+s.logsMissing)
	}
	text, cut, err := s.logs.ReadLog(ctx, bucket, key)
	if errors.Is(err, os.ErrNotExist) {
		return withStatus(http.StatusNotFound, err.Error())
	}
	if err != nil {
		return err
	}
	writeAPI(w, http.StatusOK, map[string]any{"location": "s3://" + bucket + "/" + key, "text": text, "cut": cut})
	return nil
}

func parseS3URL(u string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", false
	}
	bucket, key, ok = strings.Cut(rest, "/")
	return bucket, key, ok && bucket != ""
}

// live streams server-sent events: "change" whenever any stack's history grows, so the open
// page reads what it shows again. The data is the change mark only: nothing from a stack.
func (s *consoleServer) live(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "streaming is not supported")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()
	ctx := r.Context()
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	last, idle := "", 0
	for {
		mark, err := s.changeMark(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			fmt.Fprintf(w, "event: trouble\ndata: %s\n\n", jsonString(oneLine(err.Error(), 300)))
		case err == nil && mark != last:
			fmt.Fprintf(w, "event: change\ndata: %s\n\n", jsonString(mark))
			last, idle = mark, 0
		default:
			idle++
			if time.Duration(idle)*s.poll >= 15*time.Second {
				fmt.Fprint(w, ": still here\n\n") // keeps proxies from closing an idle stream
				idle = 0
			}
		}
		flusher.Flush()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// machineSummaryJSON is one machine on the machines page.
type machineSummaryJSON struct {
	Name string `json:"name"`
	// File is false for a machine only stacks name (its file is gone).
	File     bool           `json:"file"`
	Valid    bool           `json:"valid"`
	Problems int            `json:"problems"`
	States   []string       `json:"states"`
	Counts   map[string]int `json:"counts"`
}

func (s *consoleServer) machineList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	names, err := s.machines.List(ctx)
	if err != nil {
		return err
	}
	counts, err := s.data.StateCounts(ctx)
	if err != nil {
		return err
	}
	out := []machineSummaryJSON{}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
		m := machineSummaryJSON{Name: n, File: true, Counts: counts[n], States: []string{}}
		loc, body, err := s.machines.Read(ctx, n)
		if err == nil {
			parsed, perr := machine.Parse(n, loc, body, kinds.All)
			var verr *machine.ValidationError
			switch {
			case perr == nil:
				m.Valid, m.States = true, parsed.StateOrder
			case errors.As(perr, &verr):
				m.Problems = len(verr.Problems)
			default:
				m.Problems = 1
			}
		}
		out = append(out, m)
	}
	for n, c := range counts {
		if !seen[n] {
			out = append(out, machineSummaryJSON{Name: n, Counts: c, States: []string{}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeAPI(w, http.StatusOK, out)
	return nil
}

// validationJSON is the verdict on a machine file, as `stackseam validate --output json` gives it.
type validationJSON struct {
	Name     string        `json:"name"`
	Valid    bool          `json:"valid"`
	Problems []problemJSON `json:"problems"`
	Warnings []problemJSON `json:"warnings"`
}

// judge validates body as the file of machine name, with the validator of `stackseam validate`.
func judge(name, file string, body []byte) (validationJSON, *machine.Machine) {
	v := validationJSON{Name: name, Problems: []problemJSON{}, Warnings: []problemJSON{}}
	if !validMachineName(name) {
		v.Problems = append(v.Problems, problemJSON{File: file, Line: 1, Column: 1, Rule: "file-name",
			Message: fmt.Sprintf("%q cannot name a machine file", name)})
		return v, nil
	}
	m, err := machine.Parse(name, file, body, kinds.All)
	if err != nil {
		var verr *machine.ValidationError
		if errors.As(err, &verr) {
			v.Problems = problemsJSON(verr.Problems)
		} else {
			v.Problems = append(v.Problems, problemJSON{File: file, Line: 1, Column: 1, Rule: "unreadable", Message: err.Error()})
		}
		return v, nil
	}
	v.Valid = true
	v.Warnings = problemsJSON(m.Warnings)
	return v, m
}

type machineFileJSON struct {
	validationJSON
	Location string         `json:"location"`
	Body     string         `json:"body"`
	Counts   map[string]int `json:"counts"`
	States   []string       `json:"states"`
}

func (s *consoleServer) machineFile(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.URL.Query().Get("name")
	if !validMachineName(name) {
		return withStatus(http.StatusBadRequest, "name a machine: ?name=")
	}
	counts, err := s.data.StateCounts(ctx)
	if err != nil {
		return err
	}
	loc, body, err := s.machines.Read(ctx, name)
	if errors.Is(err, os.ErrNotExist) {
		// A new file, or one only stacks remember: start from nothing.
		loc, body = name+".yml", nil
	} else if err != nil {
		return err
	}
	v, m := judge(name, loc, body)
	out := machineFileJSON{validationJSON: v, Location: loc, Body: string(body), Counts: counts[name], States: []string{}}
	if m != nil {
		out.States = m.StateOrder
	}
	writeAPI(w, http.StatusOK, out)
	return nil
}

// machineGraph draws a machine file with the graph of `stackseam graph --format svg`, each state
// with its number of stacks.
func (s *consoleServer) machineGraph(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.URL.Query().Get("name")
	if !validMachineName(name) {
		return withStatus(http.StatusBadRequest, "name a machine: ?name=")
	}
	loc, body, err := s.machines.Read(ctx, name)
	if errors.Is(err, os.ErrNotExist) {
		return withStatus(http.StatusNotFound, err.Error())
	} else if err != nil {
		return err
	}
	m, err := machine.Parse(name, loc, body, kinds.All)
	if err != nil {
		return withStatus(http.StatusUnprocessableEntity, "the file is not a valid machine: "+err.Error())
	}
	counts, err := s.data.StateCounts(ctx)
	if err != nil {
		return err
	}
	g := buildGraph(m)
	for i := range g.nodes {
		n := counts[name][g.nodes[i].state]
		word := "stacks"
		if n == 1 {
			word = "stack"
		}
		g.nodes[i].details = append(g.nodes[i].details, fmt.Sprintf("● %d %s", n, word))
	}
	src := g.dot()
	sum := sha256.Sum256([]byte(src))
	key := hex.EncodeToString(sum[:])
	s.svgMu.Lock()
	svg, ok := s.svgCache[key]
	s.svgMu.Unlock()
	if !ok {
		var buf strings.Builder
		if err := renderSVG(&buf, src); err != nil {
			return withStatus(http.StatusInternalServerError, err.Error())
		}
		svg = []byte(buf.String())
		s.svgMu.Lock()
		if s.svgCache == nil || len(s.svgCache) > 64 {
			s.svgCache = map[string][]byte{}
		}
		s.svgCache[key] = svg
		s.svgMu.Unlock()
	}
	// Shown through <img>, where an SVG runs no script; the policy says so again if opened alone.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write(svg)
	return nil
}

type machineBodyJSON struct {
	Name string `json:"name"`
	Body string `json:"body"`
}

func (s *consoleServer) validate(w http.ResponseWriter, r *http.Request) error {
	var in machineBodyJSON
	if err := readJSON(r, &in); err != nil {
		return withStatus(http.StatusBadRequest, err.Error())
	}
	v, _ := judge(in.Name, in.Name+".yml", []byte(in.Body))
	writeAPI(w, http.StatusOK, v)
	return nil
}

func (s *consoleServer) saveMachine(w http.ResponseWriter, r *http.Request) error {
	var in machineBodyJSON
	if err := readJSON(r, &in); err != nil {
		return withStatus(http.StatusBadRequest, err.Error())
	}
	v, _ := judge(in.Name, in.Name+".yml", []byte(in.Body))
	if !v.Valid {
		writeAPI(w, http.StatusUnprocessableEntity, struct {
			apiError
			validationJSON
		}{apiError{fmt.Sprintf("not saved: the file has %d problem(s)", len(v.Problems))}, v})
		return nil
	}
	if err := s.machines.Write(r.Context(), in.Name, []byte(in.Body)); err != nil {
		return err
	}
	writeAPI(w, http.StatusOK, map[string]any{"saved": in.Name, "where": s.machines.String(), "operator": s.operator})
	return nil
}

// actionJSON is a request to send an event to a stack. Version is the stack's version the person
// saw when confirming: the event is conditional on it (message.Event.IfVersion), so it is ignored
// if the stack moved meanwhile.
type actionJSON struct {
	Stack   string `json:"stack"`
	Event   string `json:"event,omitempty"`
	Pending bool   `json:"pending,omitempty"`
	Version int64  `json:"version"`
	// Metadata is merged into the stack's with the event (send only); "operator" is always the
	// console's.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Comment goes with an approval (approve only).
	Comment string `json:"comment,omitempty"`
}

func (s *consoleServer) send(w http.ResponseWriter, r *http.Request) error {
	in, st, err := s.readAction(r)
	if err != nil {
		return err
	}
	accepted, approvals := s.accepts(r.Context(), st)
	if contains(approvals, in.Event) {
		return withStatus(http.StatusConflict, fmt.Sprintf("%s is an approval: the state manager takes it from the approvals queue only (Approve/Reject)", in.Event))
	}
	if !contains(accepted, in.Event) {
		return withStatus(http.StatusConflict, fmt.Sprintf("state %s of stack %s does not accept %s (it accepts: %s)",
			st.State, st.ID, in.Event, strings.Join(accepted, ", ")))
	}
	return s.publishAction(w, r, in)
}

func (s *consoleServer) retry(w http.ResponseWriter, r *http.Request) error {
	in, st, err := s.readAction(r)
	if err != nil {
		return err
	}
	pending, failed := countTasks(st.Tasks)
	in.Metadata = nil
	in.Event = message.EventRetryFailedTasks
	if in.Pending {
		in.Event = message.EventRetryPendingTasks
	}
	if (in.Pending && pending == 0) || (!in.Pending && failed == 0) {
		return withStatus(http.StatusConflict, fmt.Sprintf("stack %s has no %s tasks to retry", st.ID, map[bool]string{true: "pending", false: "failed"}[in.Pending]))
	}
	return s.publishAction(w, r, in)
}

// readAction reads an action's body and the stack it names, as the page showed it.
func (s *consoleServer) readAction(r *http.Request) (actionJSON, *engine.Stack, error) {
	var in actionJSON
	if err := readJSON(r, &in); err != nil {
		return in, nil, withStatus(http.StatusBadRequest, err.Error())
	}
	st, err := s.actionStack(r.Context(), in)
	return in, st, err
}

// approveAction sends an approval event (APPROVE, REJECT: what the machine lists under
// approvals) the stack's state handles to the approvals queue, with the body `stackseam approve
// --if-version` sends: who (the console's approver), the comment, and the stack version the page
// showed, so an approval of a plan that was replaced meanwhile is ignored.
func (s *consoleServer) approveAction(w http.ResponseWriter, r *http.Request) error {
	if s.approve == nil {
		return withStatus(http.StatusServiceUnavailable, "cannot send approvals: "+first(s.approvalsMissing, "no approvals queue"))
	}
	in, st, err := s.readAction(r)
	if err != nil {
		return err
	}
	if _, approvals := s.accepts(r.Context(), st); !contains(approvals, in.Event) {
		return withStatus(http.StatusConflict, fmt.Sprintf("state %s of stack %s handles no approval %s (approvals it handles: %s)",
			st.State, st.ID, in.Event, first(strings.Join(approvals, ", "), "none")))
	}
	version := in.Version
	ev := message.Event{StackID: in.Stack, Event: in.Event, By: s.approver, Comment: in.Comment, IfVersion: &version}
	return s.sendChecked(w, r, ev, s.approve, s.approver)
}

func (s *consoleServer) actionStack(ctx context.Context, in actionJSON) (*engine.Stack, error) {
	st, err := s.data.GetStack(ctx, in.Stack)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, withStatus(http.StatusNotFound, fmt.Sprintf("stack %s does not exist", in.Stack))
	}
	if st.Version != in.Version {
		return nil, withStatus(http.StatusConflict, fmt.Sprintf("stack %s changed since the page showed it (version %d, now %d): look again",
			st.ID, in.Version, st.Version))
	}
	return st, nil
}

// publishAction sends the event with the operator's name in its metadata: the history records
// an event's metadata, and the stack's metadata keeps the latest operator.
func (s *consoleServer) publishAction(w http.ResponseWriter, r *http.Request, in actionJSON) error {
	version := in.Version
	ev := message.Event{StackID: in.Stack, Event: in.Event, IfVersion: &version, Metadata: message.Metadata{}}
	for k, v := range in.Metadata {
		ev.Metadata[k] = v
	}
	ev.Metadata["operator"] = s.operator
	return s.sendChecked(w, r, ev, s.publish, s.operator)
}

// sendChecked refuses ev when the state manager would (a comment or metadata too long, say),
// else sends it with send and answers who sent it.
func (s *consoleServer) sendChecked(w http.ResponseWriter, r *http.Request, ev message.Event,
	send func(context.Context, message.Event) error, who string) error {
	body, err := json.Marshal(ev)
	if err == nil {
		_, err = message.ParseEvent(body)
	}
	if err != nil {
		return withStatus(http.StatusBadRequest, err.Error())
	}
	if err := send(r.Context(), ev); err != nil {
		return err
	}
	writeAPI(w, http.StatusOK, map[string]any{"sent": ev.Event, "stack": ev.StackID, "operator": who})
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
