package redact_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/executor/redact"
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
		"EMPTY_PASSWORD=",    // nothing to mask
		"MALFORMED_SECRET",   // no '='
		"PATH=/usr/bin:/bin", // not secret
	})
	in := "key wJalrXUtnFEMI/K7MDENG token IQoJb3JpZ2luX2VjEJr pw hunter2! api hunter2!-and-more id AKIAEXAMPLE abc /usr/bin"
	out := r.String(in)
	require.Equal(t, "key [redacted:AWS_SECRET_ACCESS_KEY] token [redacted:AWS_SESSION_TOKEN] pw [redacted:DB_PASSWORD] "+
		"api [redacted:API_TOKEN] id AKIAEXAMPLE abc /usr/bin", out)
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
