package dynamolocal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StatsPath is where the proxy answers GET with its Stats as JSON (not a
// DynamoDB operation, so not counted).
const StatsPath = "/_dynamolocal/stats"

// maxBody is DynamoDB's (and dynalite's) largest request.
const maxBody = 16 << 20

// targetPrefix is the X-Amz-Target of DynamoDB's current API version.
const targetPrefix = "DynamoDB_20120810."

// Stats counts the requests the proxy served, by operation, since start.
type Stats struct {
	Operations map[string]OpStats `json:"operations"`
}

// OpStats counts one operation's requests. DynamoDB bills a write whose
// condition failed like one that succeeded, so Requests is what a table
// would be charged for.
type OpStats struct {
	Requests int64 `json:"requests"`
	// Errors are answers with an HTTP status of 400 or more, conditional
	// check failures and injected faults included.
	Errors int64 `json:"errors"`
	// ConditionalFailures are ConditionalCheckFailedException answers, and
	// TransactionCanceledExceptions with a ConditionalCheckFailed reason.
	ConditionalFailures int64 `json:"conditionalFailures"`
}

// Total is the sum of the operations' requests.
func (s Stats) Total() int64 {
	var n int64
	for _, o := range s.Operations {
		n += o.Requests
	}
	return n
}

// Sub is what happened between an earlier snapshot and s.
func (s Stats) Sub(earlier Stats) Stats {
	d := Stats{Operations: map[string]OpStats{}}
	for op, o := range s.Operations {
		e := earlier.Operations[op]
		if o.Requests-e.Requests == 0 {
			continue
		}
		d.Operations[op] = OpStats{
			Requests:            o.Requests - e.Requests,
			Errors:              o.Errors - e.Errors,
			ConditionalFailures: o.ConditionalFailures - e.ConditionalFailures,
		}
	}
	return d
}

// Add is s and o together (two endpoints' counts).
func (s Stats) Add(o Stats) Stats {
	sum := Stats{Operations: make(map[string]OpStats, len(s.Operations)+len(o.Operations))}
	for _, x := range []Stats{s, o} {
		for op, c := range x.Operations {
			t := sum.Operations[op]
			t.Requests += c.Requests
			t.Errors += c.Errors
			t.ConditionalFailures += c.ConditionalFailures
			sum.Operations[op] = t
		}
	}
	return sum
}

// String is "PutItem=2 UpdateItem=3", by operation name.
func (s Stats) String() string {
	ops := make([]string, 0, len(s.Operations))
	for op := range s.Operations {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = op + "=" + strconv.FormatInt(s.Operations[op].Requests, 10)
	}
	return strings.Join(parts, " ")
}

// FaultMode is how the proxy fails DynamoDB operations during a fault.
type FaultMode string

const (
	// FaultThrottle answers 400 ThrottlingException, as an on-demand table
	// over its limits does (the SDK retries it, then gives up).
	FaultThrottle FaultMode = "throttle"
	// FaultUnavailable answers 500 InternalServerError.
	FaultUnavailable FaultMode = "unavailable"
	// FaultHang holds each request without an answer until the client gives
	// up or the fault ends: a timeout.
	FaultHang FaultMode = "hang"
)

// SetFault fails every DynamoDB operation in mode for d (the stats path
// still answers); d <= 0 ends a fault.
func (s *Server) SetFault(mode FaultMode, d time.Duration) error {
	switch mode {
	case FaultThrottle, FaultUnavailable, FaultHang:
	default:
		return fmt.Errorf("dynamolocal: unknown fault mode %q", mode)
	}
	s.proxy.setFault(mode, time.Now().Add(d))
	return nil
}

// Stats is a snapshot of the proxy's counts.
func (s *Server) Stats() Stats { return s.proxy.snapshot() }

// proxy fixes dynalite where it departs from DynamoDB (see the package
// comment), counts and injects faults.
type proxy struct {
	upstream string
	client   *http.Client
	// locks serialises the operations on one item: writes, GetItem, and
	// transactions, which hold the locks of all their items.
	locks keyLocks
	// readAll is held shared by transactions and exclusively by the reads
	// of many items (Query, Scan, BatchGetItem), which thus see no
	// transaction half applied, as DynamoDB's read-committed isolation.
	readAll sync.RWMutex
	tokens  tokens

	mu         sync.Mutex // guards the fields below
	stats      map[string]*OpStats
	keys       map[string][]string // table -> key attribute names
	ttl        map[string]string   // table -> TTL attribute, when enabled
	fault      FaultMode
	faultUntil time.Time
	faultEnd   chan struct{} // closed when a fault is replaced or cleared
}

func newProxy(upstream string) *proxy {
	return &proxy{
		upstream: upstream,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}},
		locks:    keyLocks{held: map[string]*keyLock{}},
		tokens:   tokens{byToken: map[string]*tokenEntry{}},
		stats:    map[string]*OpStats{},
		keys:     map[string][]string{},
		ttl:      map[string]string{},
		faultEnd: make(chan struct{}),
	}
}

func (p *proxy) setFault(mode FaultMode, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.faultEnd)
	p.fault, p.faultUntil, p.faultEnd = mode, until, make(chan struct{})
}

// activeFault is the fault now, with a channel closed when it is replaced.
func (p *proxy) activeFault() (FaultMode, time.Time, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == "" || !time.Now().Before(p.faultUntil) {
		return "", time.Time{}, nil
	}
	return p.fault, p.faultUntil, p.faultEnd
}

func (p *proxy) count(op string, f func(*OpStats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.stats[op]
	if o == nil {
		o = &OpStats{}
		p.stats[op] = o
	}
	f(o)
}

func (p *proxy) snapshot() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Operations: make(map[string]OpStats, len(p.stats))}
	for op, o := range p.stats {
		s.Operations[op] = *o
	}
	return s
}

// answer is a response on its way back to the client.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == StatsPath {
		b, _ := json.Marshal(p.snapshot())
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "request body unreadable or over 16 MB", http.StatusRequestEntityTooLarge)
		return
	}
	if r.URL.Path == opsPath {
		http.NotFound(w, r) // the proxy's own route at dynalite
		return
	}
	op, isOp := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if r.Method != http.MethodPost || !isOp {
		// Health checks and the like: dynalite answers them itself.
		writeAnswer(w, p.forward(r.Context(), r, body))
		return
	}
	p.count(op, func(o *OpStats) { o.Requests++ })
	a := p.serveOp(r, op, body)
	if a.status >= 400 {
		// A ConditionalCheckFailedException, or a cancelled transaction
		// with a ConditionalCheckFailed reason.
		ccf := bytes.Contains(a.body, []byte("ConditionalCheckFailed"))
		p.count(op, func(o *OpStats) {
			o.Errors++
			if ccf {
				o.ConditionalFailures++
			}
		})
	}
	writeAnswer(w, a)
}

func (p *proxy) serveOp(r *http.Request, op string, body []byte) answer {
	if mode, until, ended := p.activeFault(); mode != "" {
		return p.faulted(r.Context(), mode, until, ended)
	}
	switch op {
	case "UpdateTimeToLive":
		return p.updateTTL(r.Context(), body)
	case "DescribeTimeToLive":
		if a, ok := p.describeTTL(body); ok {
			return a
		}
	case "CreateTable":
		p.learnKeys(body)
	case "PutItem", "UpdateItem", "DeleteItem":
		return p.write1(r, op, body)
	case "GetItem":
		return p.read1(r, body)
	case "BatchWriteItem":
		return p.batchWrite(r, body)
	case "Query", "Scan", "BatchGetItem":
		p.readAll.Lock()
		defer p.readAll.Unlock()
	case "TransactWriteItems":
		return p.transactWrite(r.Context(), body)
	}
	return p.forward(r.Context(), r, body)
}

func (p *proxy) faulted(ctx context.Context, mode FaultMode, until time.Time, ended <-chan struct{}) answer {
	switch mode {
	case FaultThrottle:
		return awsError(http.StatusBadRequest, "ThrottlingException", "Rate of requests exceeds the allowed throughput (dynamolocal fault)", nil)
	case FaultUnavailable:
		return awsError(http.StatusInternalServerError, "InternalServerError", "Internal server error (dynamolocal fault)", nil)
	}
	// FaultHang: hold the request until the client gives up or the fault
	// ends, then answer as DynamoDB would after an internal timeout.
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-ended:
	}
	return awsError(http.StatusInternalServerError, "InternalServerError", "request timed out (dynamolocal fault)", nil)
}

// write1 passes one single-item write on under its item's lock, and adds
// the item to a conditional check failure when the request asked for it.
func (p *proxy) write1(r *http.Request, op string, body []byte) answer {
	var in struct {
		TableName                           string
		Key                                 map[string]json.RawMessage
		Item                                map[string]json.RawMessage
		ReturnValuesOnConditionCheckFailure string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		// dynalite answers the malformed request as DynamoDB does.
		return p.forward(r.Context(), r, body)
	}
	key := in.Key
	if op == "PutItem" {
		names, err := p.keyNames(r.Context(), in.TableName)
		if err != nil {
			return p.forward(r.Context(), r, body)
		}
		key = itemKey(names, in.Item)
	}
	lockID, err := lockName(in.TableName, key)
	if err != nil {
		return p.forward(r.Context(), r, body)
	}
	unlock := p.locks.lock(lockID)
	defer unlock()
	a := p.forward(r.Context(), r, body)
	if in.ReturnValuesOnConditionCheckFailure != "ALL_OLD" || a.status != http.StatusBadRequest ||
		!bytes.Contains(a.body, []byte("#ConditionalCheckFailedException")) {
		return a
	}
	item, err := p.getItem(r.Context(), in.TableName, key)
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: read the item for ReturnValuesOnConditionCheckFailure: "+err.Error(), nil)
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(a.body, &fields) != nil {
		return a
	}
	if item != nil {
		fields["Item"] = item
	}
	return jsonAnswer(a.status, a.header, fields)
}

// read1 passes a GetItem on under its item's lock: it sees no transaction
// half applied, as DynamoDB's GetItem is serializable with transactions.
func (p *proxy) read1(r *http.Request, body []byte) answer {
	var in struct {
		TableName string
		Key       map[string]json.RawMessage
	}
	if json.Unmarshal(body, &in) != nil {
		return p.forward(r.Context(), r, body)
	}
	lockID, err := lockName(in.TableName, in.Key)
	if err != nil {
		return p.forward(r.Context(), r, body)
	}
	unlock := p.locks.lock(lockID)
	defer unlock()
	return p.forward(r.Context(), r, body)
}

// batchWrite passes a BatchWriteItem on under the locks of all its items:
// each of its writes is serializable with transactions, as in DynamoDB
// (the batch as a whole is not atomic there, nor needs to be here).
func (p *proxy) batchWrite(r *http.Request, body []byte) answer {
	var in struct {
		RequestItems map[string][]struct {
			PutRequest    *struct{ Item map[string]json.RawMessage }
			DeleteRequest *struct{ Key map[string]json.RawMessage }
		}
	}
	if json.Unmarshal(body, &in) != nil {
		return p.forward(r.Context(), r, body)
	}
	var names []string
	for table, reqs := range in.RequestItems {
		for _, req := range reqs {
			var key map[string]json.RawMessage
			switch {
			case req.PutRequest != nil:
				keyAttrs, err := p.keyNames(r.Context(), table)
				if err != nil {
					return p.forward(r.Context(), r, body) // dynalite says what is wrong
				}
				key = itemKey(keyAttrs, req.PutRequest.Item)
			case req.DeleteRequest != nil:
				key = req.DeleteRequest.Key
			default:
				continue
			}
			name, err := lockName(table, key)
			if err != nil {
				return p.forward(r.Context(), r, body)
			}
			names = append(names, name)
		}
	}
	unlock := p.locks.lockAll(names)
	defer unlock()
	return p.forward(r.Context(), r, body)
}

// itemKey is the item's key attributes (those it has).
func itemKey(names []string, item map[string]json.RawMessage) map[string]json.RawMessage {
	key := make(map[string]json.RawMessage, len(names))
	for _, n := range names {
		if v, ok := item[n]; ok {
			key[n] = v
		}
	}
	return key
}

// lockName is the table and the key's attributes in a canonical form.
func lockName(table string, key map[string]json.RawMessage) (string, error) {
	compact := make(map[string]json.RawMessage, len(key))
	for k, v := range key {
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return "", err
		}
		compact[k] = b.Bytes()
	}
	b, err := json.Marshal(compact) // map keys sorted
	return table + "\x00" + string(b), err
}

// keyNames is the table's key attributes, learnt from CreateTable or read
// with DescribeTable.
func (p *proxy) keyNames(ctx context.Context, table string) ([]string, error) {
	p.mu.Lock()
	names, ok := p.keys[table]
	p.mu.Unlock()
	if ok {
		return names, nil
	}
	b, err := p.call(ctx, "DescribeTable", map[string]any{"TableName": table})
	if err != nil {
		return nil, err
	}
	p.learnKeys(b) // DescribeTable's Table has the same KeySchema
	p.mu.Lock()
	defer p.mu.Unlock()
	if names, ok = p.keys[table]; !ok {
		return nil, fmt.Errorf("no key schema for table %s", table)
	}
	return names, nil
}

// learnKeys records the key schema of a CreateTable request or of a
// DescribeTable answer.
func (p *proxy) learnKeys(body []byte) {
	type schema struct {
		TableName string
		KeySchema []struct{ AttributeName string }
	}
	var in struct {
		schema
		Table *schema
	}
	if json.Unmarshal(body, &in) != nil {
		return
	}
	s := in.schema
	if in.Table != nil {
		s = *in.Table
	}
	if s.TableName == "" || len(s.KeySchema) == 0 {
		return
	}
	names := make([]string, len(s.KeySchema))
	for i, k := range s.KeySchema {
		names[i] = k.AttributeName
	}
	p.mu.Lock()
	p.keys[s.TableName] = names
	p.mu.Unlock()
}

// getItem reads an item strongly consistently; nil when there is none.
func (p *proxy) getItem(ctx context.Context, table string, key map[string]json.RawMessage) (json.RawMessage, error) {
	b, err := p.call(ctx, "GetItem", map[string]any{"TableName": table, "Key": key, "ConsistentRead": true})
	if err != nil {
		return nil, err
	}
	var out struct{ Item json.RawMessage }
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out.Item, nil
}

func (p *proxy) updateTTL(ctx context.Context, body []byte) answer {
	var in struct {
		TableName               string
		TimeToLiveSpecification *struct {
			AttributeName string
			Enabled       *bool
		}
	}
	if json.Unmarshal(body, &in) != nil || in.TableName == "" || in.TimeToLiveSpecification == nil ||
		in.TimeToLiveSpecification.AttributeName == "" || in.TimeToLiveSpecification.Enabled == nil {
		return awsError(http.StatusBadRequest, "ValidationException", "TableName and TimeToLiveSpecification (AttributeName, Enabled) are required", nil)
	}
	if _, err := p.call(ctx, "DescribeTable", map[string]any{"TableName": in.TableName}); err != nil {
		return awsError(http.StatusBadRequest, "ResourceNotFoundException", "Requested resource not found: Table: "+in.TableName+" not found", nil)
	}
	spec := in.TimeToLiveSpecification
	p.mu.Lock()
	if *spec.Enabled {
		p.ttl[in.TableName] = spec.AttributeName
	} else {
		delete(p.ttl, in.TableName)
	}
	p.mu.Unlock()
	return jsonAnswer(http.StatusOK, nil, map[string]any{"TimeToLiveSpecification": map[string]any{
		"AttributeName": spec.AttributeName, "Enabled": *spec.Enabled,
	}})
}

// describeTTL answers for a table whose TTL the proxy turned on; other
// tables go to dynalite (which answers DISABLED, or not found).
func (p *proxy) describeTTL(body []byte) (answer, bool) {
	var in struct{ TableName string }
	if json.Unmarshal(body, &in) != nil {
		return answer{}, false
	}
	p.mu.Lock()
	attr, ok := p.ttl[in.TableName]
	p.mu.Unlock()
	if !ok {
		return answer{}, false
	}
	return jsonAnswer(http.StatusOK, nil, map[string]any{"TimeToLiveDescription": map[string]any{
		"TimeToLiveStatus": "ENABLED", "AttributeName": attr,
	}}), true
}

// upstreamError is an answer of dynalite's other than 200.
type upstreamError struct {
	op     string
	answer answer
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("%s: status %d: %s", e.op, e.answer.status, e.answer.body)
}

// call sends one operation of the proxy's own to dynalite and returns the
// body of a 200 answer; any other answer is an *upstreamError.
func (p *proxy) call(ctx context.Context, op string, in any) ([]byte, error) {
	a := p.callRaw(ctx, op, in)
	if a.status != http.StatusOK {
		return nil, &upstreamError{op: op, answer: a}
	}
	return a.body, nil
}

// callRaw sends one operation of the proxy's own to dynalite and returns
// its answer, or an InternalServerError when there was none.
func (p *proxy) callRaw(ctx context.Context, op string, in any) answer {
	body, err := json.Marshal(in)
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: "+op+": "+err.Error(), nil)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.upstream+"/", bytes.NewReader(body))
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: "+op+": "+err.Error(), nil)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	// dynalite wants a signature's shape; it checks none.
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=local/20200101/"+Region+"/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
	return p.do(req)
}

// forward passes the client's request to dynalite as it came.
func (p *proxy) forward(ctx context.Context, r *http.Request, body []byte) answer {
	req, err := http.NewRequestWithContext(ctx, r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", err.Error(), nil)
	}
	req.Header = r.Header.Clone()
	return p.do(req)
}

// do sends a request to dynalite.
func (p *proxy) do(req *http.Request) answer {
	resp, err := p.client.Do(req)
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: dynalite: "+err.Error(), nil)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", "dynamolocal: dynalite: "+err.Error(), nil)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func writeAnswer(w http.ResponseWriter, a answer) {
	for k, vs := range a.header {
		if k == "Content-Length" || k == "Connection" || k == "Transfer-Encoding" {
			continue
		}
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// jsonAnswer is a DynamoDB JSON answer with the CRC32 the SDK checks.
func jsonAnswer(status int, header http.Header, v any) answer {
	b, err := json.Marshal(v)
	if err != nil {
		return awsError(http.StatusInternalServerError, "InternalServerError", err.Error(), nil)
	}
	a := rawAnswer(status, b)
	for k, vs := range header {
		if a.header.Get(k) == "" {
			a.header[k] = vs
		}
	}
	return a
}

// rawAnswer is a DynamoDB JSON answer of a body already encoded.
func rawAnswer(status int, body []byte) answer {
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	return answer{status: status, header: h, body: body}
}

// awsError is an error answer in DynamoDB's JSON protocol.
func awsError(status int, code, message string, header http.Header) answer {
	return jsonAnswer(status, header, map[string]string{
		"__type":  "com.amazonaws.dynamodb.v20120810#" + code,
		"message": message,
	})
}

// keyLocks is one mutex per item, made on demand and dropped when unused.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]*keyLock
}

type keyLock struct {
	mu    sync.Mutex
	users int
}

// lockAll takes the locks of all the names, in sorted order so that two
// callers never wait on each other.
func (l *keyLocks) lockAll(names []string) (unlock func()) {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	unlocks := make([]func(), len(names))
	for i, n := range names {
		unlocks[i] = l.lock(n)
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

func (l *keyLocks) lock(name string) (unlock func()) {
	l.mu.Lock()
	k := l.held[name]
	if k == nil {
		k = &keyLock{}
		l.held[name] = k
	}
	k.users++
	l.mu.Unlock()
	k.mu.Lock()
	return func() {
		k.mu.Unlock()
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.held, name)
		}
		l.mu.Unlock()
	}
}
