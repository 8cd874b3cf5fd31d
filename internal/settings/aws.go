package settings

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// MainAWS is Main for a function that talks to AWS, as each of stackseam's does: run also gets
// the AWS SDK configuration, loaded the SDK's usual way (the Lambda role and region from the
// environment, or the shared files and AWS_* variables locally).
func (d *Declared) MainAWS(what string, run func(context.Context, *slog.Logger, aws.Config) error) {
	d.Main(what, func(ctx context.Context, logger *slog.Logger) error {
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return fmt.Errorf("error loading AWS configuration: %w", err)
		}
		return run(ctx, logger, awsCfg)
	})
}
