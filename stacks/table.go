package stacks

import (
	"errors"
	"fmt"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/dynamodbtable"
)

// The state store's table layout (services/internal/store/DESIGN.md). The
// stacks cannot import the store (it is internal to services/), so the
// names are repeated here and TestTableMatchesStore reads them from the
// store's source: a rename there fails the test here.
const (
	// tableKeyAttribute is store.KeyAttribute: the string partition key.
	tableKeyAttribute = "pk"
	// tableTTLAttribute is store.TTLAttribute: epoch seconds after which
	// DynamoDB deletes the item.
	tableTTLAttribute = "expiresAt"
	// The item kinds, by key prefix; each role may touch its kinds only
	// (dynamodb:LeadingKeys).
	idempotencyItems = "k#" // the API's Idempotency-Key records
	statusItems      = "n#" // a notification's status (the sender's, and SES feedback's)
	rateLimitItems   = "r#" // the API's shared rate limit
)

// TableProps describe the state store's DynamoDB table.
type TableProps struct {
	Name    string
	Account string
	Region  string
	// PointInTimeRecovery keeps 35 days of continuous backups.
	PointInTimeRecovery bool
	// DeletionProtection refuses DeleteTable (a destroy) until turned off.
	DeletionProtection bool
}

// Table is the state store: one on-demand table, encrypted with its own key.
type Table struct {
	constructs.Construct
	Key   *Key
	Table dynamodbtable.DynamodbTable
	// Name and ARN are known at synth time.
	Name, ARN string
	region    string
}

// Grants, as AWS CDK's table.grant* methods: the table knows which item
// actions each of its users needs, limited to the items of its kind by
// their partition key's prefix. No Scan or Query: every access is by an
// item's key. The API's Begins of concurrent requests share a
// TransactWriteItems, which IAM checks as each item's PutItem, and their
// Completes a BatchWriteItem (its own action), both on k# items only.

// GrantAPI is the notification API's: its Idempotency-Key records
// (written, completed, abandoned), the status of its own notifications
// (read), and the shared rate limit (read and counted).
func (t *Table) GrantAPI() []Statement {
	return []Statement{
		t.grantItems("IdempotencyRecords", idempotencyItems, "dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
		t.grantItems("ReadNotificationStatus", statusItems, "dynamodb:GetItem"),
		t.grantItems("SharedRateLimit", rateLimitItems, "dynamodb:GetItem", "dynamodb:UpdateItem"),
		t.grantKey("StoreKeyForTheAPI"),
	}
}

// GrantSender is the email sender's (and its SES feedback processor's):
// the status items it claims, marks and adds feedback to, each one
// conditional UpdateItem.
func (t *Table) GrantSender() []Statement {
	return []Statement{
		t.grantItems("NotificationStatus", statusItems, "dynamodb:UpdateItem"),
		t.grantKey("StoreKeyForTheSender"),
	}
}

func (t *Table) grantItems(sid, prefix string, actions ...string) Statement {
	return Statement{
		Sid: sid, Actions: actions, Resources: []string{t.ARN},
		Conditions: []Condition{{Test: "ForAllValues:StringLike", Variable: "dynamodb:LeadingKeys", Values: []string{prefix + "*"}}},
	}
}

// grantKey lets DynamoDB use the table's key on the role's behalf (as AWS
// CDK grants it for a table with a customer managed key).
func (t *Table) grantKey(sid string) Statement {
	return Statement{
		Sid:        sid,
		Actions:    []string{"kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"},
		Resources:  []string{*t.Key.Key.Arn()},
		Conditions: viaService("dynamodb", t.region),
	}
}

// EndpointStatement admits the table's item actions through a gateway
// endpoint, and nothing else.
func (t *Table) EndpointStatement() Statement {
	return Statement{
		Sid:        "HeraldTableOnly",
		Actions:    []string{"dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
		Resources:  []string{t.ARN},
		Principals: []Principal{{Type: "*", Identifiers: []string{"*"}}},
	}
}

func (p *TableProps) validate() error {
	var errs []error
	// DynamoDB: 3..255 of [A-Za-z0-9_.-]
	if len(p.Name) < 3 || len(p.Name) > 255 || !secretNamePattern.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("Name %q: 3..255 letters, digits, _ . -", p.Name))
	}
	if !accountPattern.MatchString(p.Account) || !regionPattern.MatchString(p.Region) {
		errs = append(errs, errors.New("Account and Region are required"))
	}
	return errors.Join(errs...)
}

// TableARN is a table's ARN in an account and region.
func TableARN(region, account, name string) string {
	return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", partition(region), region, account, name)
}

// NewTable creates the key and the table.
func NewTable(scope constructs.Construct, id string, props *TableProps) *Table {
	if props == nil {
		props = &TableProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: table %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	t := &Table{Construct: c, Name: p.Name, ARN: TableARN(p.Region, p.Account, p.Name), region: p.Region}
	// The roles use the key through DynamoDB with their own IAM
	// permissions; DynamoDB creates its grants on the key as the caller of
	// CreateTable, which the account statement allows.
	t.Key = NewKey(c, "key", keyFor(p.Name, "Encrypts the state store "+p.Name+" (idempotency keys, notification status, SES feedback)", p.Account, p.Region))
	t.Table = dynamodbtable.NewDynamodbTable(c, jsii.String("table"), &dynamodbtable.DynamodbTableConfig{
		Name:        jsii.String(p.Name),
		BillingMode: jsii.String("PAY_PER_REQUEST"),
		HashKey:     jsii.String(tableKeyAttribute),
		Attribute: []*dynamodbtable.DynamodbTableAttribute{
			{Name: jsii.String(tableKeyAttribute), Type: jsii.String("S")},
		},
		Ttl: &dynamodbtable.DynamodbTableTtl{AttributeName: jsii.String(tableTTLAttribute), Enabled: jsii.Bool(true)},
		ServerSideEncryption: &dynamodbtable.DynamodbTableServerSideEncryption{
			Enabled: jsii.Bool(true), KmsKeyArn: t.Key.Key.Arn(),
		},
		PointInTimeRecovery:       &dynamodbtable.DynamodbTablePointInTimeRecovery{Enabled: jsii.Bool(p.PointInTimeRecovery)},
		DeletionProtectionEnabled: jsii.Bool(p.DeletionProtection),
	})
	return t
}
