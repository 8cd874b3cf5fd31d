package terraform

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// DefaultExpiryWindow is how long before its credentials expire a run's credentials endpoint
// assumes the role again: Terraform's SDK asks the endpoint only once its own copy has expired,
// and must then get credentials that outlast the calls it signs with them.
const DefaultExpiryWindow = 5 * time.Minute

// Endpoint serves one run's credentials to Terraform over the AWS container-credentials
// protocol (what the SDKs read from AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN), on a random port and path of 127.0.0.1. Behind it a
// credentials cache assumes the role again before the session ends, so a run may last longer
// than STS's one-hour limit on a chained role's session. Only a request carrying the run's
// token gets credentials. The expiry it gives is the session's end less the cache's window, when
// the cache assumes the role again, so that Terraform's SDK comes back for the new session then.
// Close stops it.
type Endpoint struct {
	// URL is the full URI Terraform is given (http://127.0.0.1:PORT/<random path>).
	URL string
	// Token is the authorization token a request must carry. A secret: never logged.
	Token string

	cache  *aws.CredentialsCache
	srv    *http.Server
	done   chan struct{}
	served atomic.Int64
	once   sync.Once
}

// credentialsResponse is the container-credentials protocol's answer.
type credentialsResponse struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration,omitempty"`
}

// StartEndpoint starts an endpoint serving provider's credentials through a cache that renews
// them window before they expire (DefaultExpiryWindow when window is 0).
func StartEndpoint(provider aws.CredentialsProvider, window time.Duration) (*Endpoint, error) {
	if window <= 0 {
		window = DefaultExpiryWindow
	}
	token, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	path, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("error listening for Terraform's credentials endpoint: %w", err)
	}
	e := &Endpoint{
		URL:   "http://" + ln.Addr().String() + "/" + path,
		Token: token,
		cache: aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = window }),
		done:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+path, e.serve)
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln) // ErrServerClosed once Close is called; nothing else to report
	}()
	return e, nil
}

// Retrieve returns the credentials the endpoint serves now, assuming the role when the cache's
// have expired or are about to.
func (e *Endpoint) Retrieve(ctx context.Context) (aws.Credentials, error) {
	return e.cache.Retrieve(ctx)
}

// Served is the number of credential requests the endpoint has answered with credentials.
func (e *Endpoint) Served() int64 { return e.served.Load() }

// Close stops the endpoint, waiting a few seconds for requests in flight.
func (e *Endpoint) Close() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			_ = e.srv.Close()
		}
		<-e.done
	})
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	// Constant time, so that the time taken does not tell how much of a guess was right.
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(e.Token)) != 1 {
		http.Error(w, `{"code":"Unauthorized","message":"no or a wrong authorization token"}`, http.StatusUnauthorized)
		return
	}
	creds, err := e.cache.Retrieve(r.Context())
	if err != nil {
		// The SDK shows the message in its error: what failed, never a credential.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		msg, _ := json.Marshal(map[string]string{"code": "AssumeRoleFailed", "message": err.Error()})
		_, _ = w.Write(msg)
		return
	}
	resp := credentialsResponse{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, Token: creds.SessionToken}
	if creds.CanExpire {
		resp.Expiration = creds.Expires.UTC().Format(time.RFC3339)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		http.Error(w, "error encoding the credentials", http.StatusInternalServerError)
		return
	}
	e.served.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// randomHex is n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("error reading random bytes for the credentials endpoint: %w", err)
	}
	return hex.EncodeToString(b), nil
}
