package localenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// SecretsFake is an HTTP server speaking the Secrets Manager JSON protocol
// for GetSecretValue, standing in for AWS Secrets Manager, which the emulator
// lacks. The AWS SDK reaches it through AWS_ENDPOINT_URL_SECRETS_MANAGER=URL
// (see Env) or a client's BaseEndpoint. Close stops it.
type SecretsFake struct {
	fakeServer // URL, Close and Env

	mu      sync.Mutex
	secrets map[string]string
	reads   map[string]int
}

// NewSecretsFake starts a fake Secrets Manager with no secrets, listening
// on a free port of 127.0.0.1.
func NewSecretsFake() *SecretsFake {
	f := &SecretsFake{secrets: map[string]string{}, reads: map[string]int{}}
	f.start("AWS_ENDPOINT_URL_SECRETS_MANAGER", f.serve)
	return f
}

// Put sets (or replaces, as a rotation does) the SecretString of the secret
// id; the secret is found by this id or by its ARN.
func (f *SecretsFake) Put(id, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[id] = value
}

// ARN returns the ARN the fake reports for the secret id.
func (f *SecretsFake) ARN(id string) string {
	return "arn:aws:secretsmanager:" + Region + ":000000000000:secret:" + id
}

// Reads returns how many times GetSecretValue returned the secret id.
func (f *SecretsFake) Reads(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[id]
}

func (f *SecretsFake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" {
		awsJSONError(w, http.StatusBadRequest, "InvalidRequestException",
			fmt.Sprintf("the fake serves only GetSecretValue, not %s %s", r.Method, r.Header.Get("X-Amz-Target")))
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		awsJSONError(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "the request is not signed")
		return
	}
	var in struct{ SecretId string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.SecretId == "" {
		awsJSONError(w, http.StatusBadRequest, "InvalidParameterException", "SecretId is required")
		return
	}
	id := strings.TrimPrefix(in.SecretId, f.ARN(""))
	f.mu.Lock()
	value, ok := f.secrets[id]
	if ok {
		f.reads[id]++
	}
	f.mu.Unlock()
	if !ok {
		awsJSONError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	awsJSON(w, map[string]any{
		"ARN": f.ARN(id), "Name": id, "SecretString": value,
		"VersionId": "v1", "VersionStages": []string{"AWSCURRENT"}, "CreatedDate": 0,
	})
}
