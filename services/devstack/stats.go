package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"herald/services/devstack/sqslocal"
)

// SQSStats reads the SQS emulator's request counters (by action) and its
// queues' depths. Reading them is not an SQS request and is not counted.
func (s *Stack) SQSStats(ctx context.Context) (sqslocal.Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.SQSEndpoint()+sqslocal.StatsPath, nil)
	if err != nil {
		return sqslocal.Stats{}, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return sqslocal.Stats{}, fmt.Errorf("read the SQS emulator's stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return sqslocal.Stats{}, fmt.Errorf("read the SQS emulator's stats: status %d: %s", resp.StatusCode, b)
	}
	var st sqslocal.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return sqslocal.Stats{}, fmt.Errorf("decode the SQS emulator's stats: %w", err)
	}
	return st, nil
}
