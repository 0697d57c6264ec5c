package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"herald/services/internal/store"
)

// notificationStatus is the answer to GET /api/notifications/{id}.
type notificationStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Attempts is how many times a sender took the notification.
	Attempts          int               `json:"attempts,omitempty"`
	ProviderMessageID string            `json:"providerMessageId,omitempty"`
	SentAt            *time.Time        `json:"sentAt,omitempty"`
	FailureClass      string            `json:"failureClass,omitempty"`
	FailureReason     string            `json:"failureReason,omitempty"`
	FailedAt          *time.Time        `json:"failedAt,omitempty"`
	UpdatedAt         *time.Time        `json:"updatedAt,omitempty"`
	Recipients        []recipientStatus `json:"recipients,omitempty"`
}

// recipientStatus is one recipient's outcome as SES reported it.
type recipientStatus struct {
	Address    string    `json:"address"`
	Outcome    string    `json:"outcome"`
	At         time.Time `json:"at"`
	Type       string    `json:"type,omitempty"`
	SubType    string    `json:"subType,omitempty"`
	Status     string    `json:"status,omitempty"`
	Diagnostic string    `json:"diagnostic,omitempty"`
	Permanent  bool      `json:"permanent"`
}

// getNotification answers a notification's status to the API key it was
// queued for; any other key, like an unknown id, gets 404.
func (s *server) getNotification(w http.ResponseWriter, r *http.Request) {
	keyID, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if s.state == nil {
		writeProblem(w, noStore("a status lookup"))
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	st, err := s.state.Get(ctx, id, keyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, newProblem(http.StatusNotFound, "notification-not-found", "no notification "+clip(id, 64)+" for this API key"))
		return
	case err != nil:
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "status lookup failed", slog.String("requestId", info(r).requestID), slog.String("err", err.Error()))
		setRetryAfter(w, unavailableRetryAfter)
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "store-unavailable", "the status cannot be read now; retry later"))
		return
	}
	info(r).notificationID = st.ID
	writeJSON(w, "application/json", http.StatusOK, statusOf(st))
}

func statusOf(st store.Status) notificationStatus {
	out := notificationStatus{
		ID: st.ID, Status: string(st.State), Attempts: st.Attempts,
		ProviderMessageID: st.ProviderMessageID, SentAt: timeOrNil(st.SentAt),
		FailureClass: st.FailureClass, FailureReason: st.FailureReason, FailedAt: timeOrNil(st.FailedAt),
		UpdatedAt: timeOrNil(st.UpdatedAt),
	}
	for _, rc := range st.Recipients {
		out.Recipients = append(out.Recipients, recipientStatus{
			Address: rc.Address, Outcome: string(rc.Outcome), At: rc.At.UTC(), Type: rc.Type, SubType: rc.SubType,
			Status: rc.Status, Diagnostic: rc.Diagnostic, Permanent: rc.PermanentFailure(),
		})
	}
	return out
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// clip keeps the first n bytes of an id echoed in a problem.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
