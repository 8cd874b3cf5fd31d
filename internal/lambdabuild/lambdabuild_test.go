package lambdabuild_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/lambdabuild"
)

// splitWords splits a make variable's value as the shell will: on blanks, except inside single
// quotes.
func splitWords(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// `make build` builds the functions with the flags the construct bundles them with.
func TestFlagsMatchMakefile(t *testing.T) {
	t.Parallel()
	makefile, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^LAMBDA_FLAGS\s*:?=\s*(.+)$`).FindSubmatch(makefile)
	require.NotNil(t, m, "the Makefile defines LAMBDA_FLAGS")
	require.Equal(t, lambdabuild.Flags, splitWords(string(m[1])))
}

func TestArgsAndEnv(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"build", "-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w",
		"-o", "/out/bootstrap", "./functions/satisfier"}, lambdabuild.Args("/out", "./functions/satisfier"))
	require.Equal(t, []string{"GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0"}, lambdabuild.Env("amd64"))
}
