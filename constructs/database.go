package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsrds"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func (s *Stackseam) database(p resolved) {
	if p.ExistingDatabaseSecret != nil {
		s.DatabaseSecret = p.ExistingDatabaseSecret
		s.DatabaseSecurityGroup = p.ExistingDatabaseSecurityGroup
		s.DatabaseSecurityGroup.AddIngressRule(s.StateManagerSecurityGroup, awsec2.Port_Tcp(jsii.Number(float64(p.ExistingDatabasePort))),
			jsii.String("PostgreSQL from the stackseam state manager"), jsii.Bool(false))
		return
	}
	sg := awsec2.NewSecurityGroup(s.Construct, jsii.String("DatabaseSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.Vpc,
		Description:      jsii.String("stackseam database: PostgreSQL from the state manager only"),
		AllowAllOutbound: jsii.Bool(false),
	})
	s.DatabaseSecurityGroup = sg
	engine := awsrds.DatabaseInstanceEngine_Postgres(&awsrds.PostgresInstanceEngineProps{Version: defaultPostgresVersion()})
	// The secret is made here rather than by the instance so that it carries dbname: the
	// functions read {"username","password","host","port","dbname"}, and RDS adds host and port.
	secret := awsrds.NewDatabaseSecret(s.Construct, jsii.String("DatabaseSecret"), &awsrds.DatabaseSecretProps{
		Username: jsii.String("stackseam"),
		Dbname:   jsii.String("stackseam"),
	})
	cdknag.NagSuppressions_AddResourceSuppressions(secret, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-SMG4"),
		Reason: jsii.String("Rotation is not switched on by default: its Lambda function would need a way into the database, which only the state manager may reach. " +
			"The state manager re-reads the secret when authentication fails, so Database.AddRotationSingleUser can be added safely."),
	}}, jsii.Bool(true))
	if p.DatabaseRemovalPolicy != awscdk.RemovalPolicy_DESTROY {
		// A snapshot or a retained instance is useless without its password.
		secret.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN)
	}
	db := awsrds.NewDatabaseInstance(s.Construct, jsii.String("Database"), &awsrds.DatabaseInstanceProps{
		Engine:              engine,
		InstanceType:        p.DatabaseInstanceType,
		Vpc:                 s.Vpc,
		VpcSubnets:          p.VpcSubnets,
		SecurityGroups:      &[]awsec2.ISecurityGroup{sg},
		Credentials:         awsrds.Credentials_FromSecret(secret, nil),
		DatabaseName:        jsii.String("stackseam"),
		StorageEncrypted:    jsii.Bool(true),
		StorageType:         awsrds.StorageType_GP3,
		AllocatedStorage:    jsii.Number(defaultDatabaseStorageGiB),
		MaxAllocatedStorage: jsii.Number(defaultDatabaseMaxStorageGiB),
		MultiAz:             jsii.Bool(p.DatabaseMultiAz),
		PubliclyAccessible:  jsii.Bool(false),
		BackupRetention:     awscdk.Duration_Days(jsii.Number(defaultDatabaseBackupDays)),
		DeletionProtection:  p.DatabaseDeletionProtection,
		RemovalPolicy:       p.DatabaseRemovalPolicy,
		// Connections without TLS are refused by the server, whatever a client asks for.
		ParameterGroup: awsrds.NewParameterGroup(s.Construct, jsii.String("DatabaseParameters"), &awsrds.ParameterGroupProps{
			Engine:      engine,
			Description: jsii.String("stackseam: TLS required"),
			Parameters:  &map[string]*string{"rds.force_ssl": jsii.String("1")},
		}),
	})
	db.Connections().AllowDefaultPortFrom(s.StateManagerSecurityGroup, jsii.String("PostgreSQL from the stackseam state manager"))
	suppressions := []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-RDS6"), Reason: jsii.String("The functions authenticate with the password in the Secrets Manager secret (the format CloudSeam uses); IAM database authentication is not used.")},
		{Id: jsii.String("AwsSolutions-RDS11"), Reason: jsii.String("The standard PostgreSQL port is kept: the database sits in private subnets and its security group lets in the state manager only, so another port would hide nothing.")},
	}
	if !p.DatabaseMultiAz {
		suppressions = append(suppressions, &cdknag.NagPackSuppression{Id: jsii.String("AwsSolutions-RDS3"),
			Reason: jsii.String("Single-AZ by default for cost: stackseam tolerates a database outage (events wait in the queue and are retried). Set DatabaseMultiAz for a standby.")})
	}
	if !*p.DatabaseDeletionProtection {
		suppressions = append(suppressions, &cdknag.NagPackSuppression{Id: jsii.String("AwsSolutions-RDS10"),
			Reason: jsii.String("Deletion protection was switched off on purpose (DatabaseDeletionProtection=false or DatabaseRemovalPolicy=DESTROY).")})
	}
	cdknag.NagSuppressions_AddResourceSuppressions(db, &suppressions, jsii.Bool(true))
	s.Database = db
	s.DatabaseSecret = db.Secret() // the attached secret: host and port are written before the functions start
}
