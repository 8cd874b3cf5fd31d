package redact_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/redact"
)

func TestIsSecretName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD", "db_password",
		"GITHUB_TOKEN", "MY_SECRET_THING", "SSH_PRIVATE_KEY", "STRIPE_API_KEY", "MYSQL_PASSWD", "GOOGLE_CREDENTIALS"} {
		require.True(t, redact.IsSecretName(name), name)
	}
	for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_REGION", "PATH", "HOME", "BUCKET", "TASK_QUEUE_URL",
		"AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS_PATH", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "SECRETS_DIR"} {
		require.False(t, redact.IsSecretName(name), name)
	}
}

func TestRedactorMasksSecretValues(t *testing.T) {
	t.Parallel()
	r := redact.FromEnviron([]string{
		"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
		"AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEJr",
		"DB_PASSWORD=hunter2!",
		"API_TOKEN=hunter2!-and-more", // contains another secret: masked whole
		"AWS_ACCESS_KEY_ID=AKIAEXAMPLE",
		"SHORT_SECRET=abc",   // too short to mask
		"PIN_SECRET=1234567", // seven bytes: still too short (masking it would garble every "1234567")
		"EMPTY_PASSWORD=",    // nothing to mask
		"MALFORMED_SECRET",   // no '='
		"PATH=/usr/bin:/bin", // not secret
	})
	in := "key wJalrXUtnFEMI/K7MDENG token IQoJb3JpZ2luX2VjEJr pw hunter2! api hunter2!-and-more id AKIAEXAMPLE abc /usr/bin 1234567"
	out := r.String(in)
	require.Equal(t, "key [redacted:AWS_SECRET_ACCESS_KEY] token [redacted:AWS_SESSION_TOKEN] pw [redacted:DB_PASSWORD] "+
		"api [redacted:API_TOKEN] id AKIAEXAMPLE abc /usr/bin 1234567", out)
	require.ElementsMatch(t, []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD", "API_TOKEN"}, r.Names())
}

func TestRedactorUsesTheLastValueOfAName(t *testing.T) {
	t.Parallel()
	r := redact.FromEnviron([]string{"DB_PASSWORD=first-value", "DB_PASSWORD=second-value"})
	require.Equal(t, "first-value [redacted:DB_PASSWORD]", r.String("first-value second-value"))
}

func TestNilRedactorMasksNothing(t *testing.T) {
	t.Parallel()
	var r *redact.Redactor
	require.Equal(t, "x", r.String("x"))
	require.Empty(t, r.Names())
	require.Equal(t, "x", redact.FromEnviron(nil).String("x"))
}

func TestShortValuesAreNotMasked(t *testing.T) {
	t.Parallel()
	r := redact.FromEnviron([]string{"DB_PASSWORD=true", "API_TOKEN=12345678"})
	require.Equal(t, []string{"API_TOKEN"}, r.Names(), "only values of at least MinLength bytes")
	require.Equal(t, "enabled = true; [redacted:API_TOKEN]", r.String("enabled = true; 12345678"))
}

func TestURLCredentialsAreMasked(t *testing.T) {
	t.Parallel()
	var none *redact.Redactor // URL passwords are masked even with no secret variables
	for in, want := range map[string]string{
		"connecting to postgres://app:s3cr3t@db.internal:5432/main ok": "connecting to postgres://app:[redacted:url-password]@db.internal:5432/main ok",
		"https://user:p@ss:w0rd@example.com/x?y=z":                     "https://user:[redacted:url-password]@example.com/x?y=z",
		"a=redis://:onlypass@cache:6379, b=amqp://u:v@mq":              "a=redis://:[redacted:url-password]@cache:6379, b=amqp://u:[redacted:url-password]@mq",
		"git+ssh://git:tok@github.com/org/repo.git":                    "git+ssh://git:[redacted:url-password]@github.com/org/repo.git",
		// Not credentials: left as they are.
		"https://example.com:8443/path?mail=a@b.example": "https://example.com:8443/path?mail=a@b.example",
		"ssh://git@github.com/org/repo":                  "ssh://git@github.com/org/repo",
		"user:pw@host without a scheme":                  "user:pw@host without a scheme",
	} {
		require.Equal(t, want, none.String(in), in)
	}
	// A password that is also a secret variable keeps the variable's name.
	r := redact.FromEnviron([]string{"DB_PASSWORD=correct-horse"})
	require.Equal(t, "postgres://app:[redacted:DB_PASSWORD]@db/x", r.String("postgres://app:correct-horse@db/x"))
}
