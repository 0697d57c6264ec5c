package herald

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Healthcheck is the `healthcheck` subcommand of both binaries: the container
// health check of a distroless image, which has no shell and no curl. It asks
// the running service's /healthz on loopback and fails unless it answers 200.
func Healthcheck(ctx context.Context, getenv func(string) string, defaultAddr string) error {
	return HealthcheckAt(ctx, getenv, defaultAddr, "/healthz")
}

// HealthcheckAt is Healthcheck asking path instead, for a service whose
// health check path is another one (the email sender's is the original
// design's /api/notification/send-email).
func HealthcheckAt(ctx context.Context, getenv func(string) string, defaultAddr, path string) error {
	env := NewEnv(getenv)
	addr := env.Addr("HERALD_HTTP_ADDR", defaultAddr)
	if err := env.Err(); err != nil {
		return err
	}
	url, err := HealthURLAt(addr, path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health check %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check %s: status %d", url, resp.StatusCode)
	}
	return nil
}
