package stacks

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

func TestTable(t *testing.T) {
	for _, prod := range []bool{false, true} {
		t.Run(map[bool]string{false: "dev", true: "prod"}[prod], func(t *testing.T) {
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
				NewTable(stack, "table", &TableProps{Name: "herald-test-state", Account: testAccount, Region: testRegion, PointInTimeRecovery: prod, DeletionProtection: prod})
			})
			tb := doc.only(t, "aws_dynamodb_table")
			// On demand, one string hash key, no sort key or index, TTL on
			// the store's attribute, the table's own key.
			if tb["billing_mode"] != "PAY_PER_REQUEST" || tb["hash_key"] != "pk" || tb["range_key"] != nil || tb["global_secondary_index"] != nil || tb["stream_enabled"] == true {
				t.Errorf("table %v", tb)
			}
			if a := blocks(tb["attribute"]); len(a) != 1 || a[0]["name"] != "pk" || a[0]["type"] != "S" {
				t.Errorf("attributes %v", a)
			}
			if ttl := block(tb["ttl"]); ttl["attribute_name"] != "expiresAt" || ttl["enabled"] != true {
				t.Errorf("ttl %v", ttl)
			}
			sse := block(tb["server_side_encryption"])
			if sse["enabled"] != true || !strings.HasPrefix(str(sse["kms_key_arn"]), "${aws_kms_key.table_key_") {
				t.Errorf("encryption %v", sse)
			}
			if block(tb["point_in_time_recovery"])["enabled"] != prod || tb["deletion_protection_enabled"] != prod {
				t.Errorf("point in time recovery %v, deletion protection %v, want %v", tb["point_in_time_recovery"], tb["deletion_protection_enabled"], prod)
			}
			if k := doc.only(t, "aws_kms_key"); k["enable_key_rotation"] != true {
				t.Errorf("key %v", k)
			}
		})
	}
}

// TestTableGrants: each role gets exactly the item actions DESIGN.md lists
// for it, each limited to its items by the key prefix, and the table's key
// only through DynamoDB; nothing reads or writes more than one item.
func TestTableGrants(t *testing.T) {
	table := &Table{Name: "herald-test-state", ARN: TableARN(testRegion, testAccount, "herald-test-state"), region: testRegion}
	synthConstruct(t, func(stack cdktf.TerraformStack) {
		table.Key = NewKey(stack, "key", &KeyProps{Alias: "t", Account: testAccount, Region: testRegion, DeletionWindowDays: 30})
	})
	type grant struct{ actions, prefix string }
	for _, c := range []struct {
		role       string
		statements []Statement
		want       []grant
	}{
		{"api", table.GrantAPI(), []grant{
			{"dynamodb:BatchWriteItem dynamodb:DeleteItem dynamodb:PutItem dynamodb:UpdateItem", "k#*"},
			{"dynamodb:GetItem", "n#*"},
			{"dynamodb:GetItem dynamodb:UpdateItem", "r#*"},
		}},
		{"sender", table.GrantSender(), []grant{{"dynamodb:UpdateItem", "n#*"}}},
	} {
		var got []grant
		keyGranted := false
		for _, s := range c.statements {
			if strings.HasPrefix(s.Actions[0], "kms:") {
				via := viaService("dynamodb", testRegion)[0]
				keyGranted = len(s.Conditions) == 1 && s.Conditions[0].Variable == via.Variable && slices.Equal(s.Conditions[0].Values, via.Values) && len(s.Resources) == 1
				continue
			}
			if !slices.Equal(s.Resources, []string{table.ARN}) || len(s.Conditions) != 1 {
				t.Errorf("%s: %+v: want the table only, with one condition", c.role, s)
				continue
			}
			cond := s.Conditions[0]
			if cond.Test != "ForAllValues:StringLike" || cond.Variable != "dynamodb:LeadingKeys" || len(cond.Values) != 1 {
				t.Errorf("%s: condition %+v", c.role, cond)
			}
			for _, a := range s.Actions {
				for _, never := range []string{"Scan", "Query", "BatchGet", "Transact"} {
					if strings.Contains(a, never) {
						t.Errorf("%s may %s", c.role, a)
					}
				}
				// The API's done records, written in batches: k# items only.
				if a == "dynamodb:BatchWriteItem" && (c.role != "api" || cond.Values[0] != "k#*") {
					t.Errorf("%s may %s on %v", c.role, a, cond.Values)
				}
			}
			got = append(got, grant{strings.Join(s.Actions, " "), strings.Join(cond.Values, " ")})
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.role, got, c.want)
		}
		if !keyGranted {
			t.Errorf("%s: no grant of the table's key through DynamoDB", c.role)
		}
		if err := checkStatements(c.statements, identityPolicy); err != nil {
			t.Errorf("%s: %v", c.role, err)
		}
	}
}

// TestTableMatchesStore reads the store's layout from its source
// (services/internal/store is internal to services/, so the stacks cannot
// import it): the key and TTL attributes and the item prefixes the stack's
// table and grants use are the store's.
func TestTableMatchesStore(t *testing.T) {
	dir := filepath.Join("..", "services", "internal", "store")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the store's source in %s: %v", dir, err)
	}
	consts := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if i < len(spec.Values) {
					if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						consts[name.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
			return true
		})
	}
	for name, want := range map[string]string{
		"KeyAttribute":    tableKeyAttribute,
		"TTLAttribute":    tableTTLAttribute,
		"keyItemPrefix":   idempotencyItems,
		"notificationPfx": statusItems,
	} {
		if got, ok := consts[name]; !ok || got != want {
			t.Errorf("store.%s = %q (found %v), the stacks use %q", name, got, ok, want)
		}
	}
	// The shared rate limit's items, once the store has them.
	if got, ok := consts["rateItemPrefix"]; ok && got != rateLimitItems {
		t.Errorf("store.rateItemPrefix = %q, the stacks grant %q", got, rateLimitItems)
	}
}
