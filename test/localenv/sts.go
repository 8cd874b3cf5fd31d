package localenv

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// STSFake is an HTTP server speaking STS's query protocol (a form-encoded POST, an XML answer)
// for AssumeRole, standing in for AWS STS, which the emulator lacks (it answers
// GetCallerIdentity only). It hands out fixed credentials (AccessKeyID, SecretAccessKey,
// SessionToken) and records every request's form. The AWS SDK reaches it through
// AWS_ENDPOINT_URL_STS=URL (see Env) or a client's BaseEndpoint. Close stops it.
type STSFake struct {
	// URL is the server's base URL (http://127.0.0.1:PORT).
	URL string
	// AccessKeyID, SecretAccessKey and SessionToken are the credentials every AssumeRole returns.
	AccessKeyID, SecretAccessKey, SessionToken string
	// Chained, when set, refuses sessions longer than an hour as STS does for a role assumed
	// with a role's own credentials (role chaining).
	Chained bool

	srv      *httptest.Server
	mu       sync.Mutex
	requests []map[string]string
}

// NewSTSFake starts a fake STS listening on a free port of 127.0.0.1.
func NewSTSFake() *STSFake {
	f := &STSFake{AccessKeyID: "ASIASTACKSEAMFAKEKEY1", SecretAccessKey: "assumed-secret-key-stackseam-0123456789",
		SessionToken: "assumed-session-token-stackseam-9876543210"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server, waiting for requests in flight.
func (f *STSFake) Close() { f.srv.Close() }

// SetAccessKeyID changes the access key id later AssumeRole answers carry, so that a test can
// tell one session's credentials from the next.
func (f *STSFake) SetAccessKeyID(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.AccessKeyID = id
}

// Env returns the environment variable that points a child process's AWS SDK at the fake.
func (f *STSFake) Env() string { return "AWS_ENDPOINT_URL_STS=" + f.URL }

// Requests returns the forms of the AssumeRole requests received so far (RoleArn,
// RoleSessionName, Policy, DurationSeconds, …), in order.
func (f *STSFake) Requests() []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]string(nil), f.requests...)
}

func (f *STSFake) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("Action") != "AssumeRole" {
		stsError(w, http.StatusBadRequest, "InvalidAction", "the fake answers AssumeRole only")
		return
	}
	got := map[string]string{}
	for k := range r.PostForm {
		got[k] = r.PostForm.Get(k)
	}
	f.mu.Lock()
	f.requests = append(f.requests, got)
	keyID := f.AccessKeyID
	f.mu.Unlock()
	secs, err := strconv.Atoi(got["DurationSeconds"])
	switch {
	case got["RoleArn"] == "" || got["RoleSessionName"] == "":
		stsError(w, http.StatusBadRequest, "ValidationError", "RoleArn and RoleSessionName are required")
		return
	case err == nil && (secs < 900 || secs > 43200):
		stsError(w, http.StatusBadRequest, "ValidationError", "DurationSeconds must be between 900 and 43200")
		return
	case f.Chained && secs > 3600:
		stsError(w, http.StatusBadRequest, "ValidationError",
			"The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
		return
	}
	if secs == 0 {
		secs = 3600
	}
	w.Header().Set("Content-Type", "text/xml")
	name := xmlText(got["RoleSessionName"])
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>`+
		`<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>`+
		`<Expiration>%s</Expiration></Credentials>`+
		`<AssumedRoleUser><Arn>arn:aws:sts::000000000000:assumed-role/fake/%s</Arn><AssumedRoleId>AROAFAKE:%s</AssumedRoleId></AssumedRoleUser>`+
		`</AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		xmlText(keyID), xmlText(f.SecretAccessKey), xmlText(f.SessionToken),
		time.Now().Add(time.Duration(secs)*time.Second).UTC().Format(time.RFC3339), name, name)
}

// xmlText escapes s for an XML text node.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}

func stsError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>`,
		code, xmlText(message))
}
