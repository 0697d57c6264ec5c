// Package store keeps Herald's state in one DynamoDB table: the
// Idempotency-Key records of the notification API, and each notification's
// delivery status, written by the email sender and read by the API's
// GET /api/notifications/{id}. DESIGN.md beside this file gives the item
// shapes, conditions, TTLs, costs and the IAM actions of each role.
//
// Every write is a single-item conditional write, and every operation can be
// retried by the SDK after a lost answer without changing its outcome: a
// write recognises its own earlier attempt by the lease token it wrote. The
// API's keyed requests under load share calls: BeginMany puts Begin's
// conditional writes in one TransactWriteItems, CompleteMany writes done
// records in one BatchWriteItem (DESIGN.md says why that needs no condition).
// Failed conditions are outcomes (Mismatch, InFlight, AlreadySent, Busy,
// ErrLeaseLost ...), never store failures; any other error means the table
// could not be used (Unavailable tells a throttled or unreachable table from
// a misconfigured one).
//
// The package takes explicit values only: no defaults, and zero values that
// would be wrong are refused.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"herald/services/internal/herald"
)

// The table's shape, for the stacks and the local emulator: a string
// partition key and no sort key, and a TTL attribute holding epoch seconds.
const (
	KeyAttribute = "pk"
	TTLAttribute = "expiresAt"
)

// Client is the part of the DynamoDB client the store uses.
type Client interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	// The API's keyed requests, several callers' at once (BeginMany,
	// CompleteMany).
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

// Config is what a Store needs; every field is required.
type Config struct {
	// Table is the table's name.
	Table string
	// IdempotencyTTL is how long an Idempotency-Key stays bound to its first
	// request and answer (the 24 h).
	IdempotencyTTL time.Duration
	// StatusTTL is how long a notification's status is kept, and so how long
	// the sender recognises a redelivered message as already sent: at least
	// the queue's retention plus the dead-letter queue's, so that a message
	// redriven from the DLQ still finds its record.
	StatusTTL time.Duration
	// IDs mints, derives and checks notification ids: the API's. nil for
	// a store that neither begins keys nor answers GET (the sender, which
	// has no id secret: Begin and Get then fail with ErrNoIDs).
	IDs *IDs
	// Clock is the time; leases and TTLs are compared with it.
	Clock func() time.Time
}

// Store is Herald's state in one table. It is safe for concurrent use.
type Store struct {
	db    Client
	table string
	cfg   Config
}

// New checks cfg and returns a store on client.
func New(client Client, cfg Config) (*Store, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("a DynamoDB client is required"))
	}
	if !tableName.MatchString(cfg.Table) {
		errs = append(errs, fmt.Errorf("table name %q must be 3 to 255 letters, digits, '_', '-' or '.'", cfg.Table))
	}
	if cfg.IdempotencyTTL < time.Minute {
		errs = append(errs, fmt.Errorf("IdempotencyTTL %s must be at least 1m", cfg.IdempotencyTTL))
	}
	if cfg.StatusTTL < cfg.IdempotencyTTL {
		errs = append(errs, fmt.Errorf("StatusTTL %s must be at least IdempotencyTTL (%s)", cfg.StatusTTL, cfg.IdempotencyTTL))
	}
	if cfg.Clock == nil {
		errs = append(errs, errors.New("Clock is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: client, table: cfg.Table, cfg: cfg}, nil
}

var tableName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)

// ErrNoIDs: Begin or Get on a store made without IDs.
var ErrNoIDs = errors.New("store: no id secret (Config.IDs): keys and status lookups need it")

// NewDynamoDB is the DynamoDB client both services give New: their shared
// SDK configuration (herald.LoadAWSConfig) with the endpoint override
// (contract.EndpointDynamoDB; "" for AWS's own endpoint).
func NewDynamoDB(awsCfg aws.Config, endpoint string) *dynamodb.Client {
	return dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = herald.Endpoint(endpoint)
	})
}

// Errors that are outcomes of a conditional write, not store failures.
var (
	// ErrLeaseLost: the caller's lease was taken over by another request or
	// sender, or its record is gone; the caller must leave the record alone.
	ErrLeaseLost = errors.New("store: the lease was taken over or the record is gone")
	// ErrAlreadySent: the notification was sent (by another sender) while
	// the caller held or lost its lease; its failure is not recorded.
	ErrAlreadySent = errors.New("store: the notification was already sent")
	// ErrOwnerMismatch: the notification id belongs to another API key; the
	// message claiming it is not what the API queued.
	ErrOwnerMismatch = errors.New("store: the notification id belongs to another API key")
	// ErrNotFound: no such notification for this API key.
	ErrNotFound = errors.New("store: no such notification")
)

// Unavailable reports whether err means the table could not be reached or
// answer in time (throttling, a 5xx, a connection failure, a deadline):
// retrying later can succeed. Other errors (access denied, no such table, a
// validation error) are configuration faults or bugs.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	// DynamoDB's own 500; the SDK's check reads it from the HTTP status.
	var ise *types.InternalServerError
	if errors.As(err, &ise) {
		return true
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// Attribute names. Expressions refer to them as #placeholders only (status,
// state and others are DynamoDB reserved words), through attrNames.
const (
	attrID          = "id"
	attrBodyHash    = "bodyHash"
	attrState       = "state"
	attrLeaseToken  = "leaseToken"
	attrLeaseUntil  = "leaseUntil"
	attrAnswerCode  = "answerStatus"
	attrAnswerBody  = "answerBody"
	attrCreatedAt   = "createdAt"
	attrOwner       = "owner"
	attrStatus      = "status"
	attrAttempts    = "attempts"
	attrProviderID  = "providerMessageId"
	attrSentAt      = "sentAt"
	attrFailClass   = "failureClass"
	attrFailReason  = "failureReason"
	attrFailedAt    = "failedAt"
	attrUpdatedAt   = "updatedAt"
	keyItemPrefix   = "k#" // Idempotency-Key records: k#<api key id>#<sha256 hex of the key>
	notificationPfx = "n#" // notification status: n#<notification id>
)

// attrNames maps each placeholder to its attribute.
var attrNames = map[string]string{
	"#pk": KeyAttribute, "#exp": TTLAttribute,
	"#id": attrID, "#bh": attrBodyHash, "#state": attrState, "#ltok": attrLeaseToken, "#lease": attrLeaseUntil,
	"#acode": attrAnswerCode, "#abody": attrAnswerBody, "#created": attrCreatedAt,
	"#owner": attrOwner, "#status": attrStatus, "#att": attrAttempts, "#pmid": attrProviderID, "#sent": attrSentAt,
	"#fclass": attrFailClass, "#freason": attrFailReason, "#failed": attrFailedAt, "#upd": attrUpdatedAt,
	"#tat": attrTAT, // rate buckets (ratelease.go)
}

var placeholder = regexp.MustCompile(`#[a-z]+`)

// names is the ExpressionAttributeNames of the placeholders in exprs:
// DynamoDB refuses unused ones.
func names(exprs ...string) map[string]string {
	m := map[string]string{}
	for _, e := range exprs {
		for _, p := range placeholder.FindAllString(e, -1) {
			name, ok := attrNames[p]
			if !ok {
				panic("store: unknown attribute placeholder " + p)
			}
			m[p] = name
		}
	}
	return m
}

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func num(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func bin(v []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: v} }
func key(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{KeyAttribute: str(pk)}
}

// item reads attributes; a missing or mistyped one reads as its zero.
type item map[string]types.AttributeValue

func (it item) str(name string) string {
	v, _ := it[name].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

func (it item) num(name string) int64 {
	v, _ := it[name].(*types.AttributeValueMemberN)
	if v == nil {
		return 0
	}
	n, _ := strconv.ParseInt(v.Value, 10, 64)
	return n
}

func (it item) bin(name string) []byte {
	v, _ := it[name].(*types.AttributeValueMemberB)
	if v == nil {
		return nil
	}
	return v.Value
}

func (it item) has(name string) bool { _, ok := it[name]; return ok }

// millis reads an epoch-milliseconds attribute; zero time when absent.
func (it item) millis(name string) time.Time {
	if ms := it.num(name); ms != 0 {
		return time.UnixMilli(ms).UTC()
	}
	return time.Time{}
}

// update is one conditional UpdateItem that asks for the old item when the
// condition fails, and with returnOld also when it holds.
func (s *Store) update(ctx context.Context, pk, update, cond string, values map[string]types.AttributeValue, returnOld bool) (*dynamodb.UpdateItemOutput, error) {
	return s.updateNamed(ctx, pk, update, cond, nil, values, returnOld)
}

// updateNamed is update with placeholders of its own besides attrNames':
// the feedback's per-recipient attributes, whose names are data.
func (s *Store) updateNamed(ctx context.Context, pk, update, cond string, extra map[string]string, values map[string]types.AttributeValue, returnOld bool) (*dynamodb.UpdateItemOutput, error) {
	exprNames := names(update, cond)
	for p, name := range extra {
		exprNames[p] = name
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                           aws.String(s.table),
		Key:                                 key(pk),
		UpdateExpression:                    aws.String(update),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            exprNames,
		ExpressionAttributeValues:           values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if returnOld {
		in.ReturnValues = types.ReturnValueAllOld
	}
	return s.db.UpdateItem(ctx, in)
}

// getItem reads one item, eventually consistently (half the cost of a
// strongly consistent read); nil when there is none.
func (s *Store) getItem(ctx context.Context, pk string) (item, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: key(pk)})
	if err != nil {
		return nil, err
	}
	return item(out.Item), nil
}

// enumName is the name of an enum value counted from 1, or Type(n).
func enumName(v int, typ string, names ...string) string {
	if v >= 1 && v <= len(names) {
		return names[v-1]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// conditionFailed returns the item of a failed condition, and whether the
// error was one.
func conditionFailed(err error) (item, bool) {
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return nil, false
	}
	return item(ccf.Item), true
}

// newToken is a lease token: 128 random bits.
func newToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// checkText refuses an empty or oversized value, or one that is not UTF-8.
func checkText(field, v string, max int) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is required", field)
	case len(v) > max:
		return fmt.Errorf("%s is %d bytes, over %d", field, len(v), max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not UTF-8", field)
	}
	return nil
}

// truncate keeps the first max bytes of s, cut at a rune boundary.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.TrimSpace(s)
}
