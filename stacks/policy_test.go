package stacks

// Policy tests: rules every synthesized stack keeps, checked over the JSON of
// every declared environment in both mesh modes (the stacks `make synth`
// writes).

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/services/contract"
)

type builtStack struct {
	id    string
	env   Environment // with defaults
	stack *HeraldStack
	doc   tfDoc
}

var (
	buildOnce sync.Once
	built     []builtStack
	buildErr  string
)

// allStacks synthesizes every stack of SynthPlan once per test binary, each
// in a fresh testing app.
func allStacks(t *testing.T) []builtStack {
	t.Helper()
	buildOnce.Do(func() {
		if err := ValidateAll(Environments()); err != nil {
			buildErr = err.Error()
			return
		}
		for _, spec := range SynthPlan(Environments(), true) {
			app := cdktf.Testing_App(nil)
			h := NewHeraldStack(app, spec.ID, &HeraldStackProps{Environment: spec.Environment})
			text := *cdktf.Testing_Synth(h.TerraformStack, jsii.Bool(false))
			built = append(built, builtStack{id: spec.ID, env: h.Environment, stack: h, doc: decode(t, text)})
		}
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	if len(built) != 4 {
		t.Fatalf("want dev and prod in both mesh modes, have %d stacks", len(built))
	}
	return built
}

// forEachStack runs check as a subtest per stack.
func forEachStack(t *testing.T, check func(t *testing.T, s builtStack)) {
	for _, s := range allStacks(t) {
		t.Run(s.id, func(t *testing.T) { check(t, s) })
	}
}

var docReference = regexp.MustCompile(`^\$\{data\.aws_iam_policy_document\.([A-Za-z0-9_-]+)\.json\}$`)

// policyDocuments classifies every policy document by what it is attached
// to, and fails on a policy that is not built from one (raw JSON escapes the
// checks).
func policyDocuments(t *testing.T, doc tfDoc) map[string]policyKind {
	t.Helper()
	kinds := map[string]policyKind{}
	attached := []struct {
		typ, attr string
		kind      policyKind
	}{
		{"aws_iam_role", "assume_role_policy", trustPolicy},
		{"aws_iam_role_policy", "policy", identityPolicy},
		{"aws_kms_key", "policy", keyPolicy},
		{"aws_sqs_queue_policy", "policy", resourcePolicy},
		{"aws_sns_topic_policy", "policy", resourcePolicy},
		{"aws_vpc_endpoint", "policy", resourcePolicy},
		{"aws_s3_bucket_policy", "policy", resourcePolicy},
	}
	for _, a := range attached {
		for name, r := range doc.resources(a.typ) {
			v, ok := r[a.attr]
			if !ok {
				if a.typ != "aws_vpc_endpoint" {
					t.Errorf("%s.%s has no %s", a.typ, name, a.attr)
				}
				continue
			}
			m := docReference.FindStringSubmatch(v.(string))
			if m == nil {
				t.Errorf("%s.%s.%s is not an aws_iam_policy_document: %.80s", a.typ, name, a.attr, v)
				continue
			}
			kinds[m[1]] = a.kind
		}
	}
	for name := range doc.data("aws_iam_policy_document") {
		if _, ok := kinds[name]; !ok {
			t.Errorf("policy document %s is attached to nothing the tests know", name)
		}
	}
	for _, typ := range []string{"aws_iam_policy", "aws_iam_role_policy_attachment", "aws_iam_user", "aws_iam_user_policy", "aws_iam_group_policy", "aws_secretsmanager_secret_policy", "aws_ecr_repository_policy"} {
		if n := len(doc.resources(typ)); n > 0 {
			t.Errorf("%d %s: a policy outside the checked documents", n, typ)
		}
	}
	for name, r := range doc.resources("aws_iam_role") {
		if r["managed_policy_arns"] != nil || r["inline_policy"] != nil {
			t.Errorf("role %s carries policies outside the checked documents", name)
		}
	}
	return kinds
}

// The only actions granted on Resource "*", each without resource-level
// permissions (this list is the test's own, on purpose).
var testWildcardAllowed = map[string]bool{"ecr:GetAuthorizationToken": true, "ses:GetAccount": true}

var ownLogStreams = regexp.MustCompile(`^\$\{aws_cloudwatch_log_group\.[A-Za-z0-9_-]+\.arn\}:\*$`)

func TestPolicyIAM(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		kinds := policyDocuments(t, s.doc)
		root := "arn:aws:iam::" + s.env.Account + ":root"
		for name, d := range s.doc.data("aws_iam_policy_document") {
			if strings.HasPrefix(name, "ci_") {
				continue // the CI role, under its own rules: TestCIRole
			}
			for i, st := range blocks(d["statement"]) {
				where := name + "[" + strconv.Itoa(i) + "]"
				effect := st["effect"]
				actions := strs(t, st["actions"])
				resources := strs(t, st["resources"])
				if len(actions) == 0 || st["not_actions"] != nil || st["not_resources"] != nil {
					t.Errorf("%s: needs actions, no NotAction/NotResource", where)
				}
				for _, a := range actions {
					if strings.Contains(a, "*") {
						t.Errorf("%s: wildcard action %q", where, a)
					}
				}
				principals := map[string][]string{}
				for _, p := range blocks(st["principals"]) {
					principals[p["type"].(string)] = append(principals[p["type"].(string)], strs(t, p["identifiers"])...)
				}
				conditions := map[string][]string{}
				for _, c := range blocks(st["condition"]) {
					conditions[c["variable"].(string)] = strs(t, c["values"])
				}
				switch kinds[name] {
				case trustPolicy:
					if len(resources) > 0 || len(principals["Service"]) != 1 {
						t.Errorf("%s: a trust policy names one service and no resource", where)
					}
					if !slices.Equal(conditions["aws:SourceAccount"], []string{s.env.Account}) {
						t.Errorf("%s: trust without aws:SourceAccount %s: %v", where, s.env.Account, conditions)
					}
				case keyPolicy:
					if !slices.Equal(resources, []string{"*"}) {
						t.Errorf("%s: key policy resources %v", where, resources)
					}
					switch {
					case slices.Equal(principals["AWS"], []string{root}):
					case len(principals["Service"]) == 1 && len(conditions) > 0:
					default:
						t.Errorf("%s: key policy principal %v (conditions %v): want the account root, or a service with a condition", where, principals, conditions)
					}
				case identityPolicy:
					if len(principals) > 0 {
						t.Errorf("%s: principals in an identity policy", where)
					}
					for _, r := range resources {
						switch {
						case r == "*":
							for _, a := range actions {
								if !testWildcardAllowed[a] {
									t.Errorf("%s: %s on resource *", where, a)
								}
							}
						case strings.Contains(r, "*"):
							if !ownLogStreams.MatchString(r) {
								t.Errorf("%s: wildcard resource %q: only the streams of the stack's own log groups", where, r)
							}
						}
					}
				case resourcePolicy:
					for _, r := range resources {
						if r == "*" {
							t.Errorf("%s: resource policy on *", where)
						}
					}
					if effect == "Allow" && slices.Contains(principals["*"], "*") {
						// only the gateway endpoints admit anyone: S3 to ECR's
						// layer bucket, DynamoDB to the state store's items
						s3 := len(resources) == 1 && strings.Contains(resources[0], "starport-layer-bucket/*") && slices.Equal(actions, []string{"s3:GetObject"})
						table := slices.Equal(resources, []string{TableARN(s.env.Region, s.env.Account, s.id+tableSuffix)}) &&
							slices.Equal(actions, []string{"dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"})
						if !s3 && !table {
							t.Errorf("%s: allows anyone %v on %v", where, actions, resources)
						}
					}
				}
			}
		}
	})
}

// statementsOf returns the statements of the policy document a role policy
// or role uses, by the role's logical name part.
func roleStatements(t *testing.T, doc tfDoc, rolePart string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for name, rp := range doc.resources("aws_iam_role_policy") {
		if !strings.Contains(name, rolePart) {
			continue
		}
		m := docReference.FindStringSubmatch(rp["policy"].(string))
		out = append(out, blocks(doc.data("aws_iam_policy_document")[m[1]]["statement"])...)
	}
	if len(out) == 0 {
		t.Fatalf("no policy for role *%s*", rolePart)
	}
	return out
}

func grants(t *testing.T, statements []map[string]any) map[string][]string {
	out := map[string][]string{}
	for _, st := range statements {
		for _, a := range strs(t, st["actions"]) {
			out[a] = append(out[a], strs(t, st["resources"])...)
		}
	}
	return out
}

func TestLeastPrivilegeRoles(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		queue := "${aws_sqs_queue.queue_140BE0E7.arn}"
		for _, svc := range []string{"api", "sender"} {
			exec := grants(t, roleStatements(t, s.doc, svc+"_execution-role"))
			name := map[string]string{"api": apiService, "sender": senderService}[svc]
			pulls := exec["ecr:BatchGetImage"]
			if len(pulls) == 0 || !strings.HasSuffix(pulls[0], "repository/"+s.id+"/"+name) {
				t.Errorf("%s pulls from %v, want its own repository first", svc, pulls)
			}
			if len(pulls) > 1 && (s.env.Mesh.Mode != MeshAppMesh || !strings.HasSuffix(pulls[1], "repository/aws-appmesh-envoy")) {
				t.Errorf("%s pulls from %v", svc, pulls)
			}
			if logs := exec["logs:PutLogEvents"]; len(logs) != 1 || !strings.Contains(logs[0], svc+"_logs_group") {
				t.Errorf("%s writes logs to %v", svc, logs)
			}
			for action, resources := range exec {
				if strings.HasPrefix(action, "sqs:") || strings.HasPrefix(action, "ses:") {
					t.Errorf("the execution role of %s may %s %v", svc, action, resources)
				}
			}
		}
		api := grants(t, roleStatements(t, s.doc, "api_task-role"))
		sender := grants(t, roleStatements(t, s.doc, "sender_task-role"))
		if got := api["sqs:SendMessage"]; !slices.Equal(got, []string{queue}) {
			t.Errorf("the API sends to %v", got)
		}
		for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "ses:SendEmail"} {
			if api[a] != nil {
				t.Errorf("the API may %s", a)
			}
		}
		if got := api["secretsmanager:GetSecretValue"]; len(got) != 2 || !strings.Contains(got[0], "api-key-hashes") || !strings.Contains(got[1], "id-secret") {
			t.Errorf("the API reads secrets %v, want the key hashes and the id secret", got)
		}
		// With SES feedback the sender consumes the feedback queue too,
		// and dead-letters events it cannot apply; it never sends to the
		// feedback queue (only the topic may).
		consumed, sendsTo := []string{queue}, []string{"${aws_sqs_queue.queue_dead-letter_5134C399.arn}", queue}
		if s.env.Email.FeedbackEnabled() {
			consumed = append(consumed, "${aws_sqs_queue.feedback_queue_49D47F21.arn}")
			sendsTo = append(sendsTo, "${aws_sqs_queue.feedback_queue_dead-letter_1905897D.arn}")
		}
		for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} {
			if !slices.Equal(sender[a], consumed) {
				t.Errorf("the sender may %s on %v, want %v", a, sender[a], consumed)
			}
		}
		// The DLQ, and the queue itself: a transient failure is re-queued as a copy.
		if got := sender["sqs:SendMessage"]; !slices.Equal(got, sendsTo) {
			t.Errorf("the sender sends to %v, want %v", got, sendsTo)
		}
		want := []string{"arn:aws:ses:" + s.env.Region + ":" + s.env.Account + ":identity/" + s.env.Email.Identity}
		if s.env.Email.ConfigurationSet {
			want = append(want, "arn:aws:ses:"+s.env.Region+":"+s.env.Account+":configuration-set/"+s.id)
		}
		// Every grant of ses:SendEmail is for the identity and set only, and
		// only from the addresses the API accepts.
		var from []string
		for _, st := range roleStatements(t, s.doc, "sender_task-role") {
			if !slices.Contains(strs(t, st["actions"]), "ses:SendEmail") {
				continue
			}
			if got := strs(t, st["resources"]); !slices.Equal(got, want) {
				t.Errorf("the sender sends as %v, want %v", got, want)
			}
			cond := block(st["condition"])
			if cond == nil || cond["variable"] != "ses:FromAddress" {
				t.Errorf("ses:SendEmail without a ses:FromAddress condition: %v", st)
				continue
			}
			from = append(from, strs(t, cond["values"])...)
		}
		wantFrom := []string{strings.ToLower(s.env.Email.DefaultFrom)}
		for _, a := range s.env.Email.AllowedFrom {
			wantFrom = append(wantFrom, strings.Replace(strings.ToLower(a), "@", "*@", 1))
		}
		slices.Sort(from)
		slices.Sort(wantFrom)
		if !slices.Equal(from, slices.Compact(wantFrom)) {
			t.Errorf("the sender may send from %v, want %v (HERALD_DEFAULT_FROM and HERALD_ALLOWED_FROM)", from, wantFrom)
		}
		if sender["secretsmanager:GetSecretValue"] != nil {
			t.Error("the sender's task role reads secrets; ECS injects them")
		}
		// The state store: each role its item actions, on the table only,
		// each limited to its items' key prefix (DESIGN.md's IAM table).
		table := TableARN(s.env.Region, s.env.Account, s.id+tableSuffix)
		for role, want := range map[string]map[string]string{
			"api_task-role":    {"dynamodb:BatchWriteItem": "k#*", "dynamodb:PutItem": "k#*", "dynamodb:DeleteItem": "k#*", "dynamodb:UpdateItem": "k#* r#*", "dynamodb:GetItem": "n#* r#*"},
			"sender_task-role": {"dynamodb:UpdateItem": "n#*"},
		} {
			got := map[string]string{}
			for _, st := range roleStatements(t, s.doc, role) {
				for _, a := range strs(t, st["actions"]) {
					if !strings.HasPrefix(a, "dynamodb:") {
						continue
					}
					cond := block(st["condition"])
					if !slices.Equal(strs(t, st["resources"]), []string{table}) || cond["test"] != "ForAllValues:StringLike" || cond["variable"] != "dynamodb:LeadingKeys" {
						t.Errorf("%s: %s on %v with %v, want the table with dynamodb:LeadingKeys", role, a, st["resources"], cond)
					}
					got[a] = strings.TrimSpace(got[a] + " " + strings.Join(strs(t, cond["values"]), " "))
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("%s: DynamoDB %v, want %v", role, got, want)
			}
		}
		for _, role := range []string{"api_execution-role", "sender_execution-role"} {
			for a := range grants(t, roleStatements(t, s.doc, role)) {
				if strings.HasPrefix(a, "dynamodb:") {
					t.Errorf("%s may %s", role, a)
				}
			}
		}
	})
}

func TestEverythingEncrypted(t *testing.T) {
	keyRef := regexp.MustCompile(`^\$\{aws_kms_key\.[A-Za-z0-9_-]+\.arn\}$`)
	forEachStack(t, func(t *testing.T, s builtStack) {
		checks := []struct{ typ, attr string }{
			{"aws_sqs_queue", "kms_master_key_id"},
			{"aws_cloudwatch_log_group", "kms_key_id"},
			{"aws_secretsmanager_secret", "kms_key_id"},
			{"aws_sns_topic", "kms_master_key_id"},
		}
		for _, c := range checks {
			if len(s.doc.resources(c.typ)) == 0 {
				t.Errorf("no %s", c.typ)
			}
			for name, r := range s.doc.resources(c.typ) {
				if v, _ := r[c.attr].(string); !keyRef.MatchString(v) {
					t.Errorf("%s.%s is not encrypted with a key of the stack: %v", c.typ, name, r[c.attr])
				}
			}
		}
		for name, g := range s.doc.resources("aws_cloudwatch_log_group") {
			if num(g["retention_in_days"]) != float64(s.env.Observability.LogRetentionDays) {
				t.Errorf("log group %s keeps logs %v days", name, g["retention_in_days"])
			}
		}
		for name, r := range s.doc.resources("aws_ecr_repository") {
			if enc := block(r["encryption_configuration"]); enc["encryption_type"] != "KMS" || !keyRef.MatchString(enc["kms_key"].(string)) {
				t.Errorf("repository %s: %v", name, enc)
			}
		}
		for name, k := range s.doc.resources("aws_kms_key") {
			if k["enable_key_rotation"] != true {
				t.Errorf("key %s does not rotate", name)
			}
		}
		for name, tb := range s.doc.resources("aws_dynamodb_table") {
			if sse := block(tb["server_side_encryption"]); sse["enabled"] != true || !keyRef.MatchString(str(sse["kms_key_arn"])) {
				t.Errorf("table %s is not encrypted with a key of the stack: %v", name, sse)
			}
			// prod keeps its records through a careless destroy and restores them
			pitr := block(tb["point_in_time_recovery"])["enabled"] == true
			if pitr != s.env.Store.PointInTimeRecovery || tb["deletion_protection_enabled"] != s.env.Store.DeletionProtection {
				t.Errorf("table %s: point-in-time recovery %v, deletion protection %v; environment %+v", name, pitr, tb["deletion_protection_enabled"], s.env.Store)
			}
		}
		if n := len(s.doc.resources("aws_dynamodb_table")); n != 1 {
			t.Errorf("%d tables, want the state store", n)
		}
	})
}

func TestNoPublicExposure(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		for name, svc := range s.doc.resources("aws_ecs_service") {
			nc := block(svc["network_configuration"])
			if nc["assign_public_ip"] != false {
				t.Errorf("service %s gives tasks a public IP", name)
			}
			for _, subnet := range strs(t, nc["subnets"]) {
				if !strings.Contains(subnet, "network_private-") {
					t.Errorf("service %s runs in %s, not a private subnet", name, subnet)
				}
			}
		}
		for name, sub := range s.doc.resources("aws_subnet") {
			if sub["map_public_ip_on_launch"] != false {
				t.Errorf("subnet %s maps public IPs", name)
			}
		}
		for name, sg := range s.doc.resources("aws_security_group") {
			if sg["ingress"] != nil || sg["egress"] != nil {
				t.Errorf("security group %s has inline rules the checks do not read", name)
			}
		}
		for _, typ := range []string{"aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule"} {
			if len(s.doc.resources(typ)) > 0 {
				t.Errorf("%s is not checked here", typ)
			}
		}
		listenerPorts := []float64{80}
		if s.env.Ingress.CertificateARN != "" {
			listenerPorts = append(listenerPorts, 443)
		}
		// A listener that forwards plain HTTP is never open to the internet.
		plainHTTP := false
		for _, l := range s.doc.resources("aws_lb_listener") {
			if l["protocol"] == "HTTP" && block(l["default_action"])["type"] != "redirect" {
				plainHTTP = true
			}
		}
		for name, r := range s.doc.resources("aws_security_group_rule") {
			var public bool
			for _, c := range strs(t, r["cidr_blocks"]) {
				public = public || isPublicCIDR(c)
			}
			if r["ipv6_cidr_blocks"] != nil {
				t.Errorf("rule %s opens to IPv6 blocks", name)
			}
			if !public {
				continue
			}
			group, _ := r["security_group_id"].(string)
			port := num(r["from_port"])
			switch r["type"] {
			case "ingress":
				if !strings.Contains(group, "ingress_security-group") || !slices.Contains(listenerPorts, port) || r["to_port"] != r["from_port"] {
					t.Errorf("rule %s opens %s port %v to the internet; only the load balancer's listeners may", name, group, port)
				}
				if plainHTTP && slices.Contains(strs(t, r["cidr_blocks"]), "0.0.0.0/0") {
					t.Errorf("rule %s opens a plain HTTP listener to the whole internet", name)
				}
			case "egress":
				if !strings.Contains(group, "sender_security-group") || port != 443 {
					t.Errorf("rule %s lets %s out to the internet on %v; only the sender, to SES", name, group, port)
				}
			}
		}
		// Nothing may reach the sender; only the load balancer the API.
		for name, r := range s.doc.resources("aws_security_group_rule") {
			if r["type"] != "ingress" {
				continue
			}
			group, _ := r["security_group_id"].(string)
			if strings.Contains(group, "sender_security-group") {
				t.Errorf("rule %s lets traffic into the sender", name)
			}
			if strings.Contains(group, "api_security-group") && (!strings.Contains(r["source_security_group_id"].(string), "ingress_security-group") || num(r["from_port"]) != contract.APIPort) {
				t.Errorf("rule %s lets %v into the API", name, r["source_security_group_id"])
			}
		}
	})
}

func TestScaling(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		cpu, backlog := 0, 0
		for name, p := range s.doc.resources("aws_appautoscaling_policy") {
			tt := block(p["target_tracking_scaling_policy_configuration"])
			switch {
			case block(tt["predefined_metric_specification"])["predefined_metric_type"] == "ECSServiceAverageCPUUtilization":
				cpu++
				if num(tt["target_value"]) != 70 {
					t.Errorf("%s tracks CPU at %v%%, want 70", name, tt["target_value"])
				}
			case tt["customized_metric_specification"] != nil:
				backlog++
				if !strings.Contains(name, "sender") || num(tt["target_value"]) != float64(s.env.Sender.BacklogPerTask) {
					t.Errorf("%s tracks backlog at %v", name, tt["target_value"])
				}
			}
		}
		if cpu != 2 || backlog != 1 {
			t.Errorf("%d CPU and %d backlog policies, want 2 and 1", cpu, backlog)
		}
		for name, target := range s.doc.resources("aws_appautoscaling_target") {
			svc := map[bool]ServiceConfig{true: s.env.API, false: s.env.Sender}[strings.Contains(name, "api")]
			if num(target["min_capacity"]) != float64(svc.MinTasks) || num(target["max_capacity"]) != float64(svc.MaxTasks) {
				t.Errorf("%s scales %v..%v", name, target["min_capacity"], target["max_capacity"])
			}
		}
	})
}

func TestHealthChecksAndDeployments(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		if hc := block(s.doc.only(t, "aws_lb_target_group")["health_check"]); hc["path"] != "/api" {
			t.Errorf("target group health check path %v, want /api", hc["path"])
		}
		for name, td := range s.doc.resources("aws_ecs_task_definition") {
			for cname, c := range containers(t, td) {
				if c.HealthCheck == nil {
					t.Errorf("%s/%s has no health check", name, cname)
					continue
				}
				if cname == envoyContainer {
					continue
				}
				if want := []string{"CMD", "/" + cname, "healthcheck"}; !slices.Equal(c.HealthCheck.Command, want) {
					t.Errorf("%s/%s checks health with %v, want %v", name, cname, c.HealthCheck.Command, want)
				}
				if c.User != nonRootUser || !c.ReadonlyRootFilesystem || c.StopTimeout != 30 {
					t.Errorf("%s/%s: user %q, read-only %v, stop timeout %d", name, cname, c.User, c.ReadonlyRootFilesystem, c.StopTimeout)
				}
			}
		}
		for name, svc := range s.doc.resources("aws_ecs_service") {
			cb := block(svc["deployment_circuit_breaker"])
			if cb["enable"] != true || cb["rollback"] != true || num(svc["deployment_minimum_healthy_percent"]) != 100 || num(svc["deployment_maximum_percent"]) != 200 {
				t.Errorf("service %s deploys unsafely", name)
			}
		}
		// The original design's paths: /api (API), /api/notification/send-email (sender).
		seed := map[string]string{apiService: "/api", senderService: "/api/notification/send-email"}
		if s.env.Mesh.Mode == MeshAppMesh {
			for name, node := range s.doc.resources("aws_appmesh_virtual_node") {
				if hc := block(block(block(node["spec"])["listener"])["health_check"]); hc["path"] != seed[node["name"].(string)] {
					t.Errorf("virtual node %s checks %v, want %s", name, hc["path"], seed[node["name"].(string)])
				}
			}
		}
	})
}

// TestServiceContract holds the task definitions to services/contract: each
// service gets exactly the variables the contract says the stacks set (and
// the tuning configured), the secret ones through ECS secrets, every value
// one the service's own parser accepts, the whole set one the service
// starts with; and the values agree with the queue.
func TestServiceContract(t *testing.T) {
	want := map[string]struct{ env, secrets []string }{
		apiService: {
			env:     []string{"AWS_REGION", "HERALD_ALLOWED_FROM", "HERALD_ENV", "HERALD_HTTP_ADDR", "HERALD_LOG_LEVEL", "HERALD_MAX_MESSAGE_BYTES", "HERALD_QUEUE_URL", "HERALD_RATE_TASKS", "HERALD_SHUTDOWN_TIMEOUT", "HERALD_STATUS_TTL", "HERALD_STORE_TABLE"},
			secrets: []string{"HERALD_API_KEYS_SECRET_ID", "HERALD_DEFAULT_FROM", "HERALD_ID_SECRET_ID"},
		},
		senderService: {
			env: []string{"AWS_REGION", "HERALD_ALLOWED_FROM", "HERALD_DLQ_URL", "HERALD_ENV", "HERALD_FEEDBACK_DLQ_URL", "HERALD_FEEDBACK_QUEUE_URL", "HERALD_FEEDBACK_TOPIC_ARN", "HERALD_FEEDBACK_VISIBILITY",
				"HERALD_HTTP_ADDR", "HERALD_LOG_LEVEL", "HERALD_QUEUE_URL", "HERALD_RETRY_WINDOW", "HERALD_SENDER_TASKS", "HERALD_SEND_TIMEOUT", "HERALD_SES_CONFIGURATION_SET", "HERALD_SHUTDOWN_TIMEOUT",
				"HERALD_STATUS_TTL", "HERALD_STORE_TABLE", "HERALD_TRANSPORT", "HERALD_VISIBILITY_TIMEOUT", "HERALD_WAIT_TIME"},
			secrets: []string{"HERALD_SEND_RATE"},
		},
	}
	secretLike := regexp.MustCompile(`PASSWORD|USERNAME|KEY_HASHES|SECRET|TOKEN|CREDENTIAL`)
	forEachStack(t, func(t *testing.T, s builtStack) {
		var queue map[string]any
		for _, q := range s.doc.resources("aws_sqs_queue") {
			if q["name"] == s.id+"-notifications" {
				queue = q
			}
		}
		parameters := map[string]string{}
		for _, p := range s.doc.resources("aws_ssm_parameter") {
			parameters[p["name"].(string)] = p["value"].(string)
		}
		for name, td := range s.doc.resources("aws_ecs_task_definition") {
			for cname, c := range containers(t, td) {
				if cname == envoyContainer {
					continue
				}
				service := contract.Service(cname)
				env, secrets := c.variables(), c.secrets()
				wantEnv := slices.Clone(want[cname].env)
				tuned := map[string]ServiceConfig{apiService: s.env.API, senderService: s.env.Sender}[cname].Tuning
				for k, v := range tuned {
					wantEnv = append(wantEnv, k)
					if env[k] != v {
						t.Errorf("%s: %s = %q, configured %q", cname, k, env[k], v)
					}
				}
				slices.Sort(wantEnv)
				if got := keys(env); !slices.Equal(got, wantEnv) {
					t.Errorf("%s environment %v, want %v", cname, got, wantEnv)
				}
				if got := keys(secrets); !slices.Equal(got, want[cname].secrets) {
					t.Errorf("%s secrets %v, want %v", cname, got, want[cname].secrets)
				}
				// What the service starts with: the plain values and the
				// parameters' values the secrets resolve to.
				resolved := maps.Clone(env)
				for k, v := range env {
					setting, ok := contract.Lookup(k)
					switch {
					case !ok || !setting.Var().Reads(service):
						t.Errorf("%s sets %s, which %s does not read (services/contract)", cname, k, cname)
					case setting.Var().Source != contract.Set && !(setting.Var().Source == contract.Tunable && tuned[k] != ""):
						t.Errorf("%s sets %s, which the contract says is %v", cname, k, setting.Var().Source)
					case setting.Validate(v) != nil:
						t.Errorf("%s: %v", cname, setting.Validate(v))
					}
					if secretLike.MatchString(k) {
						t.Errorf("%s: %s is a plain variable", cname, k)
					}
				}
				for k, from := range secrets {
					setting, ok := contract.Lookup(k)
					if !ok || !setting.Var().Reads(service) || setting.Var().Source != contract.SetSecret {
						t.Errorf("%s gets %s as a secret, which the contract does not", cname, k)
					}
					if !regexp.MustCompile(`^arn:aws:(ssm:[a-z0-9-]+:[0-9]{12}:parameter/|secretsmanager:)`).MatchString(from) {
						t.Errorf("%s: %s comes from %q, not a parameter or secret ARN", cname, k, from)
					}
					resolved[k] = parameters[from[strings.Index(from, ":parameter")+len(":parameter"):]]
				}
				var err error
				if service == contract.API {
					_, err = contract.ReadAPI(func(k string) string { return resolved[k] })
				} else {
					_, err = contract.ReadSender(func(k string) string { return resolved[k] })
				}
				if err != nil {
					t.Errorf("%s would not start: %v", cname, err)
				}
				if env["HERALD_ENV"] != s.env.Name || env["AWS_REGION"] != s.env.Region || env["HERALD_SHUTDOWN_TIMEOUT"] != "25s" {
					t.Errorf("%s: %v", name, env)
				}
				if !strings.HasSuffix(env["HERALD_QUEUE_URL"], "/"+s.env.Account+"/"+queue["name"].(string)) {
					t.Errorf("%s reads queue %s", cname, env["HERALD_QUEUE_URL"])
				}
				// Both services hold the same allow-list, the default sender allowed.
				if list, err := contract.ParseAllowList(env["HERALD_ALLOWED_FROM"]); err != nil || !list.Allows(s.env.Email.DefaultFrom) {
					t.Errorf("%s: HERALD_ALLOWED_FROM %q does not allow the default sender %s", cname, env["HERALD_ALLOWED_FROM"], s.env.Email.DefaultFrom)
				}
				switch cname {
				case apiService:
					if env["HERALD_HTTP_ADDR"] != ":8080" || env["HERALD_MAX_MESSAGE_BYTES"] != strconv.Itoa(int(num(queue["max_message_size"]))) {
						t.Errorf("API %v", env)
					}
					if resolved["HERALD_API_KEYS_SECRET_ID"] != s.id+"/api-key-hashes" {
						t.Errorf("HERALD_API_KEYS_SECRET_ID resolves to %q", resolved["HERALD_API_KEYS_SECRET_ID"])
					}
				case senderService:
					if env["HERALD_HTTP_ADDR"] != ":8081" || env["HERALD_WAIT_TIME"] != "20s" {
						t.Errorf("sender %v", env)
					}
					if want := strconv.Itoa(int(num(queue["visibility_timeout_seconds"]))) + "s"; env["HERALD_VISIBILITY_TIMEOUT"] != want {
						t.Errorf("HERALD_VISIBILITY_TIMEOUT %s, queue %s", env["HERALD_VISIBILITY_TIMEOUT"], want)
					}
					if num(queue["visibility_timeout_seconds"]) != 6*s.env.Email.SendTimeout.Seconds() || env["HERALD_SEND_TIMEOUT"] != strconv.Itoa(int(s.env.Email.SendTimeout.Seconds()))+"s" {
						t.Errorf("visibility %v is not derived from the send timeout %s", queue["visibility_timeout_seconds"], s.env.Email.SendTimeout)
					}
					// The retry window stays inside the queue's retention; the
					// tasks share the SES quota, seeded by the minimum count.
					window, err := time.ParseDuration(env["HERALD_RETRY_WINDOW"])
					if err != nil || window+retryRetentionMargin > time.Duration(num(queue["message_retention_seconds"]))*time.Second {
						t.Errorf("HERALD_RETRY_WINDOW %s with a retention of %v s", env["HERALD_RETRY_WINDOW"], queue["message_retention_seconds"])
					}
					if env["HERALD_SENDER_TASKS"] != strconv.Itoa(s.env.Sender.MinTasks) {
						t.Errorf("HERALD_SENDER_TASKS %s, sender MinTasks %d", env["HERALD_SENDER_TASKS"], s.env.Sender.MinTasks)
					}
				}
			}
		}
	})
}

func TestNoSecretValues(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		// Two secret versions: the API key set's placeholder, no key; and
		// the id secret's, generated by Secrets Manager at plan time: the
		// stack holds a reference to the generator, never a value.
		versions := s.doc.resources("aws_secretsmanager_secret_version")
		for name, v := range versions {
			generated := regexp.MustCompile(`^\$\{data\.aws_secretsmanager_random_password\.secrets_id-secret-value_[0-9A-F]{8}\.random_password\}$`)
			switch id := v["secret_id"].(string); {
			case strings.Contains(id, "api-key-hashes") && v["secret_string"] == "{}":
			case strings.Contains(id, "_id-secret_") && generated.MatchString(str(v["secret_string"])):
			default:
				t.Errorf("secret version %s of %s holds %v: a secret value is in the stack", name, id, v["secret_string"])
			}
		}
		if len(versions) != 2 {
			t.Errorf("%d secret versions, want the API key set's placeholder and the generated id secret", len(versions))
		}
		for name, g := range s.doc.data("aws_secretsmanager_random_password") {
			if num(g["password_length"]) < 32 {
				t.Errorf("%s: %v characters, the id secret needs at least 32 bytes", name, g["password_length"])
			}
		}
		// Parameters hold settings, not secrets: the default sender, the
		// send rate, and the names of the key-hash and id secrets. The
		// published ones: TestPublishedParametersHoldNoSecrets.
		want := map[string]string{
			"/" + s.id + "/default-from":       s.env.Email.DefaultFrom,
			"/" + s.id + "/send-rate":          strconv.FormatFloat(s.env.Email.SendRate, 'f', -1, 64),
			"/" + s.id + "/api-keys-secret-id": s.id + "/api-key-hashes",
			"/" + s.id + "/id-secret-id":       s.id + "/id-secret",
		}
		for name, p := range s.doc.resources("aws_ssm_parameter") {
			if strings.HasPrefix(p["name"].(string), ParameterPath(s.env.Name)+"/") {
				continue
			}
			if p["type"] != "String" || want[p["name"].(string)] != p["value"] {
				t.Errorf("parameter %s %v = %v is not one of the known settings", name, p["name"], p["value"])
			}
		}
		text := mustJSON(s.doc)
		for _, leak := range []string{"secret_binary", "PRIVATE KEY", "AKIA", "\"password\":"} {
			if strings.Contains(text, leak) {
				t.Errorf("the stack contains %q", leak)
			}
		}
	})
}

func TestMeshModes(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		appmesh := s.env.Mesh.Mode == MeshAppMesh
		counts := map[string]int{
			"aws_appmesh_mesh": 1, "aws_appmesh_virtual_node": 2, "aws_appmesh_virtual_service": 2,
			"aws_appmesh_virtual_router": 1, "aws_appmesh_route": 1, "aws_service_discovery_service": 2,
		}
		for typ, n := range counts {
			if !appmesh {
				n = 0
			}
			if got := len(s.doc.resources(typ)); got != n {
				t.Errorf("%s: %d, want %d", typ, got, n)
			}
		}
		warned := slices.ContainsFunc(s.stack.Warnings, func(w string) bool { return strings.Contains(w, "2026-09-30") })
		if warned != appmesh {
			t.Errorf("App Mesh warning %v in mode %s", warned, s.env.Mesh.Mode)
		}
		annotated := false
		for _, m := range *s.stack.Node().Metadata() {
			if strings.Contains(mustJSON(m.Data), "ended App Mesh on 2026-09-30") && strings.Contains(mustJSON(m.Data), "cannot be deployed") {
				annotated = true
			}
		}
		if annotated != appmesh {
			t.Errorf("App Mesh annotation %v in mode %s", annotated, s.env.Mesh.Mode)
		}
		// In Service Connect only the API joins, as a server; the sender
		// calls no service and stays out.
		for name, svc := range s.doc.resources("aws_ecs_service") {
			sc := block(svc["service_connect_configuration"])
			if joins := !appmesh && svc["name"] == apiService; joins != (sc != nil) {
				t.Errorf("service %s: service connect %v in mode %s", name, sc, s.env.Mesh.Mode)
			}
			if sc != nil && block(sc["service"])["discovery_name"] != apiService {
				t.Errorf("the API is not discoverable by name: %v", sc)
			}
		}
		outputs, _ := s.doc["output"].(map[string]any)
		notice, _ := block(outputs["mesh_notice"])["value"].(string)
		if appmesh != strings.Contains(notice, "cannot be deployed") {
			t.Errorf("mesh_notice output %q in mode %s", notice, s.env.Mesh.Mode)
		}
		for name, td := range s.doc.resources("aws_ecs_task_definition") {
			if (td["proxy_configuration"] != nil) != appmesh {
				t.Errorf("%s: proxy configuration in mode %s", name, s.env.Mesh.Mode)
			}
		}
		if !appmesh && block(s.doc.only(t, "aws_ecs_cluster")["service_connect_defaults"]) == nil {
			t.Error("the cluster has no Service Connect namespace")
		}
	})
}

func TestOutputsAndBackends(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		outputs, _ := s.doc["output"].(map[string]any)
		want := []string{"alarm_topic_arn", "api_keys_secret_arn", "api_log_group_name", "api_repository_url", "api_service_name", "api_url", "cluster_name", "dashboard_name", "dashboard_url", "dlq_arn", "dlq_url", "mesh_mode", "namespace_name", "parameter_path", "queue_arn", "queue_url", "sender_log_group_name", "sender_repository_url", "sender_service_name", "ses_configuration_set", "smtp_secret_arn", "table_arn", "table_name"}
		if s.env.Mesh.Mode == MeshAppMesh {
			want = append(want, "mesh_name", "mesh_notice")
		}
		if s.env.Email.FeedbackEnabled() {
			want = append(want, "feedback_dlq_url", "feedback_queue_url", "feedback_topic_arn")
		}
		slices.Sort(want)
		// With a domain the API is called on it, over HTTPS.
		url, _ := block(outputs["api_url"])["value"].(string)
		if d := s.env.Ingress.Domain; d != "" && url != "https://"+d {
			t.Errorf("api_url %q, want https://%s", url, d)
		}
		if got := keys(outputs); !slices.Equal(got, want) {
			t.Errorf("outputs %v, want %v", got, want)
		}
		provider := blocks(s.doc["provider"].(map[string]any)["aws"])[0]
		if !slices.Equal(strs(t, provider["allowed_account_ids"]), []string{s.env.Account}) || provider["region"] != s.env.Region {
			t.Errorf("provider %v", provider)
		}
		backend := block(block(s.doc["terraform"])["backend"])
		s3 := block(backend["s3"])
		if s.env.State.Bucket == "" {
			// cdktf's default local backend (added at app synth)
			if s3 != nil {
				t.Errorf("want local state, have %v", backend)
			}
			return
		}
		if s3["bucket"] != s.env.State.Bucket || s3["encrypt"] != true || s3["dynamodb_table"] != s.env.State.LockTable || s3["key"] != "herald/"+s.id+".tfstate" {
			t.Errorf("remote state %v", s3)
		}
	})
}
