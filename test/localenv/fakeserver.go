package localenv

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
)

// fakeServer is the HTTP server behind each protocol-level fake (Lambda, CloudFormation, Secrets
// Manager, CodeBuild): it listens on a free port of 127.0.0.1, and a child process's AWS SDK
// reaches it through the service's AWS_ENDPOINT_URL_* variable (see Env).
type fakeServer struct {
	// URL is the server's base URL (http://127.0.0.1:PORT).
	URL string

	srv    *httptest.Server
	envVar string
}

// start serves h; envVar is the service's endpoint variable, such as AWS_ENDPOINT_URL_LAMBDA.
func (s *fakeServer) start(envVar string, h http.HandlerFunc) {
	s.srv = httptest.NewServer(h)
	s.URL = s.srv.URL
	s.envVar = envVar
}

// Close stops the server, waiting for requests in flight.
func (s *fakeServer) Close() { s.srv.Close() }

// Env returns the environment variable that points a child process's AWS SDK at the fake.
func (s *fakeServer) Env() string { return s.envVar + "=" + s.URL }

// awsJSON answers an AWS JSON 1.1 request (Secrets Manager, CodeBuild) with v.
func awsJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}

// awsJSONError answers the way AWS JSON 1.1 services report a failed request: the code in
// X-Amzn-ErrorType and in the body's __type.
func awsJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
}
