package localenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// LambdaFake is an HTTP server speaking the Lambda Invoke API (POST
// /2015-03-31/functions/{name}/invocations) and the event-source-mapping
// operations (see AddEventSourceMapping), standing in for AWS Lambda,
// which the emulator lacks. The AWS SDK reaches it through
// AWS_ENDPOINT_URL_LAMBDA=URL (see Env) or a client's BaseEndpoint. Close
// stops it.
type LambdaFake struct {
	fakeServer // URL, Close and Env

	mu        sync.Mutex
	functions map[string]LambdaFunction
	calls     []LambdaInvocation
	mappings  []*EventSourceMapping // served by the event-source-mapping operations (esmapi.go)
}

// LambdaFunction answers one invocation of a fake function. ctx ends when
// the caller gives up on the request.
type LambdaFunction func(ctx context.Context, payload []byte) LambdaResponse

// LambdaResponse is a fake function's answer.
type LambdaResponse struct {
	// Payload is the response body: what the function returned, or for a
	// function error the error object.
	Payload []byte
	// FunctionError is the X-Amz-Function-Error header ("Unhandled" or
	// "Handled"); "" means the function succeeded.
	FunctionError string
}

// LambdaInvocation is one request the fake received.
type LambdaInvocation struct {
	Function       string // the function name from the path (an ARN is reduced to its name)
	InvocationType string // X-Amz-Invocation-Type; "" means RequestResponse
	Payload        []byte
}

// NewLambdaFake starts a fake Lambda with no functions, listening on a
// free port of 127.0.0.1.
func NewLambdaFake() *LambdaFake {
	f := &LambdaFake{functions: map[string]LambdaFunction{}}
	f.start("AWS_ENDPOINT_URL_LAMBDA", f.serve)
	return f
}

// Function defines (or replaces) the fake function name.
func (f *LambdaFake) Function(name string, fn LambdaFunction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.functions[name] = fn
}

// Returns defines a function that always returns payload (JSON).
func (f *LambdaFake) Returns(name, payload string) {
	f.Function(name, func(context.Context, []byte) LambdaResponse {
		return LambdaResponse{Payload: []byte(payload)}
	})
}

// Fails defines a function that always fails with HandlerError(errorType, message).
func (f *LambdaFake) Fails(name, errorType, message string) {
	resp := HandlerError(errorType, message)
	f.Function(name, func(context.Context, []byte) LambdaResponse { return resp })
}

// HandlerError is a fake function's answer when its handler failed, as a Lambda runtime reports
// an error the handler returned or threw: X-Amz-Function-Error: Unhandled and
// {"errorType", "errorMessage"}.
func HandlerError(errorType, message string) LambdaResponse {
	body, _ := json.Marshal(map[string]any{"errorType": errorType, "errorMessage": message, "stackTrace": []string{}})
	return LambdaResponse{Payload: body, FunctionError: "Unhandled"}
}

// Invocations returns the requests made to the function name so far, in
// order.
func (f *LambdaFake) Invocations(name string) []LambdaInvocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []LambdaInvocation
	for _, c := range f.calls {
		if c.Function == name {
			out = append(out, c)
		}
	}
	return out
}

const invokePathPrefix, invokePathSuffix = "/2015-03-31/functions/", "/invocations"

func (f *LambdaFake) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if (path == esmPath || strings.HasPrefix(path, esmPath+"/")) && strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		f.serveMappings(w, r, path)
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(path, invokePathPrefix) || !strings.HasSuffix(path, invokePathSuffix) {
		lambdaError(w, http.StatusNotFound, "UnknownOperationException", fmt.Sprintf("the fake serves only Invoke, not %s %s", r.Method, path))
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		lambdaError(w, http.StatusForbidden, "MissingAuthenticationTokenException", "the request is not signed")
		return
	}
	name, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(path, invokePathPrefix), invokePathSuffix))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", err.Error())
		return
	}
	// arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] names the function too.
	if parts := strings.Split(name, ":"); len(parts) >= 7 && parts[0] == "arn" && parts[5] == "function" {
		name = parts[6]
	}
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", err.Error())
		return
	}
	f.mu.Lock()
	fn := f.functions[name]
	f.calls = append(f.calls, LambdaInvocation{Function: name, InvocationType: r.Header.Get("X-Amz-Invocation-Type"), Payload: payload})
	f.mu.Unlock()
	if fn == nil {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException",
			fmt.Sprintf("Function not found: arn:aws:lambda:%s:000000000000:function:%s", Region, name))
		return
	}
	resp := fn(r.Context(), payload)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	if resp.FunctionError != "" {
		w.Header().Set("X-Amz-Function-Error", resp.FunctionError)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.Payload)
}

// lambdaError answers the way the Lambda service reports a failed request:
// the error code in X-Amzn-ErrorType and a JSON body with the message.
func lambdaError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	body, _ := json.Marshal(map[string]string{"Type": "User", "message": message})
	_, _ = w.Write(body)
}
