package localenv

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// The Lambda API's event-source-mapping operations, served by LambdaFake for the mappings added
// with AddEventSourceMapping, so that a function can find and pause or resume its own mapping
// with the AWS SDK (ListEventSourceMappings, GetEventSourceMapping, UpdateEventSourceMapping with
// Enabled) as it would in AWS.

// esmPath is the operations' path; List is GET on it with or without a trailing slash.
const esmPath = "/2015-03-31/event-source-mappings"

// AddEventSourceMapping makes m visible to the Lambda API the fake serves.
func (f *LambdaFake) AddEventSourceMapping(m *EventSourceMapping) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mappings = append(f.mappings, m)
}

// esmConfiguration is the API's EventSourceMappingConfiguration, the fields that apply to SQS.
type esmConfiguration struct {
	UUID                           string   `json:"UUID"`
	EventSourceArn                 string   `json:"EventSourceArn"`
	FunctionArn                    string   `json:"FunctionArn"`
	BatchSize                      int      `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int      `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string `json:"FunctionResponseTypes,omitempty"`
	ScalingConfig                  *struct {
		MaximumConcurrency int `json:"MaximumConcurrency"`
	} `json:"ScalingConfig,omitempty"`
	State                 string  `json:"State"`
	StateTransitionReason string  `json:"StateTransitionReason"`
	LastModified          float64 `json:"LastModified"`
}

func functionArn(name string) string {
	return "arn:aws:lambda:" + Region + ":000000000000:function:" + name
}

// functionName reduces a function ARN (with or without qualifier) to the name.
func functionName(s string) string {
	if parts := strings.Split(s, ":"); len(parts) >= 7 && parts[0] == "arn" && parts[5] == "function" {
		return parts[6]
	}
	return s
}

func (m *EventSourceMapping) configuration() esmConfiguration {
	c := esmConfiguration{
		UUID: m.UUID, EventSourceArn: m.EventSourceARN, FunctionArn: functionArn(m.FunctionName),
		BatchSize: m.BatchSize, MaximumBatchingWindowInSeconds: int(m.MaximumBatchingWindow.Seconds()),
		State: "Disabled", StateTransitionReason: "USER_INITIATED", LastModified: float64(m.lastModified.Load()),
	}
	if m.Enabled() {
		c.State = "Enabled"
	}
	if m.ReportBatchItemFailures {
		c.FunctionResponseTypes = []string{"ReportBatchItemFailures"}
	}
	if m.MaximumConcurrency > 0 {
		c.ScalingConfig = &struct {
			MaximumConcurrency int `json:"MaximumConcurrency"`
		}{m.MaximumConcurrency}
	}
	return c
}

// serveMappings answers the event-source-mapping operations: GET .../ (List, filtered by the
// FunctionName and EventSourceArn query parameters), GET .../{UUID} and PUT .../{UUID} (Update;
// Enabled is the only field it changes).
func (f *LambdaFake) serveMappings(w http.ResponseWriter, r *http.Request, path string) {
	id, _ := url.PathUnescape(strings.TrimPrefix(strings.TrimPrefix(path, esmPath), "/"))
	f.mu.Lock()
	mappings := append([]*EventSourceMapping(nil), f.mappings...)
	f.mu.Unlock()
	switch {
	case id == "" && r.Method == http.MethodGet:
		fn, source := r.URL.Query().Get("FunctionName"), r.URL.Query().Get("EventSourceArn")
		out := struct {
			EventSourceMappings []esmConfiguration `json:"EventSourceMappings"`
		}{EventSourceMappings: []esmConfiguration{}}
		for _, m := range mappings {
			if (fn == "" || functionName(fn) == m.FunctionName) && (source == "" || source == m.EventSourceARN) {
				out.EventSourceMappings = append(out.EventSourceMappings, m.configuration())
			}
		}
		writeJSON(w, http.StatusOK, out)
		return
	case id != "" && (r.Method == http.MethodGet || r.Method == http.MethodPut):
		var m *EventSourceMapping
		for _, c := range mappings {
			if c.UUID == id {
				m = c
			}
		}
		if m == nil {
			lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "The resource you requested does not exist. (Service: Lambda, Status Code: 404)")
			return
		}
		if r.Method == http.MethodPut {
			var req struct{ Enabled *bool }
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", err.Error())
				return
			}
			if req.Enabled != nil {
				m.SetEnabled(*req.Enabled)
			}
			writeJSON(w, http.StatusAccepted, m.configuration())
			return
		}
		writeJSON(w, http.StatusOK, m.configuration())
		return
	}
	lambdaError(w, http.StatusNotFound, "UnknownOperationException", "the fake does not serve "+r.Method+" "+path)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
