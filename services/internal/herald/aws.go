package herald

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Endpoint overrides, read through getenv so tests need not touch the process
// environment. The SDK reads the same names from the process environment.
const (
	EnvEndpointSQS            = "AWS_ENDPOINT_URL_SQS"
	EnvEndpointSESv2          = "AWS_ENDPOINT_URL_SESV2"
	EnvEndpointSecretsManager = "AWS_ENDPOINT_URL_SECRETSMANAGER"
)

// AWSOptions tunes the shared SDK configuration.
type AWSOptions struct {
	// MaxAttempts per SDK call, including the first; 0 means the SDK default (3).
	MaxAttempts int
	// MaxBackoff between SDK retries; 0 means the SDK default (20 s).
	MaxBackoff time.Duration
}

// LoadAWSConfig builds the SDK configuration both services use: the default
// credential chain, the given region, and an HTTP client sized for many
// concurrent calls to one endpoint (the SDK's default keeps few idle
// connections per host, which costs a TLS handshake per burst).
func LoadAWSConfig(ctx context.Context, region string, opts AWSOptions) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		t.IdleConnTimeout = 90 * time.Second
	}).WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = 5 * time.Second
	})
	loadOpts := []func(*config.LoadOptions) error{
		config.WithRegion(region),
		config.WithHTTPClient(httpClient),
	}
	if opts.MaxAttempts > 0 || opts.MaxBackoff > 0 {
		loadOpts = append(loadOpts, config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				if opts.MaxAttempts > 0 {
					o.MaxAttempts = opts.MaxAttempts
				}
				if opts.MaxBackoff > 0 {
					o.MaxBackoff = opts.MaxBackoff
				}
			})
		}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	// After loading: the loader still configures the client (a CA bundle).
	cfg.HTTPClient = GuardRequestBodies(cfg.HTTPClient)
	return cfg, nil
}

// Endpoint returns the override for one service from getenv, or nil to let
// the SDK resolve the real AWS endpoint. Pass it to a client's BaseEndpoint.
func Endpoint(getenv func(string) string, name string) *string {
	if v := getenv(name); v != "" {
		return aws.String(v)
	}
	return nil
}
