package store

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// memTable is one table in memory with DynamoDB's semantics for the writes
// of the Idempotency-Key records (PutItem, TransactWriteItems of Puts,
// BatchWriteItem of Puts), their limits and condition expressions, for the
// fakeDB's put, tx and batch; a test wraps them to inject faults.
//   - PutItem: the condition on the item (absent: no attributes), a failure
//     with the item when ALL_OLD is asked.
//   - TransactWriteItems: at most 100 actions, no two on one item; a
//     ClientRequestToken that already succeeded succeeds again and changes
//     nothing; all conditions hold or nothing is written and
//     TransactionCanceledException gives one reason per action, in order:
//     ConditionalCheckFailed (with the item when ALL_OLD is asked) or None.
//   - BatchWriteItem: at most 25 requests, no two on one item, unconditional.
type memTable struct {
	mu     sync.Mutex
	items  map[string]map[string]types.AttributeValue
	tokens map[string]bool
}

func newMemTable() *memTable {
	return &memTable{items: map[string]map[string]types.AttributeValue{}, tokens: map[string]bool{}}
}

// plug makes db's puts, transactions and batch writes go to the table.
func (m *memTable) plug(db *fakeDB) {
	db.put, db.tx, db.batch = m.putItem, m.transact, m.batchWrite
}

func (m *memTable) get(pk string) item {
	m.mu.Lock()
	defer m.mu.Unlock()
	return item(m.items[pk])
}

func (m *memTable) set(it map[string]types.AttributeValue) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[item(it).str(KeyAttribute)] = it
}

// validation is DynamoDB's ValidationException (the SDK has no type for it).
func validation(msg string) error {
	return &smithy.GenericAPIError{Code: "ValidationException", Message: msg}
}

func (m *memTable) putItem(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pk := item(in.Item).str(KeyAttribute)
	old := m.items[pk]
	ok, err := holds(deref(in.ConditionExpression), old, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	if err != nil {
		return nil, err
	}
	if !ok {
		if in.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
			old = nil
		}
		return nil, ccf(old)
	}
	m.items[pk] = in.Item
	out := &dynamodb.PutItemOutput{}
	if in.ReturnValues == types.ReturnValueAllOld {
		out.Attributes = old
	}
	return out, nil
}

func (m *memTable) transact(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(in.TransactItems); n < 1 || n > 100 {
		return nil, validation(fmt.Sprintf("%d actions: 1 to 100", n))
	}
	if tok := aws.ToString(in.ClientRequestToken); tok != "" && m.tokens[tok] {
		return &dynamodb.TransactWriteItemsOutput{}, nil
	}
	seen := map[string]bool{}
	reasons := make([]types.CancellationReason, len(in.TransactItems))
	failed := false
	for i, it := range in.TransactItems {
		p := it.Put
		if p == nil || it.Update != nil || it.Delete != nil || it.ConditionCheck != nil {
			return nil, validation("the fake supports Puts only")
		}
		pk := item(p.Item).str(KeyAttribute)
		if seen[pk] {
			return nil, validation("Transaction request cannot include multiple operations on one item")
		}
		seen[pk] = true
		old := m.items[pk]
		ok, err := holds(deref(p.ConditionExpression), old, p.ExpressionAttributeNames, p.ExpressionAttributeValues)
		if err != nil {
			return nil, err
		}
		reasons[i].Code = aws.String("None")
		if !ok {
			failed = true
			reasons[i].Code = aws.String("ConditionalCheckFailed")
			if p.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld {
				reasons[i].Item = old
			}
		}
	}
	if failed {
		return nil, &types.TransactionCanceledException{Message: aws.String("Transaction cancelled"), CancellationReasons: reasons}
	}
	for _, it := range in.TransactItems {
		m.items[item(it.Put.Item).str(KeyAttribute)] = it.Put.Item
	}
	if tok := aws.ToString(in.ClientRequestToken); tok != "" {
		m.tokens[tok] = true
	}
	return &dynamodb.TransactWriteItemsOutput{}, nil
}

func (m *memTable) batchWrite(in *dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	seen := map[string]bool{}
	for _, reqs := range in.RequestItems {
		for _, r := range reqs {
			n++
			if r.PutRequest == nil {
				return nil, validation("the fake supports PutRequests only")
			}
			pk := item(r.PutRequest.Item).str(KeyAttribute)
			if seen[pk] {
				return nil, validation("Provided list of item keys contains duplicates")
			}
			seen[pk] = true
		}
	}
	if n < 1 || n > 25 {
		return nil, validation(fmt.Sprintf("%d requests: 1 to 25", n))
	}
	for _, reqs := range in.RequestItems {
		for _, r := range reqs {
			m.items[item(r.PutRequest.Item).str(KeyAttribute)] = r.PutRequest.Item
		}
	}
	return &dynamodb.BatchWriteItemOutput{}, nil
}

// holds evaluates a condition expression of the store's grammar on it (nil:
// no item): OR, AND, parentheses, attribute_exists, attribute_not_exists,
// and comparisons of #names and :values (S, N, B). A missing attribute
// compares false, as in DynamoDB.
func holds(expr string, it map[string]types.AttributeValue, names map[string]string, values map[string]types.AttributeValue) (bool, error) {
	if expr == "" {
		return true, nil
	}
	p := &condParser{toks: condToken.FindAllString(expr, -1), it: it, names: names, values: values}
	v := p.or()
	if p.err == nil && p.pos != len(p.toks) {
		p.err = fmt.Errorf("condition %q: trailing %q", expr, p.toks[p.pos:])
	}
	return v, p.err
}

var condToken = regexp.MustCompile(`\(|\)|,|<=|>=|<>|=|<|>|[#:][A-Za-z0-9_]+|[A-Za-z_]+`)

type condParser struct {
	toks   []string
	pos    int
	it     map[string]types.AttributeValue
	names  map[string]string
	values map[string]types.AttributeValue
	err    error
}

func (p *condParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *condParser) next() string { t := p.peek(); p.pos++; return t }

func (p *condParser) expect(t string) {
	if got := p.next(); got != t && p.err == nil {
		p.err = fmt.Errorf("condition: %q where %q was expected", got, t)
	}
}

func (p *condParser) or() bool {
	v := p.and()
	for p.peek() == "OR" {
		p.next()
		w := p.and()
		v = v || w
	}
	return v
}

func (p *condParser) and() bool {
	v := p.factor()
	for p.peek() == "AND" {
		p.next()
		w := p.factor()
		v = v && w
	}
	return v
}

func (p *condParser) factor() bool {
	switch t := p.next(); t {
	case "(":
		v := p.or()
		p.expect(")")
		return v
	case "attribute_exists", "attribute_not_exists":
		p.expect("(")
		_, present := p.operand()
		p.expect(")")
		return present == (t == "attribute_exists")
	default:
		p.pos--
		a, aok := p.operand()
		op := p.next()
		b, bok := p.operand()
		if !aok || !bok {
			return false
		}
		c, ok := compare(a, b)
		if !ok {
			return false
		}
		switch op {
		case "=":
			return c == 0
		case "<>":
			return c != 0
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		case ">=":
			return c >= 0
		}
		if p.err == nil {
			p.err = fmt.Errorf("condition: unknown operator %q", op)
		}
		return false
	}
}

// operand is a #name's attribute of the item or a :value.
func (p *condParser) operand() (types.AttributeValue, bool) {
	t := p.next()
	switch {
	case strings.HasPrefix(t, "#"):
		name, ok := p.names[t]
		if !ok && p.err == nil {
			p.err = fmt.Errorf("condition: %s has no name", t)
		}
		v, present := p.it[name]
		return v, present
	case strings.HasPrefix(t, ":"):
		v, ok := p.values[t]
		if !ok && p.err == nil {
			p.err = fmt.Errorf("condition: %s has no value", t)
		}
		return v, ok
	}
	if p.err == nil {
		p.err = fmt.Errorf("condition: %q is not an operand", t)
	}
	return nil, false
}

// compare orders two values of one type; ok is false for different types.
func compare(a, b types.AttributeValue) (int, bool) {
	switch a := a.(type) {
	case *types.AttributeValueMemberS:
		if b, ok := b.(*types.AttributeValueMemberS); ok {
			return strings.Compare(a.Value, b.Value), true
		}
	case *types.AttributeValueMemberN:
		if b, ok := b.(*types.AttributeValueMemberN); ok {
			x, _ := strconv.ParseFloat(a.Value, 64)
			y, _ := strconv.ParseFloat(b.Value, 64)
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		}
	case *types.AttributeValueMemberB:
		if b, ok := b.(*types.AttributeValueMemberB); ok {
			return bytes.Compare(a.Value, b.Value), true
		}
	}
	return 0, false
}
