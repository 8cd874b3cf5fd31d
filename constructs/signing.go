package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// resultSigningKey creates the key task results are signed with (internal/signing): a random
// secret that only the two functions' roles may read. GrantPublishEvents gives no access to it, so
// a publisher can send events but never a result the state manager accepts.
func (s *Stackseam) resultSigningKey() {
	s.ResultSigningKey = awssecretsmanager.NewSecret(s.Construct, jsii.String("ResultSigningKey"), &awssecretsmanager.SecretProps{
		Description: jsii.String("stackseam: the key the satisfier signs task results with; the state manager accepts results only with its signature"),
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength:     jsii.Number(64),
			ExcludePunctuation: jsii.Bool(true),
		},
	})
	s.ResultSigningKey.GrantRead(s.StateManagerRole, nil)
	s.ResultSigningKey.GrantRead(s.SatisfierRole, nil)
	cdknag.NagSuppressions_AddResourceSuppressions(s.ResultSigningKey, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-SMG4"),
		Reason: jsii.String("The key only authenticates results between the two functions and is never shown to anyone; " +
			"each function reads it once per execution environment, so rotating it would reject results signed in flight with the old key."),
	}}, jsii.Bool(false))
}
