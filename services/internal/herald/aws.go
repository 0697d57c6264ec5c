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

// AWSOptions tunes the shared SDK configuration.
type AWSOptions struct {
	// MaxAttempts per SDK call, including the first; 0 means the SDK default (3).
	MaxAttempts int
	// MaxBackoff between SDK retries; 0 means the SDK default (20 s).
	MaxBackoff time.Duration
	// WriteBufferSize is the HTTP client's write buffer per connection; 0
	// means net/http's default (4 KiB). A call's headers and body leave in
	// one write to the socket when they fit; a larger body takes two
	// writes and a copy buffer per call.
	WriteBufferSize int
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
		t.WriteBufferSize = opts.WriteBufferSize
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

// Endpoint is an endpoint override (contract.EndpointSQS ...) for a
// client's BaseEndpoint: nil for "", which lets the SDK resolve the real AWS
// endpoint. The services read the overrides through their configuration,
// so tests need not touch the process environment.
func Endpoint(url string) *string {
	if url != "" {
		return aws.String(url)
	}
	return nil
}
