// Command hello is a tiny program for the harness's own tests: it reports
// its arguments and environment, optionally calls the AWS emulator the way
// the real binaries do (the SDK's default configuration), and shuts down
// cleanly on SIGTERM unless told to ignore it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func main() {
	ignoreTerm := flag.Bool("ignore-term", false, "keep running on SIGTERM")
	queueURL := flag.String("send", "", "send one message to this SQS queue URL, using the default AWS configuration")
	exitCode := flag.Int("exit", -1, "exit at once with this status")
	flag.Parse()

	fmt.Printf("args=%v\n", flag.Args())
	fmt.Printf("HELLO_VALUE=%s\n", os.Getenv("HELLO_VALUE"))
	fmt.Fprintln(os.Stderr, "to stderr")
	if *exitCode >= 0 {
		os.Exit(*exitCode)
	}
	if *queueURL != "" {
		if err := send(*queueURL); err != nil {
			fmt.Println("send failed:", err)
			os.Exit(1)
		}
		fmt.Println("sent")
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	fmt.Println("ready")
	for range signals {
		if *ignoreTerm {
			fmt.Println("ignoring SIGTERM")
			continue
		}
		fmt.Println("bye")
		return
	}
}

func send(queueURL string) error {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	_, err = sqs.NewFromConfig(cfg).SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(queueURL),
		MessageBody: aws.String("from hello"),
	})
	return err
}
