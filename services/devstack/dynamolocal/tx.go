package dynamolocal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// DynamoDB's limits on TransactWriteItems.
const (
	txMaxActions  = 100
	txMaxTokenLen = 36
	// tokenWindow is how long a ClientRequestToken stays valid after its
	// request completed.
	tokenWindow = 10 * time.Minute
)

// maxTokens bounds the tokens remembered: past it the oldest are dropped
// before their window ends (a replay of one is then applied again).
const maxTokens = 100_000

// txTimeout bounds one transaction's calls to dynalite. The calls do not
// follow the client's context: once begun, a transaction is applied or
// undone whole, even when its client has gone.
const txTimeout = 30 * time.Second

// txKinds are the actions of TransactWriteItems, by their member name.
var txKinds = []string{"ConditionCheck", "Put", "Delete", "Update"}

// txMembers are the members of each action that go on to dynalite's
// single-item write: others, unknown to DynamoDB's action (AttributeUpdates,
// Expected, an UpdateExpression in a ConditionCheck ...), are ignored, as
// DynamoDB ignores members it does not know.
var txMembers = map[string][]string{
	"ConditionCheck": {"TableName", "Key", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues"},
	"Put":            {"TableName", "Item", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues"},
	"Delete":         {"TableName", "Key", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues"},
	"Update":         {"TableName", "Key", "UpdateExpression", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues"},
}

// txAction is one action of a transaction.
type txAction struct {
	kind   string
	table  string
	key    map[string]json.RawMessage
	lock   string
	fields map[string]json.RawMessage // the action's members, as sent
	allOld bool                       // ReturnValuesOnConditionCheckFailure is ALL_OLD
}

// txOutcome is what applying one action did.
type txOutcome struct {
	applied bool            // the write happened (to be undone on cancellation)
	old     json.RawMessage // the item before it, nil when there was none
	failed  bool            // its condition failed
	item    json.RawMessage // with failed: the item, when the action asked for it
}

// transactWrite emulates TransactWriteItems, which dynalite lacks: each
// action becomes dynalite's conditional single-item write (returning the
// old item) under the proxy's locks of all the transaction's items, and
// when a condition fails, the writes already done are undone.
func (p *proxy) transactWrite(ctx context.Context, body []byte) answer {
	var in struct {
		TransactItems      []map[string]json.RawMessage
		ClientRequestToken *string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return awsError(http.StatusBadRequest, "SerializationException", "dynamolocal: TransactWriteItems: "+err.Error(), nil)
	}
	switch n := len(in.TransactItems); {
	case in.TransactItems == nil:
		return validation("Value null at 'transactItems' failed to satisfy constraint: Member must not be null")
	case n < 1:
		return validation("Value '[]' at 'transactItems' failed to satisfy constraint: Member must have length greater than or equal to 1")
	case n > txMaxActions:
		return validation(fmt.Sprintf("Value of %d items at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to %d", n, txMaxActions))
	}
	token := ""
	if in.ClientRequestToken != nil {
		token = *in.ClientRequestToken
		if len(token) < 1 || len(token) > txMaxTokenLen {
			return validation(fmt.Sprintf("Value '%s' at 'clientRequestToken' failed to satisfy constraint: Member must have length between 1 and %d", token, txMaxTokenLen))
		}
	}
	acts := make([]*txAction, len(in.TransactItems))
	seen := make(map[string]bool, len(acts))
	for i, item := range in.TransactItems {
		a, bad := p.parseAction(ctx, i, item)
		if bad != nil {
			return *bad
		}
		if seen[a.lock] {
			return awsError(http.StatusBadRequest, "ValidationException", "Transaction request cannot include multiple operations on one item", nil)
		}
		seen[a.lock] = true
		acts[i] = a
	}

	var entry *tokenEntry
	if token != "" {
		e, replay := p.tokens.begin(token, requestHash(body), time.Now())
		if replay != nil {
			return *replay
		}
		entry = e
	}
	// A transaction in progress may leave its items half applied: the
	// reads that cover many items wait for it (readAll), those of one item
	// for its lock.
	names := make([]string, len(acts))
	for i, a := range acts {
		names[i] = a.lock
	}
	unlock := p.locks.lockAll(names)
	p.readAll.RLock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txTimeout)
	a, final := p.applyTx(ctx, acts)
	cancel()
	p.readAll.RUnlock()
	unlock()
	if entry != nil {
		p.tokens.finish(token, entry, a, final, time.Now())
	}
	return a
}

func validation(msg string) answer {
	return awsError(http.StatusBadRequest, "ValidationException", "1 validation error detected: "+msg, nil)
}

// parseAction reads the i-th action; bad is the answer to a malformed one.
func (p *proxy) parseAction(ctx context.Context, i int, item map[string]json.RawMessage) (_ *txAction, bad *answer) {
	fail := func(a answer) (*txAction, *answer) { return nil, &a }
	a := &txAction{}
	for _, kind := range txKinds {
		if v, ok := item[kind]; ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			if a.kind != "" {
				a.kind = ""
				break
			}
			a.kind = kind
		}
	}
	if a.kind == "" {
		return fail(awsError(http.StatusBadRequest, "ValidationException", "TransactItems can only contain one of Check, Put, Update or Delete", nil))
	}
	var f struct {
		TableName                           string
		Key, Item                           map[string]json.RawMessage
		ConditionExpression                 string
		ReturnValuesOnConditionCheckFailure string
	}
	if err := json.Unmarshal(item[a.kind], &f); err != nil {
		return fail(awsError(http.StatusBadRequest, "SerializationException", fmt.Sprintf("dynamolocal: TransactWriteItems: action %d: %v", i+1, err), nil))
	}
	if err := json.Unmarshal(item[a.kind], &a.fields); err != nil {
		return fail(awsError(http.StatusBadRequest, "SerializationException", fmt.Sprintf("dynamolocal: TransactWriteItems: action %d: %v", i+1, err), nil))
	}
	missing := ""
	switch {
	case f.TableName == "":
		missing = "tableName"
	case a.kind == "Put" && f.Item == nil:
		missing = "item"
	case a.kind != "Put" && f.Key == nil:
		missing = "key"
	case a.kind == "ConditionCheck" && f.ConditionExpression == "":
		missing = "conditionExpression"
	}
	if missing != "" {
		return fail(validation(fmt.Sprintf("Value null at 'transactItems.%d.member.%s.%s' failed to satisfy constraint: Member must not be null",
			i+1, lowerFirst(a.kind), missing)))
	}
	switch rv := f.ReturnValuesOnConditionCheckFailure; rv {
	case "", "ALL_OLD", "NONE":
	default:
		return fail(validation(fmt.Sprintf("Value '%s' at 'transactItems.%d.member.%s.returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]",
			rv, i+1, lowerFirst(a.kind))))
	}
	a.table, a.key = f.TableName, f.Key
	a.allOld = f.ReturnValuesOnConditionCheckFailure == "ALL_OLD"
	if a.kind == "Put" {
		names, err := p.keyNames(ctx, a.table)
		if err != nil {
			if up, ok := err.(*upstreamError); ok {
				return fail(up.answer) // dynalite's answer: no such table, a bad name
			}
			return fail(awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: "+err.Error(), nil))
		}
		a.key = itemKey(names, f.Item)
	}
	lock, err := lockName(a.table, a.key)
	if err != nil {
		return fail(awsError(http.StatusBadRequest, "SerializationException", fmt.Sprintf("dynamolocal: TransactWriteItems: action %d's key: %v", i+1, err), nil))
	}
	a.lock = lock
	return a, nil
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

// applyTx applies all the actions, also those after a condition that
// failed (so each gets its reason), and undoes them all when one failed.
// final says the answer is the transaction's outcome (done, or cancelled)
// rather than an error that changed nothing.
func (p *proxy) applyTx(ctx context.Context, acts []*txAction) (_ answer, final bool) {
	// The actions are on distinct items, all locked: dynalite runs them at
	// once, in one request.
	writes := make([]opRequest, len(acts))
	for i, a := range acts {
		writes[i] = a.write()
	}
	results, err := p.ops(ctx, writes)
	if err != nil {
		// dynalite may have applied some: they cannot be told apart.
		return awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: transaction: "+err.Error(), nil), false
	}
	outs := make([]txOutcome, len(acts))
	var bad *answer
	var reads []opRequest // the items of failed conditions that asked for them
	var readFor []int
	for i, res := range results {
		switch {
		case res.status == http.StatusOK:
			var out struct{ Attributes json.RawMessage }
			if err := json.Unmarshal(res.body, &out); err != nil {
				a := awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: dynalite's "+writes[i].Op+" answer: "+err.Error(), nil)
				bad = &a
				continue
			}
			outs[i] = txOutcome{applied: true, old: out.Attributes}
		case res.status == http.StatusBadRequest && bytes.Contains(res.body, []byte("#ConditionalCheckFailedException")):
			outs[i] = txOutcome{failed: true}
			if acts[i].allOld {
				reads = append(reads, opRequest{Op: "GetItem", Data: map[string]any{"TableName": acts[i].table, "Key": acts[i].key, "ConsistentRead": true}})
				readFor = append(readFor, i)
			}
		case bad == nil:
			// DynamoDB rejects an invalid transaction whole, before any
			// condition: so does this, conditions failed or not (the first
			// invalid action's error).
			bad = &results[i]
		}
	}
	if bad == nil && len(reads) > 0 {
		items, err := p.ops(ctx, reads)
		for j, res := range items {
			var out struct{ Item json.RawMessage }
			if res.status != http.StatusOK || json.Unmarshal(res.body, &out) != nil {
				err = fmt.Errorf("GetItem: status %d: %s", res.status, res.body)
				break
			}
			outs[readFor[j]].item = out.Item
		}
		if err != nil {
			a := awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: read the items for ReturnValuesOnConditionCheckFailure: "+err.Error(), nil)
			bad = &a
		}
	}
	cancelled := slices.ContainsFunc(outs, func(o txOutcome) bool { return o.failed })
	// Undo what was applied when the transaction fails; when it commits,
	// still remove the key-only items that ConditionChecks of missing items
	// wrote to check their condition against.
	var undo []opRequest
	for i, a := range acts {
		if o := outs[i]; o.applied && (bad != nil || cancelled || a.kind == "ConditionCheck") &&
			(a.kind != "ConditionCheck" || o.old == nil) { // a check of an item changed nothing
			undo = append(undo, a.restore(o.old))
		}
	}
	if len(undo) > 0 {
		results, err := p.ops(ctx, undo)
		for _, res := range results {
			if res.status != http.StatusOK {
				err = fmt.Errorf("status %d: %s", res.status, res.body)
				break
			}
		}
		if err != nil {
			return awsError(http.StatusInternalServerError, "InternalServerError",
				"dynamolocal: undoing a transaction failed, the table may hold part of it: "+err.Error(), nil), false
		}
	}
	switch {
	case bad != nil:
		return *bad, false
	case cancelled:
		return cancellation(outs), true
	}
	return jsonAnswer(http.StatusOK, nil, map[string]any{}), true
}

// write is the action as dynalite's conditional single-item write that
// returns the old item. A ConditionCheck is an UpdateItem without updates:
// it leaves an existing item as it is, and writes a key-only item in place
// of a missing one, which the caller removes.
func (a *txAction) write() opRequest {
	data := map[string]any{"ReturnValues": "ALL_OLD"}
	for _, k := range txMembers[a.kind] {
		if v, ok := a.fields[k]; ok {
			data[k] = v
		}
	}
	op := map[string]string{"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem", "ConditionCheck": "UpdateItem"}[a.kind]
	return opRequest{Op: op, Data: data}
}

// restore writes old back in place of a's item, or deletes the item when
// there was none.
func (a *txAction) restore(old json.RawMessage) opRequest {
	if old != nil {
		return opRequest{Op: "PutItem", Data: map[string]any{"TableName": a.table, "Item": old}}
	}
	return opRequest{Op: "DeleteItem", Data: map[string]any{"TableName": a.table, "Key": a.key}}
}

// opRequest is one operation for the launcher's opsPath.
type opRequest struct {
	Op   string         `json:"op"`
	Data map[string]any `json:"data"`
}

// ops runs single-item operations at dynalite, all at once in one request
// (launcher.js), and returns their answers in order.
func (p *proxy) ops(ctx context.Context, reqs []opRequest) ([]answer, error) {
	body, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.upstream+opsPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	a := p.do(req)
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("dynalite's %s: status %d: %s", opsPath, a.status, a.body)
	}
	var out []struct {
		Status int             `json:"status"`
		Body   json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		return nil, fmt.Errorf("dynalite's %s: %w", opsPath, err)
	}
	if len(out) != len(reqs) {
		return nil, fmt.Errorf("dynalite's %s: %d answers to %d operations", opsPath, len(out), len(reqs))
	}
	answers := make([]answer, len(out))
	for i, o := range out {
		answers[i] = rawAnswer(o.Status, o.Body)
	}
	return answers, nil
}

// cancellation is DynamoDB's TransactionCanceledException: one reason per
// action, in order.
func cancellation(outs []txOutcome) answer {
	type reason struct {
		Code    string          `json:"Code"`
		Message string          `json:"Message,omitempty"`
		Item    json.RawMessage `json:"Item,omitempty"`
	}
	reasons := make([]reason, len(outs))
	codes := make([]string, len(outs))
	for i, o := range outs {
		reasons[i] = reason{Code: "None"}
		if o.failed {
			reasons[i] = reason{Code: "ConditionalCheckFailed", Message: "The conditional request failed", Item: o.item}
		}
		codes[i] = reasons[i].Code
	}
	return jsonAnswer(http.StatusBadRequest, nil, map[string]any{
		"__type":              "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
		"Message":             "Transaction cancelled, please refer cancellation reasons for specific reasons [" + strings.Join(codes, ", ") + "]",
		"CancellationReasons": reasons,
	})
}

// requestHash identifies a request by its content, whatever the order of
// its JSON members.
func requestHash(body []byte) [sha256.Size]byte {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return sha256.Sum256(body)
	}
	canon, err := json.Marshal(v) // object members sorted
	if err != nil {
		return sha256.Sum256(body)
	}
	return sha256.Sum256(canon)
}

// tokens are the ClientRequestTokens of the last tokenWindow, with the
// outcome of their transaction.
type tokens struct {
	mu      sync.Mutex
	byToken map[string]*tokenEntry
	done    []doneToken // completed entries, oldest first
}

type tokenEntry struct {
	hash    [sha256.Size]byte
	running bool
	result  answer
}

type doneToken struct {
	token   string
	entry   *tokenEntry
	expires time.Time
}

// begin claims token for a request. replay is the answer when the token
// was used already: the first request's outcome, or an error when that
// request differed or is still running.
func (t *tokens) begin(token string, hash [sha256.Size]byte, now time.Time) (_ *tokenEntry, replay *answer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if e, ok := t.byToken[token]; ok {
		var a answer
		switch {
		case e.hash != hash:
			a = awsError(http.StatusBadRequest, "IdempotentParameterMismatchException",
				"The request uses the same client token as a previous, but non-identical request. Do not reuse a client token with different requests, unless the requests are identical.", nil)
		case e.running:
			// The SDK retries this one.
			a = awsError(http.StatusBadRequest, "TransactionInProgressException", "Transaction from previous request is still in progress", nil)
		default:
			a = e.result
		}
		return nil, &a
	}
	e := &tokenEntry{hash: hash, running: true}
	t.byToken[token] = e
	return e, nil
}

// finish records the outcome of token's request; an answer that is not
// final (an error that applied nothing) frees the token instead.
func (t *tokens) finish(token string, e *tokenEntry, a answer, final bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !final {
		delete(t.byToken, token)
		return
	}
	e.running, e.result = false, a
	t.done = append(t.done, doneToken{token: token, entry: e, expires: now.Add(tokenWindow)})
	t.expire(now)
}

// expire drops the entries past their window, and the oldest beyond
// maxTokens.
func (t *tokens) expire(now time.Time) {
	n := 0
	for n < len(t.done) && (!now.Before(t.done[n].expires) || len(t.done)-n > maxTokens) {
		if d := t.done[n]; t.byToken[d.token] == d.entry {
			delete(t.byToken, d.token)
		}
		n++
	}
	clear(t.done[:n]) // for the collector; append reallocates the rest
	t.done = t.done[n:]
}
