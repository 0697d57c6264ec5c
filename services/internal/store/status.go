package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"herald/services/internal/herald"
)

// State is a notification's delivery state, as GET /api/notifications/{id}
// shows it.
type State string

const (
	// StateQueued: accepted and on the queue; no sender holds it now (none
	// has yet, or the last attempt's lease ended: the message comes back).
	StateQueued State = "queued"
	// StateSending: a sender holds its lease and is sending it.
	StateSending State = "sending"
	// StateSent: the provider (SES, or the SMTP relay) accepted it.
	StateSent State = "sent"
	// StateFailed: the last attempt failed for a reason a retry may fix;
	// the message comes back after its backoff.
	StateFailed State = "failed"
	// StateDeadLettered: it failed for good and is on the dead-letter queue
	// (a redrive queues it again).
	StateDeadLettered State = "dead-lettered"
)

// Limits of the values the sender records.
const (
	MaxClassBytes      = 64
	MaxReasonBytes     = 1000 // longer reasons are cut, at a rune boundary
	MaxProviderIDBytes = 256
)

// Status is what the store knows of a notification.
type Status struct {
	ID    string
	State State
	// Attempts is how many times a sender claimed it.
	Attempts int
	// ProviderMessageID and SentAt, when sent: SES's MessageId (or the SMTP
	// transport's id) and when the provider accepted it.
	ProviderMessageID string
	SentAt            time.Time
	// FailureClass and FailureReason, when failed or dead-lettered, are the
	// last failure's (the sender's transport.Failure); FailedAt its time.
	FailureClass, FailureReason string
	FailedAt                    time.Time
	// UpdatedAt is the last write; zero for a queued notification the
	// sender has not seen yet.
	UpdatedAt time.Time
	// Recipients are the outcomes SES reported per recipient (feedback.go),
	// by address; none before the first event.
	Recipients []Recipient
}

// NotificationLease is a sender's hold on a notification, from Claim.
type NotificationLease struct {
	ID, Scope, Token string
}

// ClaimOutcome is what Claim found.
type ClaimOutcome int

const (
	// Claimed: the caller holds the lease and may send; then MarkSent,
	// MarkFailed or MarkDeadLettered with Claim.Lease.
	Claimed ClaimOutcome = iota + 1
	// AlreadySent: delete the message without sending it.
	AlreadySent
	// Busy: another sender's lease is live until Claim.LeaseUntil; leave
	// the message on the queue until then.
	Busy
)

func (o ClaimOutcome) String() string {
	return enumName(int(o), "ClaimOutcome", "claimed", "already-sent", "busy")
}

// Sent is a provider's acceptance of a notification.
type Sent struct {
	ProviderMessageID string
	At                time.Time
}

// Claim is Claim's result.
type Claim struct {
	Outcome ClaimOutcome
	// Lease, Attempt and TookOver when Claimed. Attempt counts claims, this
	// one included. TookOver: the previous attempt's lease ended without a
	// record of its outcome (its sender died or overran the lease): it may
	// have sent, and this send is then the one duplicate the store cannot
	// prevent (see DESIGN.md); count it.
	Lease    NotificationLease
	Attempt  int
	TookOver bool
	// Sent, when AlreadySent.
	Sent Sent
	// LeaseUntil, when Busy.
	LeaseUntil time.Time
}

func notificationPK(id string) string { return notificationPfx + id }

// Claim takes the lease on notification id, queued by the API key scope,
// before sending it: one conditional UpdateItem. It fails with
// ErrOwnerMismatch when the id's record belongs to another key.
func (s *Store) Claim(ctx context.Context, id, scope string, lease time.Duration) (Claim, error) {
	if err := checkNotification(id, scope); err != nil {
		return Claim{}, err
	}
	if lease < time.Millisecond {
		return Claim{}, fmt.Errorf("store: lease %s must be at least 1ms", lease)
	}
	now := s.cfg.Clock()
	token := newToken()
	update := "SET #status = :sending, #owner = :scope, #ltok = :tok, #lease = :until, #upd = :now, #exp = :exp ADD #att :one"
	cond := "(attribute_not_exists(#owner) OR #owner = :scope) AND attribute_not_exists(#sent) AND " +
		"(attribute_not_exists(#lease) OR #lease <= :now OR #ltok = :tok)"
	out, err := s.update(ctx, notificationPK(id), update, cond, map[string]types.AttributeValue{
		":sending": str(string(StateSending)), ":scope": str(scope), ":tok": str(token),
		":until": num(now.Add(lease).UnixMilli()), ":now": num(now.UnixMilli()),
		":exp": num(now.Add(s.cfg.StatusTTL).Unix()), ":one": num(1),
	}, true)
	if err == nil {
		old := item(out.Attributes)
		return Claim{
			Outcome:  Claimed,
			Lease:    NotificationLease{ID: id, Scope: scope, Token: token},
			Attempt:  int(old.num(attrAttempts)) + 1,
			TookOver: old.str(attrStatus) == string(StateSending) && old.str(attrLeaseToken) != token,
		}, nil
	}
	old, failed := conditionFailed(err)
	if !failed {
		return Claim{}, fmt.Errorf("store: claim %s: %w", id, err)
	}
	switch {
	case len(old) == 0:
		return Claim{}, fmt.Errorf("store: claim %s: the condition failed without returning the item", id)
	case old.has(attrOwner) && old.str(attrOwner) != scope:
		return Claim{}, fmt.Errorf("claim %s for %s: %w", id, scope, ErrOwnerMismatch)
	case old.has(attrSentAt):
		return Claim{Outcome: AlreadySent, Sent: Sent{ProviderMessageID: old.str(attrProviderID), At: old.millis(attrSentAt)}}, nil
	case old.millis(attrLeaseUntil).After(now):
		return Claim{Outcome: Busy, LeaseUntil: old.millis(attrLeaseUntil)}, nil
	}
	return Claim{}, fmt.Errorf("store: claim %s: unexpected record in status %q", id, old.str(attrStatus))
}

// MarkSentResult is MarkSent's result.
type MarkSentResult struct {
	// Duplicate: the notification had been recorded as sent with another
	// provider message id, so it was sent twice; First is that record.
	Duplicate bool
	First     Sent
}

// MarkSent records the provider's acceptance: one conditional UpdateItem.
// It needs no live lease (the mail is gone, whatever the lease says); a
// second, different send is reported as Duplicate and the first kept.
func (s *Store) MarkSent(ctx context.Context, l NotificationLease, providerMessageID string, at time.Time) (MarkSentResult, error) {
	if err := checkNotificationLease(l); err != nil {
		return MarkSentResult{}, err
	}
	if err := checkText("provider message id", providerMessageID, MaxProviderIDBytes); err != nil {
		return MarkSentResult{}, fmt.Errorf("store: %w", err)
	}
	if at.IsZero() {
		return MarkSentResult{}, fmt.Errorf("store: mark %s sent: the time is zero", l.ID)
	}
	now := s.cfg.Clock()
	update := "SET #status = :sent, #pmid = :pmid, #sent = :at, #owner = :scope, #lease = :zero, #upd = :now, #exp = :exp"
	cond := "(attribute_not_exists(#owner) OR #owner = :scope) AND (attribute_not_exists(#sent) OR #pmid = :pmid)"
	_, err := s.update(ctx, notificationPK(l.ID), update, cond, map[string]types.AttributeValue{
		":sent": str(string(StateSent)), ":pmid": str(providerMessageID), ":at": num(at.UnixMilli()),
		":scope": str(l.Scope), ":zero": num(0), ":now": num(now.UnixMilli()), ":exp": num(now.Add(s.cfg.StatusTTL).Unix()),
	}, false)
	if err == nil {
		return MarkSentResult{First: Sent{ProviderMessageID: providerMessageID, At: time.UnixMilli(at.UnixMilli()).UTC()}}, nil
	}
	old, failed := conditionFailed(err)
	switch {
	case !failed:
		return MarkSentResult{}, fmt.Errorf("store: mark %s sent: %w", l.ID, err)
	case old.has(attrOwner) && old.str(attrOwner) != l.Scope:
		return MarkSentResult{}, fmt.Errorf("mark %s sent for %s: %w", l.ID, l.Scope, ErrOwnerMismatch)
	case old.has(attrSentAt):
		return MarkSentResult{Duplicate: true, First: Sent{ProviderMessageID: old.str(attrProviderID), At: old.millis(attrSentAt)}}, nil
	}
	return MarkSentResult{}, fmt.Errorf("store: mark %s sent: the condition failed on a record in status %q", l.ID, old.str(attrStatus))
}

// MarkFailed records an attempt's failure that a retry may fix, and ends
// the lease so the message's next delivery can be claimed at once.
func (s *Store) MarkFailed(ctx context.Context, l NotificationLease, class, reason string, at time.Time) error {
	return s.markFailure(ctx, l, StateFailed, class, reason, at)
}

// MarkDeadLettered records a failure for good: the message goes to the
// dead-letter queue. The record stays claimable, for a redrive.
func (s *Store) MarkDeadLettered(ctx context.Context, l NotificationLease, class, reason string, at time.Time) error {
	return s.markFailure(ctx, l, StateDeadLettered, class, reason, at)
}

// markFailure is one UpdateItem on the condition that the caller still holds
// the lease and nobody sent the notification: ErrAlreadySent when someone
// did, ErrLeaseLost when another sender holds the lease.
func (s *Store) markFailure(ctx context.Context, l NotificationLease, st State, class, reason string, at time.Time) error {
	if err := checkNotificationLease(l); err != nil {
		return err
	}
	if err := checkText("failure class", class, MaxClassBytes); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	reason = truncate(reason, MaxReasonBytes)
	if err := checkText("failure reason", reason, MaxReasonBytes); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if at.IsZero() {
		return fmt.Errorf("store: mark %s %s: the time is zero", l.ID, st)
	}
	now := s.cfg.Clock()
	update := "SET #status = :st, #fclass = :class, #freason = :reason, #failed = :at, #lease = :zero, #upd = :now, #exp = :exp"
	cond := "#ltok = :tok AND attribute_not_exists(#sent)"
	_, err := s.update(ctx, notificationPK(l.ID), update, cond, map[string]types.AttributeValue{
		":st": str(string(st)), ":class": str(class), ":reason": str(reason), ":at": num(at.UnixMilli()),
		":zero": num(0), ":now": num(now.UnixMilli()), ":exp": num(now.Add(s.cfg.StatusTTL).Unix()), ":tok": str(l.Token),
	}, false)
	if err == nil {
		return nil
	}
	old, failed := conditionFailed(err)
	switch {
	case !failed:
		return fmt.Errorf("store: mark %s %s: %w", l.ID, st, err)
	case old.has(attrSentAt):
		return ErrAlreadySent
	}
	return ErrLeaseLost
}

// Get is notification id's status for the API key scope: ErrNotFound for an
// id that is not this key's (decided from the id, without a request), or
// that the store no longer knows. An id of this key that the sender has not
// recorded yet is StateQueued: the API issued it only after the queue took
// the message. One eventually consistent GetItem.
func (s *Store) Get(ctx context.Context, id, scope string) (Status, error) {
	if err := herald.CheckKeyID(scope); err != nil {
		return Status{}, fmt.Errorf("store: API key id: %w", err)
	}
	if s.cfg.IDs == nil {
		return Status{}, ErrNoIDs
	}
	if !s.cfg.IDs.Owns(scope, id) {
		return Status{}, ErrNotFound
	}
	it, err := s.getItem(ctx, notificationPK(id))
	if err != nil {
		return Status{}, fmt.Errorf("store: get %s: %w", id, err)
	}
	now := s.cfg.Clock()
	if len(it) == 0 {
		// A minted id older than StatusTTL would have a record by now, or
		// had one that expired. A derived id carries no time.
		if issued, ok := IssuedAt(id); ok && now.Sub(issued) > s.cfg.StatusTTL {
			return Status{}, ErrNotFound
		}
		return Status{ID: id, State: StateQueued}, nil
	}
	// DynamoDB deletes an expired item within days, not at once: until then
	// it reads as gone.
	if it.num(TTLAttribute) <= now.Unix() || it.str(attrOwner) != scope {
		return Status{}, ErrNotFound
	}
	st := Status{
		ID:                id,
		State:             State(it.str(attrStatus)),
		Attempts:          int(it.num(attrAttempts)),
		ProviderMessageID: it.str(attrProviderID),
		SentAt:            it.millis(attrSentAt),
		FailureClass:      it.str(attrFailClass),
		FailureReason:     it.str(attrFailReason),
		FailedAt:          it.millis(attrFailedAt),
		UpdatedAt:         it.millis(attrUpdatedAt),
		Recipients:        it.recipients(),
	}
	switch {
	case it.has(attrSentAt):
		// Sent evidence wins over the sender's status: SES feedback (issue
		// 14) may record it before, or without, the sender's MarkSent.
		st.State = StateSent
	case st.State == StateSending && !it.millis(attrLeaseUntil).After(now):
		st.State = StateQueued // the sender's lease ended: the message is back on the queue
	}
	return st, nil
}

func checkNotification(id, scope string) error {
	if err := herald.CheckKeyID(scope); err != nil {
		return fmt.Errorf("store: API key id: %w", err)
	}
	if _, ok := parse(id); !ok {
		return fmt.Errorf("store: notification id %q is not a UUIDv7 or v8 in lowercase", id)
	}
	return nil
}

func checkNotificationLease(l NotificationLease) error {
	if err := checkNotification(l.ID, l.Scope); err != nil {
		return err
	}
	if l.Token == "" {
		return fmt.Errorf("store: the lease of %s has no token (use Claim.Lease)", l.ID)
	}
	return nil
}
