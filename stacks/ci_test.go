package stacks

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

func devWithCI(ci CIConfig) Environment {
	for _, e := range Environments() {
		if e.Name == "dev" {
			e.CI = ci
			return e
		}
	}
	panic("no dev environment")
}

func TestCIConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name    string
		ci      CIConfig
		envName string
		wantErr string
	}{
		{name: "off", ci: CIConfig{}},
		{name: "branch", ci: CIConfig{Repository: "acme/herald"}},
		{name: "environment, existing provider, bucket", ci: CIConfig{Repository: "acme/herald.go", GitHubEnvironment: "aws-e2e",
			OIDCProviderARN: "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com", StateBucket: "acme-terraform-state"}},
		{name: "fields without a repository", ci: CIConfig{Branch: "main"}, wantErr: "CI.Repository: required"},
		{name: "not owner/name", ci: CIConfig{Repository: "acme"}, wantErr: `CI.Repository: "acme" is not`},
		{name: "both", ci: CIConfig{Repository: "acme/herald", Branch: "main", GitHubEnvironment: "e2e"}, wantErr: "not both"},
		{name: "wildcard branch", ci: CIConfig{Repository: "acme/herald", Branch: "release/*"}, wantErr: `CI.Branch: "release/*"`},
		{name: "subject separator", ci: CIConfig{Repository: "acme/herald", GitHubEnvironment: "e2e:x"}, wantErr: "CI.GitHubEnvironment"},
		{name: "other provider", ci: CIConfig{Repository: "acme/herald", OIDCProviderARN: "arn:aws:iam::111111111111:oidc-provider/gitlab.com"}, wantErr: "CI.OIDCProviderARN"},
		{name: "other account", ci: CIConfig{Repository: "acme/herald", OIDCProviderARN: "arn:aws:iam::222222222222:oidc-provider/token.actions.githubusercontent.com"}, wantErr: "another account"},
		{name: "bad bucket", ci: CIConfig{Repository: "acme/herald", StateBucket: "Acme_State"}, wantErr: "CI.StateBucket"},
		{name: "environment named like a copy", ci: CIConfig{Repository: "acme/herald"}, envName: "e2eprod", wantErr: "would be one of them"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := devWithCI(c.ci)
			if c.envName != "" {
				e.Name = c.envName
			}
			err := e.Validate()
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Validate: %v, want %q", err, c.wantErr)
			}
		})
	}
	if got := devWithCI(CIConfig{Repository: "acme/herald"}).WithDefaults().CI.Subject(); got != "repo:acme/herald:ref:refs/heads/main" {
		t.Errorf("default subject %q", got)
	}
}

// A broken CI statement is refused at synth, each for its rule.
func TestCheckCIStatements(t *testing.T) {
	region := []Condition{{Test: "StringEquals", Variable: "aws:RequestedRegion", Values: []string{"eu-west-1"}}}
	deny := Statement{Deny: true, Actions: []string{"ec2:Delete*"}, Resources: []string{"*"}}
	for _, c := range []struct {
		name    string
		s       Statement
		wantErr string
	}{
		{"scoped service wildcard", Statement{Actions: []string{"sqs:*"}, Resources: []string{"arn:aws:sqs:eu-west-1:111111111111:herald-e2e*"}}, ""},
		{"service wildcard on *", Statement{Actions: []string{"sqs:*"}, Resources: []string{"*"}, Conditions: region}, "only on resources named for copies"},
		{"partial wildcard", Statement{Actions: []string{"ec2:Describe*"}, Resources: []string{"*"}, Conditions: region}, "partial wildcard"},
		{"scopable action on *", Statement{Actions: []string{"s3:GetObject"}, Resources: []string{"*"}, Conditions: region}, "name its resources"},
		{"* without region", Statement{Actions: []string{"ec2:CreateVpc"}, Resources: []string{"*"}}, "aws:RequestedRegion"},
		{"wildcard not naming copies", Statement{Actions: []string{"sqs:SendMessage"}, Resources: []string{"arn:aws:sqs:eu-west-1:111111111111:herald-*"}}, "names no copies"},
		{"everything", Statement{Actions: []string{"*"}, Resources: []string{"*"}, Conditions: region}, "not service:Action"},
		{"principal", Statement{Actions: []string{"sqs:SendMessage"}, Resources: []string{"arn:aws:sqs:eu-west-1:111111111111:herald-e2ex"}, Principals: []Principal{{Type: "AWS", Identifiers: []string{"*"}}}}, "no principals"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkCIStatements([]Statement{c.s, deny})
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
		})
	}
	if err := checkCIStatements([]Statement{{Actions: []string{"sqs:*"}, Resources: []string{"arn:aws:sqs:eu-west-1:111111111111:herald-e2e*"}}}); err == nil || !strings.Contains(err.Error(), "no deny") {
		t.Errorf("without the deny: %v", err)
	}
}

// iamPattern matches s as IAM matches a resource pattern: * any run of
// characters, ? one.
func iamPattern(pattern, s string) bool {
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile(re).MatchString(s)
}

// allows says whether an Allow statement of the policy grants action on arn.
func allows(t *testing.T, statements []map[string]any, action, arn string) bool {
	t.Helper()
	for _, st := range statements {
		if st["effect"] != "Allow" {
			continue
		}
		if !slices.ContainsFunc(strs(t, st["actions"]), func(a string) bool { return iamPattern(a, action) }) {
			continue
		}
		if slices.ContainsFunc(strs(t, st["resources"]), func(r string) bool { return iamPattern(r, arn) }) {
			return true
		}
	}
	return false
}

func TestCIRole(t *testing.T) {
	existing := "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"
	for _, c := range []struct {
		name        string
		ci          CIConfig
		wantSubject string
	}{
		{"branch, new provider", CIConfig{Repository: "acme/herald"}, "repo:acme/herald:ref:refs/heads/main"},
		{"environment, existing provider, state bucket", CIConfig{Repository: "acme/herald", GitHubEnvironment: "aws-e2e", OIDCProviderARN: existing, StateBucket: "acme-state"}, "repo:acme/herald:environment:aws-e2e"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := devWithCI(c.ci)
			app := cdktf.Testing_App(nil)
			h := NewHeraldStack(app, "herald-dev", &HeraldStackProps{Environment: env})
			doc := decode(t, *cdktf.Testing_Synth(h.TerraformStack, jsii.Bool(false)))
			policyDocuments(t, doc) // every policy is a checked document, attached

			// The provider: GitHub's issuer, tokens for STS; or none.
			providers := doc.resources("aws_iam_openid_connect_provider")
			principal := existing
			if c.ci.OIDCProviderARN == "" {
				p := doc.only(t, "aws_iam_openid_connect_provider")
				if p["url"] != "https://token.actions.githubusercontent.com" || !slices.Equal(strs(t, p["client_id_list"]), []string{"sts.amazonaws.com"}) {
					t.Errorf("provider %v", p)
				}
				for name := range providers {
					principal = "${aws_iam_openid_connect_provider." + name + ".arn}"
				}
			} else if len(providers) != 0 {
				t.Errorf("a provider created beside the existing one: %v", providers)
			}

			role := doc.named(t, "aws_iam_role", "ci_role")
			if role["name"] != "herald-dev-ci" || num(role["max_session_duration"]) != ciMaxSession {
				t.Errorf("role %v %v", role["name"], role["max_session_duration"])
			}
			// Trust: exactly one repository's branch or environment, with
			// a token for STS, nothing else.
			m := docReference.FindStringSubmatch(role["assume_role_policy"].(string))
			trust := blocks(doc.data("aws_iam_policy_document")[m[1]]["statement"])
			if len(trust) != 1 {
				t.Fatalf("trust %v", trust)
			}
			st := trust[0]
			principals := blocks(st["principals"])
			if !slices.Equal(strs(t, st["actions"]), []string{"sts:AssumeRoleWithWebIdentity"}) || st["resources"] != nil ||
				len(principals) != 1 || principals[0]["type"] != "Federated" || !slices.Equal(strs(t, principals[0]["identifiers"]), []string{principal}) {
				t.Errorf("trust statement %v", st)
			}
			conditions := map[string][]string{}
			for _, cond := range blocks(st["condition"]) {
				if cond["test"] != "StringEquals" {
					t.Errorf("condition %v: only exact matches", cond)
				}
				conditions[cond["variable"].(string)] = strs(t, cond["values"])
			}
			want := map[string][]string{
				"token.actions.githubusercontent.com:aud": {"sts.amazonaws.com"},
				"token.actions.githubusercontent.com:sub": {c.wantSubject},
			}
			if len(conditions) != 2 || !slices.Equal(conditions["token.actions.githubusercontent.com:aud"], want["token.actions.githubusercontent.com:aud"]) ||
				!slices.Equal(conditions["token.actions.githubusercontent.com:sub"], want["token.actions.githubusercontent.com:sub"]) {
				t.Errorf("trust conditions %v, want %v", conditions, want)
			}

			statements := roleStatements(t, doc, "ci_policy")
			for i, st := range statements {
				resources := strs(t, st["resources"])
				if st["effect"] == "Allow" && slices.Contains(resources, "*") {
					region := false
					for _, cond := range blocks(st["condition"]) {
						region = region || cond["variable"] == "aws:RequestedRegion" && slices.Equal(strs(t, cond["values"]), []string{"eu-west-1"})
					}
					if !region {
						t.Errorf("statement %d on * outside the region condition: %v", i, st)
					}
				}
			}
			// Every statement with a wildcard says why (its WildcardReason).
			for _, st := range CIStatements(h.ciProps("herald-dev", h.Environment)) {
				wild := slices.ContainsFunc(append(slices.Clone(st.Resources), st.Actions...), func(s string) bool { return strings.Contains(s, "*") })
				if wild != (st.WildcardReason != "") {
					t.Errorf("statement %s: wildcards %v, reason %q", st.Sid, wild, st.WildcardReason)
				}
			}

			// What make push and the suite do outside the copy.
			acct, region := "111111111111", "eu-west-1"
			for _, c := range []struct{ action, arn string }{
				{"ecr:PutImage", "arn:aws:ecr:" + region + ":" + acct + ":repository/herald-dev/notification-api"},
				{"ecr:CompleteLayerUpload", "arn:aws:ecr:" + region + ":" + acct + ":repository/herald-dev/email-sender"},
				{"ecr:GetAuthorizationToken", "*"},
				{"ses:GetEmailIdentity", "arn:aws:ses:" + region + ":" + acct + ":identity/dev.herald.example.com"},
				{"tag:GetResources", "*"},
			} {
				if !allows(t, statements, c.action, c.arn) {
					t.Errorf("the role may not %s on %s", c.action, c.arn)
				}
			}
			if c.ci.StateBucket != "" {
				for _, action := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
					for _, key := range []string{StateKey("herald-e2eabc"), StateKey("herald-e2eabc") + ".tflock"} {
						if !allows(t, statements, action, "arn:aws:s3:::acme-state/"+key) {
							t.Errorf("the role may not %s %s", action, key)
						}
					}
					if allows(t, statements, action, "arn:aws:s3:::acme-state/"+StateKey("herald-prod")) {
						t.Errorf("the role may %s the real stacks' state", action)
					}
				}
			}

			// Every named resource of a copy it deploys is within its
			// reach; no named resource of the real stack is, but for the
			// repositories it pushes to.
			copied, err := SelectCopy(Environments(), "dev:e2eabc")
			if err != nil {
				t.Fatal(err)
			}
			copyApp := cdktf.Testing_App(nil)
			copyStack := NewHeraldStack(copyApp, StackID("e2eabc", ""), &HeraldStackProps{Environment: copied[0]})
			copyDoc := decode(t, *cdktf.Testing_Synth(copyStack.TerraformStack, jsii.Bool(false)))
			for _, check := range []struct {
				stack     tfDoc
				id        string
				reachable bool
			}{{copyDoc, "herald-e2eabc", true}, {doc, "herald-dev", false}} {
				for _, n := range namedARNs(t, check.stack, acct, region) {
					if n.service == "ecr" && !check.reachable {
						continue // make push pushes to the real stack's repositories
					}
					if got := allows(t, statements, n.service+":"+n.action, n.arn); got != check.reachable {
						t.Errorf("%s (%s): %s on %s allowed %v, want %v", check.id, n.typ, n.action, n.arn, got, check.reachable)
					}
				}
			}
		})
	}
}

type namedARN struct{ typ, service, action, arn string }

// namedARNs are the ARNs of a stack's resources named at synth, each with
// an action Terraform deletes it with.
func namedARNs(t *testing.T, doc tfDoc, acct, region string) []namedARN {
	t.Helper()
	arn := func(service, resource string) string {
		return "arn:aws:" + service + ":" + region + ":" + acct + ":" + resource
	}
	var out []namedARN
	add := func(typ, service, action, a string) { out = append(out, namedARN{typ, service, action, a}) }
	cluster := ""
	for _, c := range doc.resources("aws_ecs_cluster") {
		cluster = c["name"].(string)
	}
	for _, r := range doc.resources("aws_sqs_queue") {
		add("aws_sqs_queue", "sqs", "DeleteQueue", arn("sqs", r["name"].(string)))
	}
	for _, r := range doc.resources("aws_ecr_repository") {
		add("aws_ecr_repository", "ecr", "DeleteRepository", arn("ecr", "repository/"+r["name"].(string)))
	}
	for _, r := range doc.resources("aws_secretsmanager_secret") {
		add("aws_secretsmanager_secret", "secretsmanager", "DeleteSecret", arn("secretsmanager", "secret:"+r["name"].(string)+"-AbCdEf"))
	}
	for _, r := range doc.resources("aws_ssm_parameter") {
		add("aws_ssm_parameter", "ssm", "DeleteParameter", arn("ssm", "parameter"+r["name"].(string)))
	}
	for _, r := range doc.resources("aws_cloudwatch_log_group") {
		add("aws_cloudwatch_log_group", "logs", "DeleteLogGroup", arn("logs", "log-group:"+r["name"].(string)))
	}
	for _, r := range doc.resources("aws_sns_topic") {
		add("aws_sns_topic", "sns", "DeleteTopic", arn("sns", r["name"].(string)))
	}
	for _, r := range doc.resources("aws_cloudwatch_metric_alarm") {
		add("aws_cloudwatch_metric_alarm", "cloudwatch", "DeleteAlarms", arn("cloudwatch", "alarm:"+r["alarm_name"].(string)))
	}
	for _, r := range doc.resources("aws_cloudwatch_dashboard") {
		add("aws_cloudwatch_dashboard", "cloudwatch", "DeleteDashboards", "arn:aws:cloudwatch::"+acct+":dashboard/"+r["dashboard_name"].(string))
	}
	add("aws_ecs_cluster", "ecs", "DeleteCluster", arn("ecs", "cluster/"+cluster))
	for _, r := range doc.resources("aws_ecs_service") {
		add("aws_ecs_service", "ecs", "DeleteService", arn("ecs", "service/"+cluster+"/"+r["name"].(string)))
	}
	for _, r := range doc.resources("aws_ecs_task_definition") {
		add("aws_ecs_task_definition", "ecs", "TagResource", arn("ecs", "task-definition/"+r["family"].(string)+":1"))
	}
	for _, r := range doc.resources("aws_lb") {
		add("aws_lb", "elasticloadbalancing", "DeleteLoadBalancer", arn("elasticloadbalancing", "loadbalancer/app/"+r["name"].(string)+"/50dc6c495c0c9188"))
		add("aws_lb_listener", "elasticloadbalancing", "DeleteListener", arn("elasticloadbalancing", "listener/app/"+r["name"].(string)+"/50dc6c495c0c9188/f2f7dc8efc522ab2"))
	}
	for _, r := range doc.resources("aws_iam_role") {
		if name := r["name"].(string); !strings.HasSuffix(name, "-ci") {
			add("aws_iam_role", "iam", "DeleteRole", "arn:aws:iam::"+acct+":role/"+name)
			add("aws_iam_role", "iam", "PutRolePolicy", "arn:aws:iam::"+acct+":role/"+name)
		}
	}
	for _, r := range doc.resources("aws_kms_alias") {
		add("aws_kms_alias", "kms", "DeleteAlias", arn("kms", r["name"].(string)))
	}
	for _, r := range doc.resources("aws_dynamodb_table") {
		add("aws_dynamodb_table", "dynamodb", "DeleteTable", arn("dynamodb", "table/"+r["name"].(string)))
	}
	for _, r := range doc.resources("aws_sesv2_configuration_set") {
		add("aws_sesv2_configuration_set", "ses", "DeleteConfigurationSet", arn("ses", "configuration-set/"+r["configuration_set_name"].(string)))
	}
	if len(out) < 25 {
		t.Fatalf("only %d named resources: %v", len(out), out)
	}
	return out
}
