// Command rieprobe is a Lambda function for the harness's own tests of the Runtime Interface
// Emulator: it answers each way a function can end an invocation, and reports what Lambda mode
// gives it.
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func main() {
	lambda.Start(func(ctx context.Context, ev map[string]string) (map[string]any, error) {
		switch ev["do"] {
		case "fail":
			return nil, errors.New("failed on purpose")
		case "panic":
			panic("panicked on purpose")
		case "sleep":
			d, _ := time.ParseDuration(ev["for"])
			time.Sleep(d)
		}
		deadline, _ := ctx.Deadline()
		lc, _ := lambdacontext.FromContext(ctx)
		wd, _ := os.Getwd()
		return map[string]any{
			"runtimeAPI": os.Getenv("AWS_LAMBDA_RUNTIME_API") != "",
			"taskRoot":   os.Getenv("LAMBDA_TASK_ROOT"),
			"wd":         wd,
			"memory":     os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
			"name":       lambdacontext.FunctionName,
			"requestId":  lc.AwsRequestID,
			"setting":    os.Getenv("PROBE_SETTING"),
			"deadlineIn": time.Until(deadline).Seconds(),
		}, nil
	})
}
