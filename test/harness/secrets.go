package harness

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stackseam/stackseam/test/localenv"
)

// SecretsFake is an HTTP server speaking the Secrets Manager JSON protocol
// for GetSecretValue, standing in for Secrets Manager, which the emulator
// lacks (see localenv.SecretsFake).
type SecretsFake = localenv.SecretsFake

// NewSecretsFake starts a fake Secrets Manager with no secrets; it is closed
// at the end of the test. A child process reaches it through Env().
func NewSecretsFake(t testing.TB) *SecretsFake {
	return closedAtEnd(t, localenv.NewSecretsFake())
}

// SecretsClient returns a Secrets Manager client for the fake, with the
// harness's region and static credentials.
func SecretsClient(f *SecretsFake) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       Region,
		BaseEndpoint: aws.String(f.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	})
}
