package dynamolocal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

func num(n int) types.AttributeValue { return &types.AttributeValueMemberN{Value: strconv.Itoa(n)} }

func key(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(pk)}
}

// putNew is a transaction's Put of a new item {pk, v}.
func putNew(pk, v string, rv types.ReturnValuesOnConditionCheckFailure) types.TransactWriteItem {
	return types.TransactWriteItem{Put: &types.Put{
		TableName:                           aws.String(table),
		Item:                                map[string]types.AttributeValue{"pk": str(pk), "v": str(v)},
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: rv,
	}}
}

// seed puts an item {pk, v} for each pk: v.
func seed(t *testing.T, c *dynamodb.Client, items map[string]string) {
	t.Helper()
	for pk, v := range items {
		if _, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{
			TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": str(pk), "v": str(v)},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// value is the item's v, "" when there is no item.
func value(t *testing.T, c *dynamodb.Client, pk string) string {
	t.Helper()
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(table), Key: key(pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if out.Item == nil {
		return ""
	}
	switch v := out.Item["v"].(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	}
	return fmt.Sprintf("item without v: %v", out.Item)
}

func transact(c *dynamodb.Client, items ...types.TransactWriteItem) error {
	_, err := c.TransactWriteItems(context.Background(), &dynamodb.TransactWriteItemsInput{TransactItems: items})
	return err
}

func TestTransactWriteItemsAllApplied(t *testing.T) {
	_, c := startWithTable(t)
	seed(t, c, map[string]string{"upd": "old", "del": "old", "chk": "kept"})
	err := transact(c,
		putNew("a", "1", types.ReturnValuesOnConditionCheckFailureAllOld),
		putNew("b", "2", ""),
		types.TransactWriteItem{Update: &types.Update{
			TableName: aws.String(table), Key: key("upd"), UpdateExpression: aws.String("SET v = :new"),
			ConditionExpression:       aws.String("v = :old"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":new": str("new"), ":old": str("old")},
		}},
		types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(table), Key: key("del"), ConditionExpression: aws.String("attribute_exists(pk)")}},
		types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
			TableName: aws.String(table), Key: key("chk"), ConditionExpression: aws.String("#v = :v"),
			ExpressionAttributeNames: map[string]string{"#v": "v"}, ExpressionAttributeValues: map[string]types.AttributeValue{":v": str("kept")},
		}},
		// A check on a missing item leaves none behind.
		types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
			TableName: aws.String(table), Key: key("absent"), ConditionExpression: aws.String("attribute_not_exists(pk)"),
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	for pk, want := range map[string]string{"a": "1", "b": "2", "upd": "new", "del": "", "chk": "kept", "absent": ""} {
		if got := value(t, c, pk); got != want {
			t.Errorf("item %s: v = %q, want %q", pk, got, want)
		}
	}
}

// One failed condition cancels the transaction: nothing is applied, and
// every action gets its reason, in order, with the item when asked for.
func TestTransactWriteItemsCancelled(t *testing.T) {
	_, c := startWithTable(t)
	seed(t, c, map[string]string{"taken": "first", "upd": "old", "del": "old"})
	err := transact(c,
		putNew("a", "1", types.ReturnValuesOnConditionCheckFailureAllOld),
		putNew("taken", "second", types.ReturnValuesOnConditionCheckFailureAllOld),
		types.TransactWriteItem{Update: &types.Update{
			TableName: aws.String(table), Key: key("upd"), UpdateExpression: aws.String("SET v = :new"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":new": str("new")},
		}},
		types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(table), Key: key("del")}},
		// Evaluated after the first failure too; no item asked for.
		types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
			TableName: aws.String(table), Key: key("upd-missing"), ConditionExpression: aws.String("attribute_exists(pk)"),
		}},
		putNew("c", "3", ""),
	)
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		t.Fatalf("err = %v, want TransactionCanceledException", err)
	}
	want := "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed, None, None, ConditionalCheckFailed, None]"
	if tce.ErrorMessage() != want {
		t.Errorf("message = %q, want %q", tce.ErrorMessage(), want)
	}
	if len(tce.CancellationReasons) != 6 {
		t.Fatalf("%d reasons, want 6: %+v", len(tce.CancellationReasons), tce.CancellationReasons)
	}
	for i, r := range tce.CancellationReasons {
		code := aws.ToString(r.Code)
		switch i {
		case 1:
			if v, _ := r.Item["v"].(*types.AttributeValueMemberS); code != "ConditionalCheckFailed" || v == nil || v.Value != "first" ||
				aws.ToString(r.Message) != "The conditional request failed" {
				t.Errorf("reason 1 = %s %q item %v, want ConditionalCheckFailed with the stored item", code, aws.ToString(r.Message), r.Item)
			}
		case 4:
			if code != "ConditionalCheckFailed" || r.Item != nil {
				t.Errorf("reason 4 = %s item %v, want ConditionalCheckFailed without item", code, r.Item)
			}
		default:
			if code != "None" || r.Message != nil || r.Item != nil {
				t.Errorf("reason %d = %s %v %v, want None", i, code, r.Message, r.Item)
			}
		}
	}
	for pk, want := range map[string]string{"a": "", "taken": "first", "upd": "old", "del": "old", "upd-missing": "", "c": ""} {
		if got := value(t, c, pk); got != want {
			t.Errorf("after the cancellation item %s: v = %q, want %q", pk, got, want)
		}
	}
}

// Invalid transactions are rejected whole, as DynamoDB does, and an action
// on an item dynalite rejects undoes the ones before it.
func TestTransactWriteItemsInvalid(t *testing.T) {
	_, c := startWithTable(t)
	many := make([]types.TransactWriteItem, txMaxActions+1)
	for i := range many {
		many[i] = putNew(fmt.Sprintf("many-%d", i), "x", "")
	}
	cases := []struct {
		name  string
		items []types.TransactWriteItem
		code  string
		msg   string // in the message
	}{
		{"same item twice", []types.TransactWriteItem{putNew("twice", "1", ""), putNew("twice", "2", "")},
			"ValidationException", "Transaction request cannot include multiple operations on one item"},
		{"put and update of one item", []types.TransactWriteItem{putNew("twice", "1", ""), {Update: &types.Update{
			TableName: aws.String(table), Key: key("twice"), UpdateExpression: aws.String("SET v = :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": str("2")},
		}}}, "ValidationException", "multiple operations on one item"},
		{"no actions", []types.TransactWriteItem{}, "ValidationException", "length greater than or equal to 1"},
		{"101 actions", many, "ValidationException", "length less than or equal to 100"},
		{"two kinds in one action", []types.TransactWriteItem{{
			Put:    putNew("two", "1", "").Put,
			Delete: &types.Delete{TableName: aws.String(table), Key: key("other")},
		}}, "ValidationException", "can only contain one of"},
		{"ReturnValuesOnConditionCheckFailure neither ALL_OLD nor NONE", []types.TransactWriteItem{putNew("good", "1", "ALL_NEW")},
			"ValidationException", "enum value set: [ALL_OLD, NONE]"},
		{"a bad item after a good one", []types.TransactWriteItem{putNew("good", "1", ""), {Put: &types.Put{
			TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": num(7)},
		}}}, "ValidationException", "Type mismatch"},
		{"no such table", []types.TransactWriteItem{putNew("good", "1", ""), {Put: &types.Put{
			TableName: aws.String("no-such-table"), Item: key("x"),
		}}}, "ResourceNotFoundException", "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := transact(c, tc.items...)
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != tc.code || !strings.Contains(ae.ErrorMessage(), tc.msg) {
				t.Fatalf("err = %v, want %s with %q", err, tc.code, tc.msg)
			}
			for _, pk := range []string{"twice", "two", "other", "good", "many-0"} {
				if v := value(t, c, pk); v != "" {
					t.Errorf("item %s was written (v %q)", pk, v)
				}
			}
		})
	}
}

// The same ClientRequestToken with the same request answers the first
// outcome without applying it again; with another request, a mismatch.
func TestTransactWriteItemsClientRequestToken(t *testing.T) {
	_, c := startWithTable(t)
	ctx := context.Background()
	incr := func(token, pk string) error {
		_, err := c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
			ClientRequestToken: aws.String(token),
			TransactItems: []types.TransactWriteItem{{Update: &types.Update{
				TableName: aws.String(table), Key: key(pk), UpdateExpression: aws.String("ADD v :one"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1)},
			}}},
		})
		return err
	}
	for range 3 {
		if err := incr("token-1", "counter"); err != nil {
			t.Fatal(err)
		}
	}
	if v := value(t, c, "counter"); v != "1" {
		t.Fatalf("counter = %q after three calls with one token, want 1", v)
	}
	var mismatch *types.IdempotentParameterMismatchException
	if err := incr("token-1", "other"); !errors.As(err, &mismatch) {
		t.Fatalf("another request with the token: err = %v, want IdempotentParameterMismatchException", err)
	}
	if v := value(t, c, "other"); v != "" {
		t.Fatalf("the mismatched request was applied: %q", v)
	}
	if err := incr("token-2", "counter"); err != nil || value(t, c, "counter") != "2" {
		t.Fatalf("a new token: err = %v, counter %s, want 2", err, value(t, c, "counter"))
	}

	// A cancelled transaction's replay is cancelled again, even once its
	// condition would pass: the token's outcome is the first one.
	seed(t, c, map[string]string{"blocked": "x"})
	claim := func() error {
		_, err := c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
			ClientRequestToken: aws.String("token-3"),
			TransactItems:      []types.TransactWriteItem{putNew("blocked", "y", types.ReturnValuesOnConditionCheckFailureAllOld)},
		})
		return err
	}
	var tce *types.TransactionCanceledException
	if err := claim(); !errors.As(err, &tce) {
		t.Fatalf("err = %v, want TransactionCanceledException", err)
	}
	if _, err := c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key("blocked")}); err != nil {
		t.Fatal(err)
	}
	if err := claim(); !errors.As(err, &tce) || len(tce.CancellationReasons) != 1 || tce.CancellationReasons[0].Item == nil {
		t.Fatalf("replay: err = %v, want the first cancellation again, with its item", err)
	}
	if v := value(t, c, "blocked"); v != "" {
		t.Fatalf("the replay was applied: %q", v)
	}
}

func TestTokensBeginFinishExpire(t *testing.T) {
	tk := tokens{byToken: map[string]*tokenEntry{}}
	now := time.Unix(1_000_000, 0)
	h1, h2 := requestHash([]byte(`{"a":1,"b":[2]}`)), requestHash([]byte(`{ "b":[2], "a":1 }`))
	if h1 != h2 {
		t.Fatal("one request in two member orders hashes differently")
	}
	h3 := requestHash([]byte(`{"a":2,"b":[2]}`))
	code := func(a *answer) string {
		if a == nil {
			return ""
		}
		_, c, _ := strings.Cut(string(a.body), "#")
		c, _, _ = strings.Cut(c, `"`)
		return c
	}

	e, replay := tk.begin("t", h1, now)
	if e == nil || replay != nil {
		t.Fatal("a new token was not claimed")
	}
	if _, replay := tk.begin("t", h1, now); code(replay) != "TransactionInProgressException" {
		t.Fatalf("while running: %s, want TransactionInProgressException", code(replay))
	}
	if _, replay := tk.begin("t", h3, now); code(replay) != "IdempotentParameterMismatchException" {
		t.Fatalf("another request while running: %s, want IdempotentParameterMismatchException", code(replay))
	}
	// An error that applied nothing frees the token.
	tk.finish("t", e, awsError(http.StatusInternalServerError, "InternalServerError", "x", nil), false, now)
	e, replay = tk.begin("t", h1, now)
	if e == nil || replay != nil {
		t.Fatal("the token was not freed by a failure")
	}
	ok := jsonAnswer(http.StatusOK, nil, map[string]any{})
	tk.finish("t", e, ok, true, now)
	if _, replay := tk.begin("t", h1, now.Add(tokenWindow-time.Second)); replay == nil || replay.status != http.StatusOK {
		t.Fatalf("within the window: %+v, want the first answer", replay)
	}
	if e, replay := tk.begin("t", h3, now.Add(tokenWindow)); e == nil || replay != nil {
		t.Fatal("after the window the token was not new again")
	}
	if len(tk.byToken) != 1 || len(tk.done) != 0 {
		t.Fatalf("%d tokens, %d done kept, want 1 (running), 0", len(tk.byToken), len(tk.done))
	}

	// Bounded: past maxTokens the oldest go.
	for i := range maxTokens + 10 {
		tok := "n" + strconv.Itoa(i)
		e, _ := tk.begin(tok, h1, now)
		tk.finish(tok, e, ok, true, now)
	}
	if len(tk.done) != maxTokens {
		t.Fatalf("%d tokens kept, want at most %d", len(tk.done), maxTokens)
	}
	if e, _ := tk.begin("n0", h3, now); e == nil {
		t.Fatal("the oldest token was kept past the bound")
	}
}

// Transactions and single writes on the same items never interleave: money
// moves between accounts by transactions that read and write with version
// conditions (many cancelled, so undone), while single UpdateItems deposit
// into the same accounts. No deposit may be lost by an undo, nor any
// transfer half applied.
func TestTransactWriteItemsIsolation(t *testing.T) {
	s, c := startWithTable(t)
	ctx := context.Background()
	const accounts, start, workers, rounds = 4, 100, 6, 30
	for i := range accounts {
		if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
			"pk": str(fmt.Sprintf("acct-%d", i)), "bal": num(start), "ver": num(0),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(pk string) (bal, ver int, err error) {
		out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key(pk), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return 0, 0, err
		}
		bal, _ = strconv.Atoi(out.Item["bal"].(*types.AttributeValueMemberN).Value)
		ver, _ = strconv.Atoi(out.Item["ver"].(*types.AttributeValueMemberN).Value)
		return bal, ver, nil
	}
	putIf := func(pk string, bal, ver int) types.TransactWriteItem {
		return types.TransactWriteItem{Put: &types.Put{
			TableName:                 aws.String(table),
			Item:                      map[string]types.AttributeValue{"pk": str(pk), "bal": num(bal), "ver": num(ver + 1)},
			ConditionExpression:       aws.String("ver = :ver"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":ver": num(ver)},
		}}
	}
	before := s.Stats()
	var (
		mu                             sync.Mutex
		deposits, committed, cancelled int
		wg                             sync.WaitGroup
		errs                           = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				a, b := fmt.Sprintf("acct-%d", from), fmt.Sprintf("acct-%d", to)
				if w%3 == 0 { // a depositor
					if _, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
						TableName: aws.String(table), Key: key(a), UpdateExpression: aws.String("ADD bal :one, ver :one"),
						ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1)},
					}); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					deposits++
					mu.Unlock()
					continue
				}
				balA, verA, err := read(a)
				if err == nil {
					var balB, verB int
					if balB, verB, err = read(b); err == nil {
						amt := 1 + rng.IntN(5)
						err = transact(c, putIf(a, balA-amt, verA), putIf(b, balB+amt, verB))
					}
				}
				var tce *types.TransactionCanceledException
				mu.Lock()
				switch {
				case err == nil:
					committed++
				case errors.As(err, &tce):
					cancelled++
				}
				mu.Unlock()
				if err != nil && !errors.As(err, &tce) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for i := range accounts {
		bal, _, err := read(fmt.Sprintf("acct-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		total += bal
	}
	t.Logf("%d transfers committed, %d cancelled, %d deposits; %s", committed, cancelled, deposits, s.Stats().Sub(before))
	if want := accounts*start + deposits; total != want {
		t.Fatalf("the accounts hold %d, want %d (start %d + %d deposits)", total, want, accounts*start, deposits)
	}
	if committed == 0 {
		t.Fatal("no transfer committed: the test proves nothing")
	}
}

func TestTransactWriteItemsFaultsAndStats(t *testing.T) {
	s, c := startWithTable(t)
	seed(t, c, map[string]string{"taken": "x"})
	before := s.Stats()
	if err := transact(c, putNew("a", "1", ""), putNew("b", "2", "")); err != nil {
		t.Fatal(err)
	}
	var tce *types.TransactionCanceledException
	if err := transact(c, putNew("c", "1", ""), putNew("taken", "2", "")); !errors.As(err, &tce) {
		t.Fatalf("err = %v, want TransactionCanceledException", err)
	}
	if err := s.SetFault(FaultThrottle, time.Minute); err != nil {
		t.Fatal(err)
	}
	var ae smithy.APIError
	if err := transact(c, putNew("d", "1", "")); !errors.As(err, &ae) || ae.ErrorCode() != "ThrottlingException" {
		t.Fatalf("during the fault: err = %v, want ThrottlingException", err)
	}
	if err := s.SetFault(FaultThrottle, 0); err != nil {
		t.Fatal(err)
	}
	d := s.Stats().Sub(before)
	if got := d.Operations["TransactWriteItems"]; got != (OpStats{Requests: 3, Errors: 2, ConditionalFailures: 1}) {
		t.Errorf("TransactWriteItems = %+v, want 3 requests, 2 errors, 1 conditional failure", got)
	}
	if d.String() != "TransactWriteItems=3" {
		t.Errorf("stats %q, want only TransactWriteItems=3 (the proxy's own calls to dynalite are not counted)", d.String())
	}
	for pk, want := range map[string]string{"a": "1", "b": "2", "c": "", "d": ""} {
		if got := value(t, c, pk); got != want {
			t.Errorf("item %s: v = %q, want %q", pk, got, want)
		}
	}
}

// BatchWriteItem reaches dynalite and counts as one request.
func TestBatchWriteItemPassesThrough(t *testing.T) {
	s, c := startWithTable(t)
	seed(t, c, map[string]string{"gone": "x"})
	before := s.Stats()
	out, err := c.BatchWriteItem(context.Background(), &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: {
		{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": str("p1"), "v": str("1")}}},
		{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": str("p2"), "v": str("2")}}},
		{DeleteRequest: &types.DeleteRequest{Key: key("gone")}},
	}}})
	if err != nil || len(out.UnprocessedItems) != 0 {
		t.Fatalf("err = %v, unprocessed %v", err, out.UnprocessedItems)
	}
	if d := s.Stats().Sub(before); d.String() != "BatchWriteItem=1" {
		t.Errorf("stats %q, want BatchWriteItem=1", d.String())
	}
	for pk, want := range map[string]string{"p1": "1", "p2": "2", "gone": ""} {
		if got := value(t, c, pk); got != want {
			t.Errorf("item %s: v = %q, want %q", pk, got, want)
		}
	}
	// Duplicate keys are dynalite's to reject (and must not deadlock the
	// proxy's locks).
	_, err = c.BatchWriteItem(context.Background(), &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: {
		{PutRequest: &types.PutRequest{Item: key("dup")}}, {PutRequest: &types.PutRequest{Item: key("dup")}},
	}}})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		t.Fatalf("duplicate keys: err = %v, want ValidationException", err)
	}
}

// BenchmarkWrites compares, through the proxy, the item writes a second
// that the emulator takes as single PutItems, as BatchWriteItems of 25,
// and as transactions of n conditional Puts (one request from the proxy to
// dynalite for the n writes). Four clients at once; items/s is the figure.
// dynalite's JIT warms up over the first seconds: compare runs of a few
// seconds each.
//
//	go test -run '^$' -bench Writes -benchtime 5s ./services/devstack/dynamolocal
func BenchmarkWrites(b *testing.B) {
	s := start(b)
	if err := s.CreateTable(context.Background(), Table{Name: table, PartitionKey: "pk", TTLAttribute: "expiresAt"}); err != nil {
		b.Fatal(err)
	}
	c := s.Client()
	var seq atomic.Int64
	item := func() map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"pk": str("bench-" + strconv.FormatInt(seq.Add(1), 10)), "v": str("x")}
	}
	ctx := context.Background()
	cases := []struct {
		name  string
		items int
		write func() error
	}{
		{"PutItem", 1, func() error {
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item(), ConditionExpression: aws.String("attribute_not_exists(pk)")})
			return err
		}},
		{"PutItem-unconditional", 1, func() error {
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item()})
			return err
		}},
		{"BatchWriteItem-25", 25, func() error {
			reqs := make([]types.WriteRequest, 25)
			for i := range reqs {
				reqs[i] = types.WriteRequest{PutRequest: &types.PutRequest{Item: item()}}
			}
			out, err := c.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
			if err == nil && len(out.UnprocessedItems) > 0 {
				err = errors.New("unprocessed items")
			}
			return err
		}},
	}
	for _, n := range []int{1, 25, 100} {
		cases = append(cases, struct {
			name  string
			items int
			write func() error
		}{fmt.Sprintf("TransactWriteItems-%d", n), n, func() error {
			acts := make([]types.TransactWriteItem, n)
			for i := range acts {
				acts[i] = types.TransactWriteItem{Put: &types.Put{
					TableName: aws.String(table), Item: item(), ConditionExpression: aws.String("attribute_not_exists(pk)"),
				}}
			}
			return transact(c, acts...)
		}})
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := tc.write(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*tc.items)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

// The launcher's route is the proxy's own: clients cannot reach it.
func TestOpsRouteIsNotProxied(t *testing.T) {
	s := start(t)
	resp, err := http.Post(s.Endpoint+opsPath, "application/json", strings.NewReader(`[{"op":"DeleteItem","data":{}}]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}
