package dynamolocal

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// table is the tests' table (DynamoDB names have 3 to 255 characters).
const table = "herald-test"

// start runs an emulator for one test, stopped when the test ends.
func start(t testing.TB) *Server {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Root: root})
	switch {
	case errors.Is(err, ErrNotInstalled):
		t.Skipf("skipped: %v", err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() { closeChecked(t, s) })
	return s
}

// closeChecked stops s and fails t when it did not stop cleanly.
func closeChecked(t testing.TB, s *Server) {
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func startWithTable(t *testing.T) (*Server, *dynamodb.Client) {
	t.Helper()
	s := start(t)
	if err := s.CreateTable(context.Background(), Table{Name: table, PartitionKey: "pk", TTLAttribute: "expiresAt"}); err != nil {
		t.Fatal(err)
	}
	// No SDK retries: each call is one request, and faults show at once.
	return s, s.Client(func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
}

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func TestStartServesAndCloseStops(t *testing.T) {
	s, c := startWithTable(t)
	ctx := context.Background()
	if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item:      map[string]types.AttributeValue{"pk": str("a"), "v": str("1")},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": str("a")}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := out.Item["v"].(*types.AttributeValueMemberS); v == nil || v.Value != "1" {
		t.Fatalf("item = %v, want v=1", out.Item)
	}
	ttl, err := c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(d.AttributeName) != "expiresAt" {
		t.Fatalf("TTL = %s on %q, want ENABLED on expiresAt", d.TimeToLiveStatus, aws.ToString(d.AttributeName))
	}
	resp, err := http.Get(s.Endpoint + StatsPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stats: status %d", resp.StatusCode)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Exited():
	default:
		t.Fatal("Close returned before dynalite exited")
	}
	if _, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": str("a")}}); err == nil {
		t.Fatal("the emulator still answers after Close")
	}
}

func TestStartWithoutDynalite(t *testing.T) {
	_, err := Start(context.Background(), Config{Root: t.TempDir()})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
}

// A failed conditional write that asked for ALL_OLD carries the item, for
// each of the three single-item writes, as DynamoDB's does; one that did
// not ask carries none.
func TestConditionCheckFailureCarriesTheItem(t *testing.T) {
	_, c := startWithTable(t)
	ctx := context.Background()
	key := map[string]types.AttributeValue{"pk": str("k")}
	if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item:      map[string]types.AttributeValue{"pk": str("k"), "owner": str("first")},
	}); err != nil {
		t.Fatal(err)
	}
	notExists := aws.String("attribute_not_exists(pk)")
	cases := map[string]func(rv types.ReturnValuesOnConditionCheckFailure) error{
		"PutItem": func(rv types.ReturnValuesOnConditionCheckFailure) error {
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{
				TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": str("k"), "owner": str("second")},
				ConditionExpression: notExists, ReturnValuesOnConditionCheckFailure: rv,
			})
			return err
		},
		"UpdateItem": func(rv types.ReturnValuesOnConditionCheckFailure) error {
			_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName: aws.String(table), Key: key, UpdateExpression: aws.String("SET #o = :o"),
				ExpressionAttributeNames: map[string]string{"#o": "owner"}, ExpressionAttributeValues: map[string]types.AttributeValue{":o": str("second")},
				ConditionExpression: notExists, ReturnValuesOnConditionCheckFailure: rv,
			})
			return err
		},
		"DeleteItem": func(rv types.ReturnValuesOnConditionCheckFailure) error {
			_, err := c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
				TableName: aws.String(table), Key: key,
				ConditionExpression: aws.String("#o = :o"), ExpressionAttributeNames: map[string]string{"#o": "owner"},
				ExpressionAttributeValues: map[string]types.AttributeValue{":o": str("second")}, ReturnValuesOnConditionCheckFailure: rv,
			})
			return err
		},
	}
	for name, write := range cases {
		t.Run(name, func(t *testing.T) {
			var ccf *types.ConditionalCheckFailedException
			if err := write(types.ReturnValuesOnConditionCheckFailureAllOld); !errors.As(err, &ccf) {
				t.Fatalf("err = %v, want ConditionalCheckFailedException", err)
			}
			if o, _ := ccf.Item["owner"].(*types.AttributeValueMemberS); o == nil || o.Value != "first" {
				t.Fatalf("failure's item = %v, want the stored item (owner first)", ccf.Item)
			}
			if err := write(types.ReturnValuesOnConditionCheckFailureNone); !errors.As(err, &ccf) || ccf.Item != nil {
				t.Fatalf("without ALL_OLD: err = %v, item %v; want a failure without item", err, ccf.Item)
			}
		})
	}
}

// The workarounds can go when dynalite itself returns the item of a failed
// condition and knows UpdateTimeToLive or TransactWriteItems: this test
// then fails.
func TestDynaliteStillNeedsTheProxy(t *testing.T) {
	s, _ := startWithTable(t)
	direct := dynamodb.New(dynamodb.Options{
		Region: Region, BaseEndpoint: aws.String(s.proxy.upstream), Credentials: s.Client().Options().Credentials, RetryMaxAttempts: 1,
	})
	ctx := context.Background()
	item := map[string]types.AttributeValue{"pk": str("x")}
	if _, err := direct.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatal(err)
	}
	_, err := direct.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("err = %v, want ConditionalCheckFailedException", err)
	}
	if ccf.Item != nil {
		t.Error("dynalite now returns the item of a failed condition: drop the proxy's ALL_OLD read")
	}
	_, err = direct.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("expiresAt"), Enabled: aws.Bool(true)},
	})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnknownOperationException" {
		t.Errorf("dynalite's UpdateTimeToLive: err = %v; it knows the action now: drop the proxy's TTL answers", err)
	}
	_, err = direct.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{{Put: &types.Put{TableName: aws.String(table), Item: item}}}})
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnknownOperationException" {
		t.Errorf("dynalite's TransactWriteItems: err = %v; it knows the action now: drop the proxy's transactions (tx.go)", err)
	}
}

func TestFaults(t *testing.T) {
	s, c := startWithTable(t)
	get := func(ctx context.Context) error {
		_, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": str("a")}})
		return err
	}
	cases := []struct {
		mode FaultMode
		code string // the API error code, "" for a client timeout
	}{
		{FaultThrottle, "ThrottlingException"},
		{FaultUnavailable, "InternalServerError"},
		{FaultHang, ""},
	}
	for _, tc := range cases {
		t.Run(string(tc.mode), func(t *testing.T) {
			if err := s.SetFault(tc.mode, time.Minute); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := get(ctx)
			cancel()
			var ae smithy.APIError
			switch {
			case tc.code == "" && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("err = %v, want the client's deadline", err)
			case tc.code != "" && (!errors.As(err, &ae) || ae.ErrorCode() != tc.code):
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			if err := s.SetFault(tc.mode, 0); err != nil {
				t.Fatal(err)
			}
			if err := get(context.Background()); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
	if err := s.SetFault("flood", time.Second); err == nil {
		t.Fatal("an unknown fault mode was accepted")
	}
}

func TestStatsCountEachOperation(t *testing.T) {
	s, c := startWithTable(t)
	ctx := context.Background()
	before := s.Stats()
	item := map[string]types.AttributeValue{"pk": str("s")}
	cond := aws.String("attribute_not_exists(pk)")
	for range 3 {
		c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item, ConditionExpression: cond})
	}
	c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: item})
	d := s.Stats().Sub(before)
	if got := d.Operations["PutItem"]; got != (OpStats{Requests: 3, Errors: 2, ConditionalFailures: 2}) {
		t.Errorf("PutItem = %+v, want 3 requests, 2 conditional failures", got)
	}
	if got := d.Operations["GetItem"].Requests; got != 1 {
		t.Errorf("GetItem requests = %d, want 1", got)
	}
	if d.Total() != 4 || d.String() != "GetItem=1 PutItem=3" {
		t.Errorf("total %d, %q; want 4, GetItem=1 PutItem=3", d.Total(), d.String())
	}
}

// Writes to one item are serialised by the proxy, so under contention each
// failed conditional put still reports the one item that won.
func TestConcurrentConditionalPuts(t *testing.T) {
	_, c := startWithTable(t)
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.PutItem(context.Background(), &dynamodb.PutItemInput{
				TableName:                           aws.String(table),
				Item:                                map[string]types.AttributeValue{"pk": str("race"), "w": str(string(rune('a' + i)))},
				ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
		}()
	}
	wg.Wait()
	won, winner := 0, ""
	var lost []string
	for i, err := range errs {
		var ccf *types.ConditionalCheckFailedException
		switch {
		case err == nil:
			won++
			winner = string(rune('a' + i))
		case errors.As(err, &ccf):
			w, _ := ccf.Item["w"].(*types.AttributeValueMemberS)
			if w == nil {
				t.Fatalf("a failure without the item: %v", ccf.Item)
			}
			lost = append(lost, w.Value)
		default:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d puts won, want exactly 1", won)
	}
	if strings.Count(strings.Join(lost, ""), winner) != n-1 {
		t.Fatalf("the failures saw %v, want the winner %s each time", lost, winner)
	}
}

// fakeDynalite is a repository root whose node_modules/dynalite is module
// (index.js), with a db module.
func fakeDynalite(t *testing.T, module string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "node_modules", "dynalite")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte(module), 0o644); err != nil {
		t.Fatal(err)
	}
	// The launcher takes dynalite's store from its db module.
	if err := os.WriteFile(filepath.Join(dir, "db.js"), []byte("exports.create = () => ({});\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestStartFailures(t *testing.T) {
	cases := map[string]struct {
		module  string
		timeout time.Duration
		want    string
	}{
		// The timeout only bounds the wait: node on a loaded machine can
		// take over a second to load the module and die.
		"dies at start": {`throw new Error("no storage module")`, time.Minute, "exited at start"},
		// Loads, never listens, and keeps running: stopped after the timeout.
		"never ready": {`setInterval(() => {}, 1000); module.exports = () => ({listen() {}});`, time.Second, "no ready line within"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Start(context.Background(), Config{Root: fakeDynalite(t, tc.module), StartTimeout: tc.timeout})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if name == "dies at start" && !strings.Contains(err.Error(), "no storage module") {
				t.Fatalf("err = %v, want the child's output in it", err)
			}
		})
	}
}
