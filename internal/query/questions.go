package query

import (
	"context"
	"fmt"
	"strings"
)

// question is one question of the API on the wire: where a Request holds it, where a Response
// holds its answer, and the API method that answers it. Every place that handles questions one
// by one (ParseRequest, Answer, Client) goes through questions, so a question is added in one
// place besides API, Request and Response.
type question interface {
	// name is the question's field in Request and Response.
	name() string
	asked(req *Request) bool
	answer(ctx context.Context, api API, req *Request) (*Response, error)
}

// wireQuestion is the question of Req, answered by Resp.
type wireQuestion[Req, Resp any] struct {
	field string
	req   func(*Request) **Req
	resp  func(*Response) **Resp
	ask   func(API, context.Context, Req) (*Resp, error)
}

func (q wireQuestion[Req, Resp]) name() string { return q.field }

func (q wireQuestion[Req, Resp]) asked(req *Request) bool { return *q.req(req) != nil }

func (q wireQuestion[Req, Resp]) answer(ctx context.Context, api API, req *Request) (*Response, error) {
	a, err := q.ask(api, ctx, **q.req(req))
	if err != nil {
		return nil, err
	}
	var resp Response
	*q.resp(&resp) = a
	return &resp, nil
}

// request returns the Request asking r.
func (q wireQuestion[Req, Resp]) request(r Req) Request {
	var req Request
	*q.req(&req) = &r
	return req
}

// The questions, in the order ParseRequest names them.
var (
	askStacks         = wireQuestion[StacksRequest, StacksPage]{"stacks", func(r *Request) **StacksRequest { return &r.Stacks }, func(r *Response) **StacksPage { return &r.Stacks }, API.Stacks}
	askStuck          = wireQuestion[StuckRequest, StuckPage]{"stuck", func(r *Request) **StuckRequest { return &r.Stuck }, func(r *Response) **StuckPage { return &r.Stuck }, API.Stuck}
	askStack          = wireQuestion[StackRequest, StackResult]{"stack", func(r *Request) **StackRequest { return &r.Stack }, func(r *Response) **StackResult { return &r.Stack }, API.Stack}
	askHistory        = wireQuestion[HistoryRequest, HistoryPage]{"history", func(r *Request) **HistoryRequest { return &r.History }, func(r *Response) **HistoryPage { return &r.History }, API.History}
	askMachines       = wireQuestion[MachinesRequest, MachinesPage]{"machines", func(r *Request) **MachinesRequest { return &r.Machines }, func(r *Response) **MachinesPage { return &r.Machines }, API.Machines}
	askSummaries      = wireQuestion[SummariesRequest, SummariesPage]{"summaries", func(r *Request) **SummariesRequest { return &r.Summaries }, func(r *Response) **SummariesPage { return &r.Summaries }, API.Summaries}
	askTroubles       = wireQuestion[TroublesRequest, TroublesPage]{"troubles", func(r *Request) **TroublesRequest { return &r.Troubles }, func(r *Response) **TroublesPage { return &r.Troubles }, API.Troubles}
	askStateCounts    = wireQuestion[StateCountsRequest, StateCountsResult]{"stateCounts", func(r *Request) **StateCountsRequest { return &r.StateCounts }, func(r *Response) **StateCountsResult { return &r.StateCounts }, API.StateCounts}
	askMachineVersion = wireQuestion[MachineVersionRequest, MachineVersionResult]{"machineVersion", func(r *Request) **MachineVersionRequest { return &r.MachineVersion }, func(r *Response) **MachineVersionResult { return &r.MachineVersion }, API.MachineVersion}
	askChangeMark     = wireQuestion[ChangeMarkRequest, ChangeMarkResult]{"changeMark", func(r *Request) **ChangeMarkRequest { return &r.ChangeMark }, func(r *Response) **ChangeMarkResult { return &r.ChangeMark }, API.ChangeMark}

	questions = []question{askStacks, askStuck, askStack, askHistory, askMachines,
		askSummaries, askTroubles, askStateCounts, askMachineVersion, askChangeMark}
)

// ParseRequest reads a request strictly: at most MaxRequestBytes, one JSON object, no unknown
// fields, exactly one question.
func ParseRequest(payload []byte) (Request, *Error) {
	var req Request
	if len(payload) > MaxRequestBytes {
		return req, invalid("the request is %d bytes; at most %d", len(payload), MaxRequestBytes)
	}
	if err := strictDecode(payload, &req); err != nil {
		return req, invalid("the request is not a query: %v", err)
	}
	n := 0
	names := make([]string, len(questions))
	for i, q := range questions {
		names[i] = q.name()
		if q.asked(&req) {
			n++
		}
	}
	if n != 1 {
		return req, invalid("ask exactly one of %s (got %d)", strings.Join(names, ", "), n)
	}
	return req, nil
}

// Answer asks api the question req holds and wraps the answer in a Response.
func Answer(ctx context.Context, api API, req Request) (*Response, error) {
	for _, q := range questions {
		if q.asked(&req) {
			return q.answer(ctx, api, &req)
		}
	}
	return nil, invalid("no question asked")
}

// ask asks c's function q with r and returns its answer, or its *Error.
func ask[Req, Resp any](ctx context.Context, c *Client, q wireQuestion[Req, Resp], r Req) (*Resp, error) {
	resp, err := c.invoke(ctx, q.request(r))
	if err != nil {
		return nil, err
	}
	a := *q.resp(resp)
	if a == nil {
		return nil, fmt.Errorf("the query function's answer holds no result for the question asked")
	}
	return a, nil
}
