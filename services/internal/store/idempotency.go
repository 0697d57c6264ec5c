package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
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

// Begun is Begin's result.
type Begun struct {
	Outcome BeginOutcome
	// ID is the notification's id (Started, Replay, InFlight).
	ID string
	// Lease, when Started, identifies the caller's hold on the key. When
	// the record was an earlier request's whose lease had ended (its task
	// died, or it Released the key after an unclear outcome), that request
	// may have queued the notification; this one queues it again with the
	// same ID, and the sender sends it once. Begin does not say which: a
	// transaction returns no old item when it succeeds.
	Lease KeyLease
	// Answer, when Replay, is the stored answer.
	Answer Answer
	// LeaseUntil, when InFlight, is when the other request's lease ends.
	LeaseUntil time.Time
}

// KeyLease is the caller's hold on an Idempotency-Key record.
type KeyLease struct {
	Scope, Key, Token string
	// What Begin wrote, for CompleteMany's full-item Put.
	rec keyRecord
}

// ID is the notification id the lease's record holds.
func (l KeyLease) ID() string { return l.rec.id }

// keyRecord is what a Started request wrote into its record and what stays
// in it when it is completed.
type keyRecord struct {
	id, pk     string
	bodyHash   [32]byte
	createdMs  int64
	expires    int64 // epoch s
	leaseUntil time.Time
	// item is the record Begin wrote: the done record takes the values it
	// keeps from it (the SDK only reads them), not new copies.
	item map[string]types.AttributeValue
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

// beginCond lets a Begin write the record when there is none, when it
// expired, or when it is a stale in-flight record of the same request (its
// lease over, the same body and id): a take-over.
const beginCond = "attribute_not_exists(#pk) OR #exp <= :nows OR (#state = :inflight AND #lease <= :nowms AND #bh = :bh AND #id = :id)"

// beginNames are beginCond's names, made once: every Put of a transaction
// carries them, and the SDK only reads them; so are the values that are
// the same in every record.
var (
	beginNames    = names(beginCond)
	beginCondExpr = aws.String(beginCond)
	inFlightValue = str(stateInFlight)
	doneValue     = str(stateDone)
	zeroValue     = num(0)
)

// Begin starts a request with an Idempotency-Key for the API key scope:
// one conditional PutItem. The record binds the key to bodyHash (the
// SHA-256 of the request body) for IdempotencyTTL; the caller's lease on it
// lasts lease, after which another request with the same key and body may
// take it over.
func (s *Store) Begin(ctx context.Context, scope, idempotencyKey string, bodyHash [32]byte, lease time.Duration) (Begun, error) {
	r := s.BeginMany(ctx, lease, []BeginRequest{{Scope: scope, Key: idempotencyKey, BodyHash: bodyHash}})
	return r[0].Begun, r[0].Err
}

// BeginRequest is one request's Idempotency-Key, for BeginMany.
type BeginRequest struct {
	Scope, Key string
	BodyHash   [32]byte
}

// BeginResult is BeginMany's answer to one request: Err when the store
// could not decide it (as Begin's error).
type BeginResult struct {
	Begun
	Err error
}

// MaxTransactItems is DynamoDB's most actions in one TransactWriteItems.
const MaxTransactItems = 100

// maxTxRounds bounds the transactions of one BeginMany; the requests still
// undecided after them (cancelled by a conflict every time, or sharing one
// key) are begun one by one, with Begin's single PutItem.
const maxTxRounds = 3

// BeginMany is Begin for the requests of several callers at once, with the
// same lease: their conditional Puts in one TransactWriteItems (at most
// MaxTransactItems, no two on one record), each with Begin's item and
// condition. When it succeeds every request is Started. When a condition
// fails DynamoDB cancels the whole transaction and names each failed Put
// with the record it found (ALL_OLD): those requests get their outcome from
// it exactly as Begin decides it, and the others go into one more
// transaction. Each cancelled round therefore decides at least one request
// (or ends in the single writes after maxTxRounds). Requests with the same
// key go in separate rounds. One request alone is Begin's single PutItem.
//
// The SDK retries a transaction after a lost answer with the same
// ClientRequestToken, which DynamoDB answers with the first attempt's
// success for 10 minutes; a Put that finds its own lease token (a retry
// after that, or of a single PutItem) is the caller's own write: Started.
func (s *Store) BeginMany(ctx context.Context, lease time.Duration, reqs []BeginRequest) []BeginResult {
	res := make([]BeginResult, len(reqs))
	var todo []*beginning
	for i, r := range reqs {
		b := &beginning{req: r, res: &res[i], token: newToken()}
		switch {
		case s.cfg.IDs == nil:
			b.res.Err = ErrNoIDs
		case lease < time.Millisecond:
			b.res.Err = fmt.Errorf("store: lease %s must be at least 1ms", lease)
		default:
			b.id, b.res.Err = s.cfg.IDs.Derive(r.Scope, r.Key, r.BodyHash)
		}
		if b.res.Err == nil {
			b.pk = keyItemPK(r.Scope, r.Key)
			todo = append(todo, b)
		}
	}
	for round := 0; round < maxTxRounds && len(todo) > 1; round++ {
		take, rest := distinctKeys(todo, MaxTransactItems)
		if len(take) < 2 {
			break
		}
		todo = append(s.beginTx(ctx, take, lease), rest...)
	}
	if len(todo) == 1 {
		s.beginOne(ctx, todo[0], lease) // Begin, and low load: no goroutine
		return res
	}
	var wg sync.WaitGroup
	for _, b := range todo {
		wg.Go(func() { s.beginOne(ctx, b, lease) })
	}
	wg.Wait()
	return res
}

// beginning is one request of BeginMany on its way.
type beginning struct {
	req   BeginRequest
	pk    string
	id    string // derived, or the stale record's (retried)
	token string
	// idChanged: already retried with a stale record's id once.
	idChanged bool
	res       *BeginResult
}

// distinctKeys takes at most max requests, no two with the same key, in
// order; the rest keep their order.
func distinctKeys(todo []*beginning, max int) (take, rest []*beginning) {
	seen := map[string]bool{}
	for _, b := range todo {
		if len(take) < max && !seen[b.pk] {
			seen[b.pk] = true
			take = append(take, b)
			continue
		}
		rest = append(rest, b)
	}
	return take, rest
}

// beginOne decides one request with single PutItems: at most twice, as a
// stale record whose id differs from the derived one (the id secret was
// rotated since) is taken over with its own id, so that a notification it
// may have queued and this one are the same.
func (s *Store) beginOne(ctx context.Context, b *beginning, lease time.Duration) {
	for range 2 {
		put, rec := s.beginPut(s.beginValuesAt(s.cfg.Clock(), lease), b)
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                           put.TableName,
			Item:                                put.Item,
			ConditionExpression:                 put.ConditionExpression,
			ExpressionAttributeNames:            put.ExpressionAttributeNames,
			ExpressionAttributeValues:           put.ExpressionAttributeValues,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		if err == nil {
			b.started(rec)
			return
		}
		old, ok := conditionFailed(err)
		if !ok {
			b.res.Err = fmt.Errorf("store: begin key of %s: %w", b.req.Scope, err)
			return
		}
		if retry := b.decide(old, rec); !retry {
			return
		}
	}
	b.res.Err = fmt.Errorf("store: begin key of %s: the record's id kept changing", b.req.Scope)
}

// beginTx makes one TransactWriteItems of the requests' Puts and returns
// the requests it did not decide.
func (s *Store) beginTx(ctx context.Context, take []*beginning, lease time.Duration) (again []*beginning) {
	at := s.beginValuesAt(s.cfg.Clock(), lease)
	items := make([]types.TransactWriteItem, len(take))
	puts := make([]types.Put, len(take))
	recs := make([]keyRecord, len(take))
	for i, b := range take {
		puts[i], recs[i] = s.beginPut(at, b)
		puts[i].ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
		items[i] = types.TransactWriteItem{Put: &puts[i]}
	}
	_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items}, writeBodies)
	if err == nil {
		for i, b := range take {
			b.started(recs[i])
		}
		return nil
	}
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) || len(tce.CancellationReasons) != len(take) {
		if tce != nil {
			err = fmt.Errorf("%w (%d reasons for %d items)", err, len(tce.CancellationReasons), len(take))
		}
		for _, b := range take {
			b.res.Err = fmt.Errorf("store: begin key of %s (in a transaction of %d): %w", b.req.Scope, len(take), err)
		}
		return nil
	}
	for i, b := range take {
		reason := tce.CancellationReasons[i]
		if aws.ToString(reason.Code) != "ConditionalCheckFailed" {
			// None (another Put failed), TransactionConflict (another
			// transaction or write on the item), throttling: try again.
			again = append(again, b)
			continue
		}
		if b.decide(item(reason.Item), recs[i]) {
			again = append(again, b)
		}
	}
	return again
}

// beginValues are the values of Begin's Puts that depend on the time of
// the write only: made once for all the Puts of a transaction.
type beginValues struct {
	now                          time.Time
	leaseUntil                   time.Time
	expires                      int64
	table                        *string
	nows, nowms, until, expiring types.AttributeValue
}

func (s *Store) beginValuesAt(now time.Time, lease time.Duration) *beginValues {
	v := &beginValues{
		now: now, leaseUntil: now.Add(lease), expires: now.Add(s.cfg.IdempotencyTTL).Unix(),
		table: aws.String(s.table), nows: num(now.Unix()), nowms: num(now.UnixMilli()),
	}
	v.until, v.expiring = num(v.leaseUntil.UnixMilli()), num(v.expires)
	return v
}

// beginPut is Begin's conditional Put of the request's record, and what it
// writes.
func (s *Store) beginPut(at *beginValues, b *beginning) (types.Put, keyRecord) {
	rec := keyRecord{
		id: b.id, pk: b.pk, bodyHash: b.req.BodyHash, createdMs: at.now.UnixMilli(),
		expires: at.expires, leaseUntil: at.leaseUntil,
	}
	id, bh := str(b.id), bin(b.req.BodyHash[:])
	rec.item = map[string]types.AttributeValue{
		KeyAttribute:   str(b.pk),
		attrID:         id,
		attrBodyHash:   bh,
		attrState:      inFlightValue,
		attrLeaseToken: str(b.token),
		attrLeaseUntil: at.until,
		attrCreatedAt:  at.nowms, // the write's time
		TTLAttribute:   at.expiring,
	}
	return types.Put{
		TableName:                at.table,
		Item:                     rec.item,
		ConditionExpression:      beginCondExpr,
		ExpressionAttributeNames: beginNames,
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":nows": at.nows, ":nowms": at.nowms, ":inflight": inFlightValue, ":bh": bh, ":id": id,
		},
	}, rec
}

func (b *beginning) started(rec keyRecord) {
	b.res.Begun = Begun{Outcome: Started, ID: rec.id, Lease: KeyLease{Scope: b.req.Scope, Key: b.req.Key, Token: b.token, rec: rec}}
}

// decide sets the request's outcome from the record its failed condition
// found, and reports whether to write again: with the stale record's id,
// once.
func (b *beginning) decide(old item, rec keyRecord) (again bool) {
	now := time.UnixMilli(rec.createdMs) // the write's time
	scope := b.req.Scope
	switch {
	case len(old) == 0:
		b.res.Err = fmt.Errorf("store: begin key of %s: the condition failed without returning the item", scope)
	case old.str(attrLeaseToken) == b.token:
		// This call's own write, retried after a lost answer.
		b.started(rec)
	case !bytes.Equal(old.bin(attrBodyHash), b.req.BodyHash[:]):
		b.res.Begun = Begun{Outcome: Mismatch}
	case old.str(attrState) == stateDone:
		b.res.Begun = Begun{Outcome: Replay, ID: old.str(attrID), Answer: Answer{
			Status: int(old.num(attrAnswerCode)), Body: old.bin(attrAnswerBody),
		}}
	case old.str(attrState) == stateInFlight && old.millis(attrLeaseUntil).After(now):
		b.res.Begun = Begun{Outcome: InFlight, ID: old.str(attrID), LeaseUntil: old.millis(attrLeaseUntil)}
	case old.str(attrState) == stateInFlight && old.str(attrID) != b.id && old.str(attrID) != "":
		if b.idChanged {
			b.res.Err = fmt.Errorf("store: begin key of %s: the record's id kept changing", scope)
			return false
		}
		b.id, b.idChanged = old.str(attrID), true
		return true
	default:
		b.res.Err = fmt.Errorf("store: begin key of %s: unexpected record in state %q", scope, old.str(attrState))
	}
	return false
}

// Complete stores the answer of a started request, for replays: one
// conditional UpdateItem. ErrLeaseLost: another request took the key over
// (it will complete it).
func (s *Store) Complete(ctx context.Context, l KeyLease, a Answer) error {
	if err := checkCompletion(l, a); err != nil {
		return err
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

func checkCompletion(l KeyLease, a Answer) error {
	if err := checkKeyLease(l); err != nil {
		return err
	}
	if a.Status < 100 || a.Status > 599 {
		return fmt.Errorf("store: answer status %d is not an HTTP status", a.Status)
	}
	if len(a.Body) > MaxAnswerBytes {
		return fmt.Errorf("store: answer body is %d bytes, over %d", len(a.Body), MaxAnswerBytes)
	}
	return nil
}

// Completion is one started request's answer, for CompleteMany.
type Completion struct {
	Lease  KeyLease
	Answer Answer
}

// MaxBatchWrite is DynamoDB's most items in one BatchWriteItem.
const MaxBatchWrite = 25

// Bounds of CompleteMany's retries of unprocessed items.
const (
	maxUnprocessedTries = 4
	unprocessedBackoff  = 10 * time.Millisecond
)

// MaxClockSkew is how far apart the clocks of the API's tasks may be, for
// CompleteMany's unconditional writes (EC2's time sync keeps them within a
// millisecond; this is a wide margin).
const MaxClockSkew = time.Second

// ErrLeaseEnding: CompleteMany did not write the answer of a lease that
// ends before its write surely lands; the record is left in flight for the
// lease to end, and a retry takes it over.
var ErrLeaseEnding = errors.New("store: the lease ends before the answer could surely be written; left for a retry to take over")

// CompleteMany is Complete for the requests of several callers at once:
// their done records as unconditional full-item Puts in BatchWriteItem
// calls (MaxBatchWrite each), the same record Complete leaves (id, body
// hash, creation and expiry as Begin wrote them, the answer, the lease
// token, lease 0). One completion alone is Complete's conditional
// UpdateItem. DESIGN.md ("CompleteMany's unconditional Put") says why the
// Put needs no condition; it holds only while the lease is live, so ctx
// must have a deadline and a lease that ends before it (plus MaxClockSkew)
// is not written (ErrLeaseEnding). Unprocessed items are retried
// maxUnprocessedTries times in all; an item still unprocessed gets an
// error, and its record stays in flight until its lease ends.
func (s *Store) CompleteMany(ctx context.Context, cs []Completion) []error {
	errs := make([]error, len(cs))
	deadline, hasDeadline := ctx.Deadline()
	var todo []int
	for i, c := range cs {
		switch err := checkCompletion(c.Lease, c.Answer); {
		case err != nil:
			errs[i] = err
		case c.Lease.rec.id == "":
			errs[i] = errors.New("store: the lease holds no record (use Begun.Lease)")
		default:
			todo = append(todo, i)
		}
	}
	if len(todo) == 1 {
		i := todo[0]
		errs[i] = s.Complete(ctx, cs[i].Lease, cs[i].Answer)
		return errs
	}
	// The lease's time left on the store's clock against the most the
	// writes may take.
	now, budget := s.cfg.Clock(), time.Until(deadline)+MaxClockSkew
	var live []int
	for _, i := range todo {
		switch {
		case !hasDeadline:
			errs[i] = errors.New("store: CompleteMany needs a context with a deadline")
		case cs[i].Lease.rec.leaseUntil.Sub(now) < budget:
			errs[i] = ErrLeaseEnding
		default:
			live = append(live, i)
		}
	}
	var wg sync.WaitGroup
	for len(live) > 0 {
		chunk := make([]int, 0, min(len(live), MaxBatchWrite))
		seen := make(map[string]bool, cap(chunk))
		rest := live[:0:0]
		for _, i := range live {
			pk := cs[i].Lease.rec.pk
			if len(chunk) < MaxBatchWrite && !seen[pk] {
				seen[pk] = true
				chunk = append(chunk, i)
				continue
			}
			rest = append(rest, i)
		}
		live = rest
		if len(live) == 0 {
			s.completeBatch(ctx, cs, chunk, errs) // the last, or only, batch in this goroutine
			break
		}
		wg.Go(func() { s.completeBatch(ctx, cs, chunk, errs) })
	}
	wg.Wait()
	return errs
}

// completeBatch writes the done records of cs[chunk] in one BatchWriteItem
// and its retries of unprocessed items, and sets errs of those not written.
func (s *Store) completeBatch(ctx context.Context, cs []Completion, chunk []int, errs []error) {
	byPK := make(map[string]int, len(chunk))
	reqs := make([]types.WriteRequest, len(chunk))
	puts := make([]types.PutRequest, len(chunk))
	for j, i := range chunk {
		byPK[cs[i].Lease.rec.pk] = i
		puts[j].Item = doneItem(cs[i])
		reqs[j] = types.WriteRequest{PutRequest: &puts[j]}
	}
	for try := 0; len(reqs) > 0; try++ {
		if try == maxUnprocessedTries {
			for _, r := range reqs {
				i := byPK[item(r.PutRequest.Item).str(KeyAttribute)]
				errs[i] = fmt.Errorf("store: complete key of %s: unprocessed after %d tries (throttled); the record stays in flight until its lease ends", cs[i].Lease.Scope, try)
			}
			return
		}
		if try > 0 {
			select {
			case <-time.After(unprocessedBackoff << (try - 1)):
			case <-ctx.Done():
				for _, r := range reqs {
					i := byPK[item(r.PutRequest.Item).str(KeyAttribute)]
					errs[i] = fmt.Errorf("store: complete key of %s: unprocessed: %w", cs[i].Lease.Scope, ctx.Err())
				}
				return
			}
		}
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{s.table: reqs}}, writeBodies)
		if err != nil {
			for _, r := range reqs {
				i := byPK[item(r.PutRequest.Item).str(KeyAttribute)]
				errs[i] = fmt.Errorf("store: complete key of %s (in a batch of %d): %w", cs[i].Lease.Scope, len(reqs), err)
			}
			return
		}
		reqs = out.UnprocessedItems[s.table]
	}
}

// doneItem is the whole record of a completed request: Complete's result.
// The key, id, body hash, lease token, creation and expiry are the values
// Begin wrote (the same token as c.Lease's).
func doneItem(c Completion) map[string]types.AttributeValue {
	begun := c.Lease.rec.item
	it := make(map[string]types.AttributeValue, 10)
	for _, name := range [...]string{KeyAttribute, attrID, attrBodyHash, attrLeaseToken, attrCreatedAt, TTLAttribute} {
		it[name] = begun[name]
	}
	it[attrState] = doneValue
	it[attrLeaseUntil] = zeroValue
	it[attrAnswerCode] = statusValue(c.Answer.Status)
	if len(c.Answer.Body) > 0 {
		it[attrAnswerBody] = bin(c.Answer.Body) // DynamoDB refuses an empty binary value
	}
	return it
}

// acceptedValue is the answer status of a queued notification, the one
// nearly every done record holds, made once.
var acceptedValue = num(202)

func statusValue(status int) types.AttributeValue {
	if status == 202 {
		return acceptedValue
	}
	return num(int64(status))
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
