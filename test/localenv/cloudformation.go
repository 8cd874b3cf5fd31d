package localenv

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// CloudFormationFake is an HTTP server speaking the CloudFormation query protocol (form-encoded
// POST, XML answers) for DescribeStacks, standing in for CloudFormation, which the emulator
// lacks: the CLI's --stack-name reads a deployment's outputs through it. The AWS SDK reaches it
// through AWS_ENDPOINT_URL_CLOUDFORMATION=URL (see Env) or a client's BaseEndpoint. Close stops
// it.
type CloudFormationFake struct {
	fakeServer // URL, Close and Env

	mu     sync.Mutex
	stacks map[string]FakeStack
	calls  []string
}

// FakeStack is one stack the fake describes.
type FakeStack struct {
	// Status is the StackStatus. Defaults to CREATE_COMPLETE.
	Status string
	// Outputs are the stack's outputs, by key.
	Outputs map[string]string
}

// NewCloudFormationFake starts a fake CloudFormation with no stacks, listening on a free port of
// 127.0.0.1.
func NewCloudFormationFake() *CloudFormationFake {
	f := &CloudFormationFake{stacks: map[string]FakeStack{}}
	f.start("AWS_ENDPOINT_URL_CLOUDFORMATION", f.serve)
	return f
}

// Put defines (or replaces) the stack name.
func (f *CloudFormationFake) Put(name string, s FakeStack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Status == "" {
		s.Status = "CREATE_COMPLETE"
	}
	f.stacks[name] = s
}

// Calls returns the stack names DescribeStacks was asked for, in order.
func (f *CloudFormationFake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

const cfnNamespace = "http://cloudformation.amazonaws.com/doc/2010-05-15/"

type cfnOutput struct {
	OutputKey   string `xml:"OutputKey"`
	OutputValue string `xml:"OutputValue"`
}

type cfnStack struct {
	StackName    string      `xml:"StackName"`
	StackID      string      `xml:"StackId"`
	StackStatus  string      `xml:"StackStatus"`
	CreationTime string      `xml:"CreationTime"`
	Outputs      []cfnOutput `xml:"Outputs>member"`
}

type describeStacksResponse struct {
	XMLName   xml.Name   `xml:"DescribeStacksResponse"`
	Namespace string     `xml:"xmlns,attr"`
	Stacks    []cfnStack `xml:"DescribeStacksResult>Stacks>member"`
	RequestID string     `xml:"ResponseMetadata>RequestId"`
}

func (f *CloudFormationFake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		cfnError(w, http.StatusBadRequest, "InvalidAction", "the query protocol is a form-encoded POST")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		cfnError(w, http.StatusForbidden, "MissingAuthenticationToken", "the request is not signed")
		return
	}
	if err := r.ParseForm(); err != nil {
		cfnError(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	if a, v := r.PostForm.Get("Action"), r.PostForm.Get("Version"); a != "DescribeStacks" || v != "2010-05-15" {
		cfnError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("the fake serves only DescribeStacks of 2010-05-15, not %s of %s", a, v))
		return
	}
	name := r.PostForm.Get("StackName")
	f.mu.Lock()
	f.calls = append(f.calls, name)
	s, ok := f.stacks[name]
	f.mu.Unlock()
	if name == "" || !ok {
		// What CloudFormation answers for a stack that does not exist (or that the caller may
		// not describe).
		cfnError(w, http.StatusBadRequest, "ValidationError", "Stack with id "+name+" does not exist")
		return
	}
	out := describeStacksResponse{Namespace: cfnNamespace, RequestID: "fake-request", Stacks: []cfnStack{{
		StackName: name, StackID: "arn:aws:cloudformation:" + Region + ":000000000000:stack/" + name + "/fake",
		StackStatus: s.Status, CreationTime: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339),
	}}}
	keys := make([]string, 0, len(s.Outputs))
	for k := range s.Outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Stacks[0].Outputs = append(out.Stacks[0].Outputs, cfnOutput{OutputKey: k, OutputValue: s.Outputs[k]})
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(out)
}

type cfnErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Namespace string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

// cfnError answers the way the query protocol reports a failed request.
func cfnError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(cfnErrorResponse{Namespace: cfnNamespace, Type: "Sender", Code: code, Message: message, RequestID: "fake-request"})
}
