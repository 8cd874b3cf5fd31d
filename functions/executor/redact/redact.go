// Package redact removes the values of secret environment variables from text that leaves the
// task satisfier (stored task logs, task results), so a Terraform log that echoes a credential
// does not keep it.
package redact

import (
	"slices"
	"strings"
)

// Mask replaces every redacted value; it names the variable so that a reader knows what was there.
const Mask = "[redacted:%s]"

// minLength is the shortest value redacted: masking "1" or "no" everywhere would wreck a log
// while protecting nothing.
const minLength = 4

// exactNames are secret whatever the patterns say; secretParts mark a secret anywhere in a name.
var (
	exactNames  = []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}
	secretParts = []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "PRIVATE_KEY", "API_KEY", "CREDENTIAL"}
)

// pointerSuffixes mark a variable that says where a secret is (AWS_SHARED_CREDENTIALS_FILE), not
// the secret itself; masking every mention of a path would only garble logs.
var pointerSuffixes = []string{"_FILE", "_PATH", "_DIR", "_URI"}

// IsSecretName reports whether an environment variable's value is treated as a secret:
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or a name containing PASSWORD, PASSWD, SECRET, TOKEN,
// PRIVATE_KEY, API_KEY or CREDENTIAL (in any case) that does not end in _FILE, _PATH, _DIR or
// _URI.
func IsSecretName(name string) bool {
	upper := strings.ToUpper(name)
	if slices.Contains(exactNames, upper) {
		return true
	}
	for _, suffix := range pointerSuffixes {
		if strings.HasSuffix(upper, suffix) {
			return false
		}
	}
	for _, part := range secretParts {
		if strings.Contains(upper, part) {
			return true
		}
	}
	return false
}

// Redactor masks the values of the secret variables of one environment. The zero value and nil
// mask nothing.
type Redactor struct {
	replacer *strings.Replacer
	names    []string
}

// FromEnviron builds a Redactor from an environment in os.Environ's "NAME=value" form. Values
// shorter than four bytes are left alone.
func FromEnviron(environ []string) *Redactor {
	type secret struct{ name, value string }
	// As in os/exec, the last value of a name is the one that counts.
	values := map[string]string{}
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok {
			values[name] = value
		}
	}
	var secrets []secret
	for name, value := range values {
		if len(value) >= minLength && IsSecretName(name) {
			secrets = append(secrets, secret{name, value})
		}
	}
	// Longest first: strings.Replacer tries the old strings in argument order at each position,
	// so a secret that contains another is masked whole. Then by name, for a stable order.
	slices.SortFunc(secrets, func(a, b secret) int {
		if len(a.value) != len(b.value) {
			return len(b.value) - len(a.value)
		}
		return strings.Compare(a.name, b.name)
	})
	r := &Redactor{}
	var pairs []string
	for _, s := range secrets {
		pairs = append(pairs, s.value, strings.Replace(Mask, "%s", s.name, 1))
		r.names = append(r.names, s.name)
	}
	if len(pairs) > 0 {
		r.replacer = strings.NewReplacer(pairs...)
	}
	return r
}

// String returns s with every secret value masked.
func (r *Redactor) String(s string) string {
	if r == nil || r.replacer == nil {
		return s
	}
	return r.replacer.Replace(s)
}

// Names returns the names of the variables whose values are masked, for a log line that says
// redaction is on without saying anything secret.
func (r *Redactor) Names() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.names)
}
