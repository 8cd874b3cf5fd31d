package settings

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// MainAWS is d's Main for a function that talks to AWS, as each of stackseam's does. read reads
// the function's settings first, so that a start with bad settings names all of them whatever
// else is wrong: an AWS configuration the SDK refuses (AWS_MAX_ATTEMPTS=many, say) would
// otherwise stop the start first and hide them. run then gets the settings and the AWS SDK
// configuration, loaded the SDK's usual way (the Lambda role and region from the environment, or
// the shared files and AWS_* variables locally).
func MainAWS[S any](d *Declared, what string, read func() (S, error),
	run func(context.Context, *slog.Logger, S, aws.Config) error) {
	d.Main(what, func(ctx context.Context, logger *slog.Logger) error {
		s, err := read()
		if err != nil {
			return err
		}
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return fmt.Errorf("error loading AWS configuration: %w", err)
		}
		return run(ctx, logger, s, awsCfg)
	})
}
