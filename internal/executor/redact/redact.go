// Package redact removes the values of secret environment variables from text that leaves the
// task satisfier (stored task logs, task results), so a Terraform log that echoes a credential
// does not keep it.
package redact

import (
	"regexp"
	"slices"
	"strings"
)

// Mask replaces every redacted value; it names the variable so that a reader knows what was there.
const Mask = "[redacted:%s]"

// MinLength is the shortest secret value redacted, in bytes. Masking every "true", "1234" or
// "admin" in a log would corrupt it (Terraform's own words, numbers, resource names) while
// protecting little: a value that short is guessable anyway.
const MinLength = 8

// URLPasswordMask replaces the password of a URL's credentials (scheme://user:password@host).
const URLPasswordMask = "[redacted:url-password]"

// urlCredentials finds `scheme://user:password@` in text. The password runs to the last "@"
// before a space, "/", "?" or "#", so a password holding an unescaped "@" or ":" is masked whole;
// "https://host:8443/x" has no "@" before its "/" and is left alone.
var urlCredentials = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)([^\s/?#]+)@`)

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

// Redactor masks the values of the secret variables of one environment, and the password of
// every URL with credentials. The zero value and nil mask URL passwords only.
type Redactor struct {
	replacer *strings.Replacer
	names    []string
}

// FromEnviron builds a Redactor from an environment in os.Environ's "NAME=value" form. Values
// shorter than MinLength bytes are left alone.
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
		if len(value) >= MinLength && IsSecretName(name) {
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

// String returns s with every secret value masked, then the password of every URL carrying
// credentials ("postgres://app:pw@db/x" becomes "postgres://app:[redacted:url-password]@db/x").
func (r *Redactor) String(s string) string {
	if r != nil && r.replacer != nil {
		s = r.replacer.Replace(s)
	}
	if !strings.Contains(s, "://") {
		return s
	}
	return urlCredentials.ReplaceAllStringFunc(s, func(m string) string {
		parts := urlCredentials.FindStringSubmatch(m)
		if strings.HasPrefix(parts[2], "[redacted:") {
			return m // already masked as a named secret, which says more
		}
		return parts[1] + URLPasswordMask + "@"
	})
}

// Names returns the names of the variables whose values are masked, for a log line that says
// redaction is on without saying anything secret.
func (r *Redactor) Names() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.names)
}
