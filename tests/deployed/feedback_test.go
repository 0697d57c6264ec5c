package deployed

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"
)

// simulatorOutcome is what GET /api/notifications/{id} must show for a mail
// to one of SES's mailbox simulator addresses, once SES's events have come
// back through the configuration set, the topic and the feedback queue.
type simulatorOutcome struct {
	local, outcome, typ, subType string
	permanent                    bool
}

// simulatorOutcomes are SES's documented results for each simulator
// address (the same table the local suite's TestFeedbackStatuses holds
// the SES gate to).
var simulatorOutcomes = []simulatorOutcome{
	{"success", "delivered", "", "", false},
	{"bounce", "bounced", "Permanent", "General", true},
	{"complaint", "complained", "abuse", "", false},
	{"suppressionlist", "bounced", "Permanent", "Suppressed", true},
	{"ooto", "delivered", "", "", false},
}

// feedbackStatuses sends one notification to each simulator address through
// the deployed API and waits, through the API's status lookup, until each
// recipient shows the outcome SES reports for it: the whole feedback loop
// on real SES, SNS and SQS (issue 14).
func (d *deployment) feedbackStatuses() {
	if d.out["feedback_queue_url"] == "" {
		d.t.Errorf("the stack has no feedback queue (output feedback_queue_url): SES feedback is off")
		return
	}
	start := time.Now()
	ids := map[string]simulatorOutcome{}
	for _, o := range simulatorOutcomes {
		id := d.post(map[string]any{
			"to":       []string{o.local + "@simulator.amazonses.com"},
			"subject":  fmt.Sprintf("Herald e2e feedback %s %s", d.run, o.local),
			"text":     "Herald deployed-stack feedback test",
			"metadata": map[string]string{runTag: d.run},
		})
		ids[id] = o
	}
	seen := []string{}
	for id, want := range ids {
		address := want.local + "@simulator.amazonses.com"
		// SES reports within seconds to a few minutes; 10 minutes bounds it.
		got := retry.DoWithRetry(d.t, "the outcome of "+address, 60, 10*time.Second, func() (string, error) {
			st, err := d.status(id)
			if err != nil {
				return "", err
			}
			for _, r := range st.Recipients {
				if r.Address != address {
					continue
				}
				if r.Outcome == want.outcome && r.Type == want.typ && r.SubType == want.subType {
					if r.Permanent != want.permanent {
						return "", retry.FatalError{Underlying: fmt.Errorf("%s: permanent %v, want %v", address, r.Permanent, want.permanent)}
					}
					return r.Outcome, nil
				}
				return "", fmt.Errorf("%s: %s/%s/%s so far, want %s/%s/%s", address, r.Outcome, r.Type, r.SubType, want.outcome, want.typ, want.subType)
			}
			return "", fmt.Errorf("%s: status %q, no outcome yet", address, st.Status)
		})
		seen = append(seen, want.local+"="+got)
	}
	if dead := d.peek(d.out["feedback_dlq_url"]); len(dead) != 0 {
		d.t.Errorf("%d SES events in the feedback dead-letter queue", len(dead))
	}
	d.t.Logf("FIGURES deployed %s feedback: %d simulator addresses, outcomes %s, feedback DLQ empty; elapsed %s",
		d.mode, len(ids), strings.Join(seen, " "), time.Since(start).Round(time.Second))
}

// apiStatus is the part of GET /api/notifications/{id}'s answer the
// checks read (services/notification-api/doc.go).
type apiStatus struct {
	Status     string `json:"status"`
	Recipients []struct {
		Address   string `json:"address"`
		Outcome   string `json:"outcome"`
		Type      string `json:"type"`
		SubType   string `json:"subType"`
		Permanent bool   `json:"permanent"`
	} `json:"recipients"`
}

// status reads one notification's status with the run's API key.
func (d *deployment) status(id string) (apiStatus, error) {
	var st apiStatus
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, d.out["api_url"]+"/api/notifications/"+id, nil)
	if err != nil {
		return st, retry.FatalError{Underlying: err}
	}
	req.Header.Set("Authorization", "Bearer "+d.apiKey)
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(b, &st); err != nil {
			return st, retry.FatalError{Underlying: fmt.Errorf("status of %s: %v: %s", id, err, b)}
		}
		return st, nil
	case http.StatusNotFound, http.StatusServiceUnavailable, http.StatusBadGateway:
		// Not claimed by the sender yet, or a task restarting.
		return st, fmt.Errorf("status of %s: %d %s", id, resp.StatusCode, b)
	}
	return st, retry.FatalError{Underlying: fmt.Errorf("status of %s: %d %s", id, resp.StatusCode, b)}
}
