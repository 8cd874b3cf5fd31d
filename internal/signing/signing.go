// Package signing authenticates task results: the satisfier signs each result it publishes with a
// key that only the two functions can read, and the state manager accepts a TASK_COMPLETED or
// TASK_ERROR only with a valid signature. A principal that may only publish events (the
// construct's GrantPublishEvents) cannot read the key, so it cannot forge a result that settles a
// destroy or injects outputs into a stack's metadata (docs/design.md §"Guarantees").
//
// The signature is an HMAC-SHA256 of the exact message body, carried in the SQS message attribute
// Attribute, so result bodies stay in CloudSeam's shape.
package signing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Attribute is the SQS message attribute that carries a result's signature.
const Attribute = "stackseam-signature"

// minKeyBytes is the shortest key accepted: an HMAC key shorter than its hash's output weakens it.
const minKeyBytes = 32

// Key signs and verifies result bodies. The zero Key signs nothing and verifies nothing: it is
// what a function has when no key is configured (local development), and Required says so.
type Key struct {
	secret []byte
}

// Required reports whether results must be signed: a key is configured.
func (k Key) Required() bool { return len(k.secret) > 0 }

// Sign returns the signature of body, or "" with the zero Key.
func (k Key) Sign(body string) string {
	if !k.Required() {
		return ""
	}
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig is body's signature under k, in constant time.
func (k Key) Verify(body, sig string) bool {
	if !k.Required() || sig == "" {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte(body))
	return hmac.Equal(got, mac.Sum(nil))
}

// DedupID returns the FIFO deduplication id to send a system message under: with a key, an
// HMAC of id, which no publisher can compute (a predictable id — one derived from a run id that
// `stackseam show` displays — could be sent first by a publisher, and SQS would then drop the real
// message as a duplicate for five minutes); with the zero Key, id itself, or its SHA-256 when it
// is longer than the 128 characters SQS takes (a stack id may be 128 characters, and the id adds
// an eventId to it).
func (k Key) DedupID(id string) string {
	if !k.Required() {
		if len(id) > maxDedupIDLen {
			sum := sha256.Sum256([]byte(id))
			return hex.EncodeToString(sum[:])
		}
		return id
	}
	return k.Sign("dedup:" + id)
}

// maxDedupIDLen is the longest FIFO deduplication id SQS accepts.
const maxDedupIDLen = 128

// NewKey returns a key of the given secret, which must be at least 32 bytes.
func NewKey(secret string) (Key, error) {
	if len(secret) < minKeyBytes {
		return Key{}, fmt.Errorf("the result signing key must be at least %d bytes", minKeyBytes)
	}
	return Key{secret: []byte(secret)}, nil
}

// Load reads the key: from the Secrets Manager secret secretID (the deployed way: the construct
// makes the secret and lets only the two functions read it), else from raw (local mode), else
// the zero Key. The key's text is never part of an error.
func Load(ctx context.Context, client *secretsmanager.Client, secretID, raw string) (Key, error) {
	switch {
	case secretID != "":
		if client == nil {
			return Key{}, errors.New("a Secrets Manager client is needed to read the result signing key")
		}
		out, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
		if err != nil {
			return Key{}, fmt.Errorf("error reading the result signing key %s: %w", secretID, err)
		}
		k, err := NewKey(aws.ToString(out.SecretString))
		if err != nil {
			return Key{}, fmt.Errorf("secret %s: %w", secretID, err)
		}
		return k, nil
	case raw != "":
		return NewKey(raw)
	}
	return Key{}, nil
}

// Source gives the key, read when first needed and then kept: a function starts even while
// Secrets Manager cannot be reached (in Lambda a failed start would spend the receive counts of
// the batch that started it), and asks again on its next use. A nil *Source has no key.
type Source struct {
	client   *secretsmanager.Client
	secretID string
	raw      string

	mu     sync.Mutex
	key    Key
	loaded bool
}

// NewSource returns a source for the key in the secret secretID or, in local mode, raw.
func NewSource(client *secretsmanager.Client, secretID, raw string) *Source {
	return &Source{client: client, secretID: secretID, raw: raw}
}

// Configured reports whether a key is configured, so results must be signed, without reading it.
func (s *Source) Configured() bool { return s != nil && (s.secretID != "" || s.raw != "") }

// Key returns the key, reading it on the first call that succeeds. The zero Key when none is
// configured.
func (s *Source) Key(ctx context.Context) (Key, error) {
	if !s.Configured() {
		return Key{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded {
		return s.key, nil
	}
	k, err := Load(ctx, s.client, s.secretID, s.raw)
	if err != nil {
		return Key{}, err
	}
	s.key, s.loaded = k, true
	return k, nil
}

// Fixed returns a source that always gives k (for tests).
func Fixed(k Key) *Source {
	return &Source{raw: string(k.secret), key: k, loaded: true}
}
