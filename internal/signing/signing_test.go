package signing

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	k, err := NewKey(strings.Repeat("k", 32))
	require.NoError(t, err)
	body := `{"event":"TASK_COMPLETED","stackId":"s","taskRunId":"r"}`
	sig := k.Sign(body)
	require.True(t, k.Verify(body, sig))
	require.False(t, k.Verify(body+" ", sig), "any change to the body breaks the signature")
	require.False(t, k.Verify(body, ""), "an unsigned result is not verified")
	require.False(t, k.Verify(body, "zz"), "a signature that is not hex")
	other, err := NewKey(strings.Repeat("o", 32))
	require.NoError(t, err)
	require.False(t, other.Verify(body, sig), "another deployment's key")

	_, err = NewKey("short")
	require.ErrorContains(t, err, "at least 32 bytes")
	require.NotContains(t, err.Error(), "short", "the key's text is never in an error")

	dedup := k.DedupID("run-1")
	require.Len(t, dedup, 64, "an SQS deduplication id (at most 128 characters)")
	require.Equal(t, dedup, k.DedupID("run-1"), "stable, so a resend is still deduplicated")
	require.NotEqual(t, dedup, other.DedupID("run-1"), "and not computable without the key")

	var none Key
	require.Equal(t, "run-1", none.DedupID("run-1"))
	require.False(t, none.Required())
	require.Empty(t, none.Sign(body))
	require.False(t, none.Verify(body, sig))
}

func TestUnkeyedDedupIDsFitSQS(t *testing.T) {
	t.Parallel()
	var none Key
	short := "feature/login-ttl-3"
	require.Equal(t, short, none.DedupID(short), "a short id is kept as it is")
	long := strings.Repeat("s", 128) + "-" + strings.Repeat("e", 128) // the longest stack id and eventId
	got := none.DedupID(long)
	require.LessOrEqual(t, len(got), 128)
	require.Equal(t, got, none.DedupID(long), "the same message gets the same id")
	require.NotEqual(t, got, none.DedupID(long+"x"))
}
