package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"herald/services/internal/herald"
)

// BeginOutcome is what Begin found for an Idempotency-Key.
type BeginOutcome int

const (
	// Started: the caller owns the key; it queues the notification with
	// Begun.ID, then calls Complete, Release or Abandon with Begun.Lease.
	Started BeginOutcome = iota + 1
	// Replay: the same request was completed; answer Begun.Answer again.
	Replay
	// Mismatch: the key was used with another body (422).
	Mismatch
	// InFlight: the first request with this key is still being processed
	// (409); its lease ends at Begun.LeaseUntil.
	InFlight
)

func (o BeginOutcome) String() string {
	return enumName(int(o), "BeginOutcome", "started", "replay", "mismatch", "in-flight")
}

// Answer is the API's answer to a keyed request, kept for replays.
type Answer struct {
	Status int
	Body   []byte
}

// MaxAnswerBytes bounds a stored answer body (an item holds 400 KB).
const MaxAnswerBytes = 64 << 10

// KeyLease is the caller's hold on an Idempotency-Key record.
type KeyLease struct {
	Scope, Key, Token string
}

// Begun is Begin's result.
type Begun struct {
	Outcome BeginOutcome
	// ID is the notification's id (Started, Replay, InFlight).
	ID string
	// Lease, when Started, identifies the caller's hold on the key.
	Lease KeyLease
	// TookOver, when Started: the record was an earlier request's whose
	// lease had ended (its task died, or it Released the key after an
	// unclear outcome). That request may have queued the notification; this
	// one queues it again with the same ID, and the sender sends it once.
	TookOver bool
	// Answer, when Replay, is the stored answer.
	Answer Answer
	// LeaseUntil, when InFlight, is when the other request's lease ends.
	LeaseUntil time.Time
}

// Idempotency record states.
const (
	stateInFlight = "in-flight"
	stateDone     = "done"
)

func keyItemPK(scope, idempotencyKey string) string {
	sum := sha256.Sum256([]byte(idempotencyKey))
	return keyItemPrefix + scope + "#" + hex.EncodeToString(sum[:])
}

// Begin starts a request with an Idempotency-Key for the API key scope:
// one conditional PutItem. The record binds the key to bodyHash (the
// SHA-256 of the request body) for IdempotencyTTL; the caller's lease on it
// lasts lease, after which another request with the same key and body may
// take it over.
func (s *Store) Begin(ctx context.Context, scope, idempotencyKey string, bodyHash [32]byte, lease time.Duration) (Begun, error) {
	if s.cfg.IDs == nil {
		return Begun{}, ErrNoIDs
	}
	id, err := s.cfg.IDs.Derive(scope, idempotencyKey, bodyHash)
	if err != nil {
		return Begun{}, err
	}
	if lease < time.Millisecond {
		return Begun{}, fmt.Errorf("store: lease %s must be at least 1ms", lease)
	}
	token := newToken()
	// At most twice: a stale record whose id differs from the derived one
	// (the id secret was rotated since) is taken over with its own id, so a
	// notification it may have queued and this one are the same.
	for range 2 {
		b, retryWith, err := s.begin(ctx, scope, idempotencyKey, bodyHash, lease, id, token)
		if err != nil || retryWith == "" {
			return b, err
		}
		id = retryWith
	}
	return Begun{}, fmt.Errorf("store: begin key of %s: the record's id kept changing", scope)
}

func (s *Store) begin(ctx context.Context, scope, idempotencyKey string, bodyHash [32]byte, lease time.Duration, id, token string) (b Begun, retryWith string, err error) {
	now := s.cfg.Clock()
	cond := "attribute_not_exists(#pk) OR #exp <= :nows OR (#state = :inflight AND #lease <= :nowms AND #bh = :bh AND #id = :id)"
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			KeyAttribute:   str(keyItemPK(scope, idempotencyKey)),
			attrID:         str(id),
			attrBodyHash:   bin(bodyHash[:]),
			attrState:      str(stateInFlight),
			attrLeaseToken: str(token),
			attrLeaseUntil: num(now.Add(lease).UnixMilli()),
			attrCreatedAt:  num(now.UnixMilli()),
			TTLAttribute:   num(now.Add(s.cfg.IdempotencyTTL).Unix()),
		},
		ConditionExpression:      aws.String(cond),
		ExpressionAttributeNames: names(cond),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":nows": num(now.Unix()), ":nowms": num(now.UnixMilli()),
			":inflight": str(stateInFlight), ":bh": bin(bodyHash[:]), ":id": str(id),
		},
		ReturnValues:                        types.ReturnValueAllOld,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	started := Begun{Outcome: Started, ID: id, Lease: KeyLease{Scope: scope, Key: idempotencyKey, Token: token}}
	if err == nil {
		old := item(out.Attributes)
		started.TookOver = old.has(attrState) && old.num(TTLAttribute) > now.Unix()
		return started, "", nil
	}
	old, ok := conditionFailed(err)
	if !ok {
		return Begun{}, "", fmt.Errorf("store: begin key of %s: %w", scope, err)
	}
	switch {
	case len(old) == 0:
		return Begun{}, "", fmt.Errorf("store: begin key of %s: the condition failed without returning the item", scope)
	case old.str(attrLeaseToken) == token:
		// This call's own write, retried by the SDK after a lost answer.
		return started, "", nil
	case !bytes.Equal(old.bin(attrBodyHash), bodyHash[:]):
		return Begun{Outcome: Mismatch}, "", nil
	case old.str(attrState) == stateDone:
		return Begun{Outcome: Replay, ID: old.str(attrID), Answer: Answer{
			Status: int(old.num(attrAnswerCode)), Body: old.bin(attrAnswerBody),
		}}, "", nil
	case old.str(attrState) == stateInFlight && old.millis(attrLeaseUntil).After(now):
		return Begun{Outcome: InFlight, ID: old.str(attrID), LeaseUntil: old.millis(attrLeaseUntil)}, "", nil
	case old.str(attrState) == stateInFlight && old.str(attrID) != id && old.str(attrID) != "":
		return Begun{}, old.str(attrID), nil
	}
	return Begun{}, "", fmt.Errorf("store: begin key of %s: unexpected record in state %q", scope, old.str(attrState))
}

// Complete stores the answer of a started request, for replays: one
// conditional UpdateItem. ErrLeaseLost: another request took the key over
// (it will complete it).
func (s *Store) Complete(ctx context.Context, l KeyLease, a Answer) error {
	if err := checkKeyLease(l); err != nil {
		return err
	}
	if a.Status < 100 || a.Status > 599 {
		return fmt.Errorf("store: answer status %d is not an HTTP status", a.Status)
	}
	if len(a.Body) > MaxAnswerBytes {
		return fmt.Errorf("store: answer body is %d bytes, over %d", len(a.Body), MaxAnswerBytes)
	}
	update := "SET #state = :done, #acode = :code, #abody = :body, #lease = :zero"
	cond := "#ltok = :tok AND #state = :inflight"
	values := map[string]types.AttributeValue{
		":done": str(stateDone), ":code": num(int64(a.Status)), ":body": bin(a.Body), ":zero": num(0),
		":tok": str(l.Token), ":inflight": str(stateInFlight),
	}
	if len(a.Body) == 0 {
		// DynamoDB refuses an empty binary value.
		update = "SET #state = :done, #acode = :code, #lease = :zero REMOVE #abody"
		delete(values, ":body")
	}
	err := s.updateKey(ctx, l, update, cond, values)
	if old, failed := conditionFailed(err); failed {
		if old.str(attrLeaseToken) == l.Token && old.str(attrState) == stateDone {
			return nil // this call's own write, retried after a lost answer
		}
		return ErrLeaseLost
	}
	return err
}

// Release ends the caller's lease at once and keeps the key bound to its
// body and id: for an outcome the API cannot know (the queue may or may not
// have the message), so that the client's retry takes the key over at once
// and queues the same id again. One conditional UpdateItem.
func (s *Store) Release(ctx context.Context, l KeyLease) error {
	if err := checkKeyLease(l); err != nil {
		return err
	}
	err := s.updateKey(ctx, l, "SET #lease = :zero", "#ltok = :tok AND #state = :inflight", map[string]types.AttributeValue{
		":zero": num(0), ":tok": str(l.Token), ":inflight": str(stateInFlight),
	})
	if _, failed := conditionFailed(err); failed {
		return ErrLeaseLost
	}
	return err
}

// Abandon deletes the record of a started request that queued nothing (a
// definite failure), so a retry starts afresh, with any body. One
// conditional DeleteItem; a record already gone is not an error.
func (s *Store) Abandon(ctx context.Context, l KeyLease) error {
	if err := checkKeyLease(l); err != nil {
		return err
	}
	cond := "#ltok = :tok AND #state = :inflight"
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                           aws.String(s.table),
		Key:                                 key(keyItemPK(l.Scope, l.Key)),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            names(cond),
		ExpressionAttributeValues:           map[string]types.AttributeValue{":tok": str(l.Token), ":inflight": str(stateInFlight)},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if old, failed := conditionFailed(err); failed {
		if len(old) == 0 {
			return nil // gone: this call's own delete, retried, or expired
		}
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("store: abandon key of %s: %w", l.Scope, err)
	}
	return nil
}

func (s *Store) updateKey(ctx context.Context, l KeyLease, update, cond string, values map[string]types.AttributeValue) error {
	_, err := s.update(ctx, keyItemPK(l.Scope, l.Key), update, cond, values, false)
	if _, failed := conditionFailed(err); failed || err == nil {
		return err
	}
	return fmt.Errorf("store: update key of %s: %w", l.Scope, err)
}

func checkKeyLease(l KeyLease) error {
	if err := herald.CheckKeyID(l.Scope); err != nil {
		return fmt.Errorf("store: API key id: %w", err)
	}
	if l.Key == "" || l.Token == "" {
		return errors.New("store: the lease has no key or token (use Begun.Lease)")
	}
	return nil
}
