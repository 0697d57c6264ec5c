package stacks

// Wiring tests: cross-reference checks over the synthesized stacks that
// follow references the way AWS follows them at apply and at run time. The
// policy tests pin what each resource allows; these pin that the pieces fit:
// a key lets in whoever uses it, a task's security group reaches every
// endpoint its work needs, every mesh reference names a resource that
// exists, and every ordering AWS needs is a dependency Terraform sees.
// TestWiringChecksFail shows each check failing on the change it guards.

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"herald/services/contract"
)

// wired is one synthesized stack as the wiring checks read it.
type wired struct {
	id, region, account string
	doc                 tfDoc
}

// wiringChecks by name; each returns the problems it finds.
var wiringChecks = []struct {
	name  string
	check func(w wired) []string
}{
	{"keys", checkKeyUsers},
	{"egress", checkEgress},
	{"references", checkReferences},
	{"ordering", checkOrdering},
	{"feedback", checkFeedback},
}

func wiredStacks(t *testing.T) []wired {
	var out []wired
	for _, s := range allStacks(t) {
		out = append(out, wired{id: s.id, region: s.env.Region, account: s.env.Account, doc: s.doc})
	}
	return out
}

func TestWiring(t *testing.T) {
	for _, w := range wiredStacks(t) {
		for _, c := range wiringChecks {
			t.Run(w.id+"/"+c.name, func(t *testing.T) {
				for _, p := range c.check(w) {
					t.Error(p)
				}
			})
		}
	}
}

// TestWiringChecksFail makes one change per case to a copy of a synthesized
// stack, each a single-line change that would break apply or run time, and
// requires the check that guards it to report it.
func TestWiringChecksFail(t *testing.T) {
	cases := []struct {
		name   string
		stack  string // stack id
		check  string // the check that must fail
		mutate func(t *testing.T, d tfDoc)
	}{
		// keys
		{"a log group named outside the logs key's encryption context", "herald-dev", "keys", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_cloudwatch_log_group", "api_logs")["name"] = "/ecs/notification-api"
		}},
		{"the logs key's grant to CloudWatch Logs removed", "herald-dev", "keys", func(t *testing.T, d tfDoc) {
			doc := d.data("aws_iam_policy_document")[docOf(t, d.named(t, "aws_kms_key", "log-key")["policy"])]
			doc["statement"] = blocks(doc["statement"])[:1]
		}},
		{"a log group encrypted with the queue's key", "herald-prod", "keys", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_cloudwatch_log_group", "sender_logs")["kms_key_id"] = "${aws_kms_key.queue_key_9CF19E08.arn}"
		}},
		{"the API cannot make data keys for the queue", "herald-dev", "keys", func(t *testing.T, d tfDoc) {
			dropAction(t, d, "api_task-role", "kms:GenerateDataKey")
		}},
		{"the sender cannot decrypt queued messages", "herald-prod-appmesh", "keys", func(t *testing.T, d tfDoc) {
			dropAction(t, d, "sender_task-role", "kms:Decrypt")
		}},
		{"the API cannot decrypt its key secret", "herald-prod", "keys", func(t *testing.T, d tfDoc) {
			dropAction(t, d, "api_task-role", "kms:Decrypt")
		}},
		{"the execution role cannot read a parameter ECS injects", "herald-dev", "keys", func(t *testing.T, d tfDoc) {
			dropAction(t, d, "sender_execution-role", "ssm:GetParameters")
		}},
		{"alarms cannot use the topic's key", "herald-prod", "keys", func(t *testing.T, d tfDoc) {
			doc := d.data("aws_iam_policy_document")[docOf(t, d.named(t, "aws_kms_key", "observability_key")["policy"])]
			doc["statement"] = blocks(doc["statement"])[:1]
		}},
		{"the sender cannot encrypt with the table's key", "herald-dev", "keys", func(t *testing.T, d tfDoc) {
			dropAction(t, d, "sender_task-role", "kms:Encrypt")
		}},
		{"the table encrypted with the queue's key, which the roles may not use through DynamoDB", "herald-prod", "keys", func(t *testing.T, d tfDoc) {
			block(d.only(t, "aws_dynamodb_table")["server_side_encryption"])["kms_key_arn"] = "${aws_kms_key.queue_key_9CF19E08.arn}"
		}},
		{"SES may not use the feedback key", "herald-dev", "keys", func(t *testing.T, d tfDoc) {
			dropStatement(t, d, d.named(t, "aws_kms_key", "feedback_queue_key")["policy"], "SESPublishesThisSetsEvents")
		}},
		{"SNS may not use the feedback key", "herald-prod", "keys", func(t *testing.T, d tfDoc) {
			dropStatement(t, d, d.named(t, "aws_kms_key", "feedback_queue_key")["policy"], "SNSDeliversThisTopicsEvents")
		}},
		// egress
		{"the DynamoDB gateway endpoint removed", "herald-prod", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_vpc_endpoint", "endpoint-dynamodb")
		}},
		{"the API's egress to the DynamoDB prefix list removed", "herald-dev", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_security_group_rule", "api_egress-dynamodb")
		}},
		{"the DynamoDB gateway endpoint off the private route tables", "herald-dev-appmesh", "egress", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_vpc_endpoint", "endpoint-dynamodb")["route_table_ids"] = []any{}
		}},
		{"the S3 prefix-list egress image pulls need removed", "herald-dev", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_security_group_rule", "api_egress-s3-layers")
		}},
		{"the endpoints no longer admit the sender", "herald-prod", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_security_group_rule", "endpoints-from-email-sender")
		}},
		{"the SQS endpoint removed (the API may not leave through NAT)", "herald-dev", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_vpc_endpoint", "endpoint-sqs")
		}},
		{"the sender's HTTPS egress to SES removed", "herald-prod", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_security_group_rule", "sender_egress-ses")
		}},
		{"an ECS endpoint Service Connect needs removed", "herald-dev", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_vpc_endpoint", "endpoint-ecs-agent")
		}},
		{"the App Mesh management endpoint Envoy needs removed", "herald-dev-appmesh", "egress", func(t *testing.T, d tfDoc) {
			remove(t, d, "aws_vpc_endpoint", "endpoint-appmesh-envoy-management")
		}},
		{"the load balancer's egress to the API on another port", "herald-prod", "egress", func(t *testing.T, d tfDoc) {
			r := d.named(t, "aws_security_group_rule", "ingress_to-notification-api")
			r["from_port"], r["to_port"] = 8081.0, 8081.0
		}},
		{"the gateway endpoint off the private route tables", "herald-dev", "egress", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_vpc_endpoint", "endpoint-s3")["route_table_ids"] = []any{}
		}},
		// references
		{"the Service Connect port name not in the task definition", "herald-dev", "references", func(t *testing.T, d tfDoc) {
			block(block(d.named(t, "aws_ecs_service", "api_service")["service_connect_configuration"])["service"])["port_name"] = "api"
		}},
		{"Service Connect in another namespace than the cluster's", "herald-prod", "references", func(t *testing.T, d tfDoc) {
			block(d.named(t, "aws_ecs_service", "api_service")["service_connect_configuration"])["namespace"] = "arn:aws:servicediscovery:eu-west-1:222222222222:namespace/ns-other"
		}},
		{"Service Connect logs to a group the task may not write", "herald-dev", "references", func(t *testing.T, d tfDoc) {
			lc := block(block(d.named(t, "aws_ecs_service", "api_service")["service_connect_configuration"])["log_configuration"])
			lc["options"].(map[string]any)["awslogs-group"] = "/herald/herald-dev/email-sender"
		}},
		{"Envoy configured for a virtual node that does not exist", "herald-dev-appmesh", "references", func(t *testing.T, d tfDoc) {
			setContainerEnv(t, d, "sender_task", "envoy", "APPMESH_RESOURCE_ARN", "arn:aws:appmesh:eu-west-1:111111111111:mesh/herald-dev-appmesh/virtualNode/sender")
		}},
		{"the ECS service registers in a Cloud Map service that does not exist", "herald-prod-appmesh", "references", func(t *testing.T, d tfDoc) {
			block(d.named(t, "aws_ecs_service", "api_service")["service_registries"])["registry_arn"] = "${aws_service_discovery_service.mesh_notification-api-registry_00000000.arn}"
		}},
		{"a virtual node discovering another Cloud Map service", "herald-dev-appmesh", "references", func(t *testing.T, d tfDoc) {
			cm := block(block(block(d.named(t, "aws_appmesh_virtual_node", "email-sender-node")["spec"])["service_discovery"])["aws_cloud_map"])
			cm["service_name"] = "notification-api"
		}},
		{"the proxy sends the app's traffic to another port than the node listens on", "herald-prod-appmesh", "references", func(t *testing.T, d tfDoc) {
			block(d.named(t, "aws_ecs_task_definition", "api_task")["proxy_configuration"])["properties"].(map[string]any)["AppPorts"] = "9090"
		}},
		{"a reference to a resource that is not in the stack", "herald-prod", "references", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_ecs_service", "sender_service")["cluster"] = "${aws_ecs_cluster.cluster_00000000.arn}"
		}},
		// ordering
		{"the API service no longer waits for its listeners", "herald-dev", "ordering", func(t *testing.T, d tfDoc) {
			dropDependency(t, d.named(t, "aws_ecs_service", "api_service"), "aws_lb_listener.")
		}},
		{"a service no longer waits for its task role's policy", "herald-prod", "ordering", func(t *testing.T, d tfDoc) {
			dropDependency(t, d.named(t, "aws_ecs_service", "sender_service"), "aws_iam_role_policy.sender_task-role")
		}},
		{"a task definition no longer waits for its log group", "herald-dev", "ordering", func(t *testing.T, d tfDoc) {
			delete(d.named(t, "aws_ecs_task_definition", "sender_task"), "depends_on")
		}},
		{"the load balancer no longer waits for the log bucket's policy", "herald-prod", "ordering", func(t *testing.T, d tfDoc) {
			dropDependency(t, d.only(t, "aws_lb"), "aws_s3_bucket_policy.")
		}},
		{"the queue no longer waits for its dead-letter queue", "herald-prod", "ordering", func(t *testing.T, d tfDoc) {
			for _, q := range d.resources("aws_sqs_queue") {
				delete(q, "depends_on")
			}
		}},
		{"autoscaling no longer waits for the service", "herald-dev", "ordering", func(t *testing.T, d tfDoc) {
			delete(d.named(t, "aws_appautoscaling_target", "api_scaling"), "depends_on")
		}},
		{"a log group's key named by a literal ARN", "herald-dev", "ordering", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_cloudwatch_log_group", "flow-logs")["kms_key_id"] = "arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000000"
		}},
		{"the routed virtual service no longer waits for its route", "herald-dev-appmesh", "ordering", func(t *testing.T, d tfDoc) {
			delete(d.named(t, "aws_appmesh_virtual_service", "notification-api-service"), "depends_on")
		}},
		// feedback
		{"the topic's policy no longer lets SES publish", "herald-dev", "feedback", func(t *testing.T, d tfDoc) {
			dropStatement(t, d, d.named(t, "aws_sns_topic_policy", "feedback_topic-policy")["policy"], "SESPublishesThisSetsEvents")
		}},
		{"SES may publish for another configuration set only", "herald-prod", "feedback", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_sesv2_configuration_set_event_destination", "feedback_event-destination")["configuration_set_name"] = "other"
		}},
		{"the event destination no longer waits for the topic's policy", "herald-prod", "feedback", func(t *testing.T, d tfDoc) {
			dropDependency(t, d.named(t, "aws_sesv2_configuration_set_event_destination", "feedback_event-destination"), "aws_sns_topic_policy.")
		}},
		{"bounces no longer published", "herald-dev", "feedback", func(t *testing.T, d tfDoc) {
			ed := block(d.named(t, "aws_sesv2_configuration_set_event_destination", "feedback_event-destination")["event_destination"])
			ed["matching_event_types"] = without(strs(t, ed["matching_event_types"]), "BOUNCE")
		}},
		{"the feedback queue's policy no longer admits the topic", "herald-dev", "feedback", func(t *testing.T, d tfDoc) {
			dropStatement(t, d, d.named(t, "aws_sqs_queue_policy", "feedback_queue_queue-policy")["policy"], "TopicDeliversEvents")
		}},
		{"the feedback DLQ's policy no longer admits the topic", "herald-prod-appmesh", "feedback", func(t *testing.T, d tfDoc) {
			dropStatement(t, d, d.named(t, "aws_sqs_queue_policy", "feedback_queue_dead-letter-policy")["policy"], "TopicDeadLettersUndeliverable")
		}},
		{"raw message delivery", "herald-dev", "feedback", func(t *testing.T, d tfDoc) {
			d.named(t, "aws_sns_topic_subscription", "feedback_subscription")["raw_message_delivery"] = true
		}},
		{"the sender reads feedback from another queue", "herald-prod", "feedback", func(t *testing.T, d tfDoc) {
			setContainerEnv(t, d, "sender_task", senderService, "HERALD_FEEDBACK_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/222222222222/herald-prod-feedback-dlq")
		}},
		{"the sender's feedback visibility differs from the queue's", "herald-dev", "feedback", func(t *testing.T, d tfDoc) {
			setContainerEnv(t, d, "sender_task", senderService, "HERALD_FEEDBACK_VISIBILITY", "60s")
		}},
		{"the sender checks another topic", "herald-dev", "feedback", func(t *testing.T, d tfDoc) {
			setContainerEnv(t, d, "sender_task", senderService, "HERALD_FEEDBACK_TOPIC_ARN", "arn:aws:sns:eu-west-1:111111111111:herald-dev-alarms")
		}},
		{"the sender may not receive from the feedback queue", "herald-prod", "feedback", func(t *testing.T, d tfDoc) {
			dropStatementOfRole(t, d, "sender_task-role", "ConsumeFeedback")
		}},
	}
	stacks := map[string]wired{}
	for _, w := range wiredStacks(t) {
		stacks[w.id] = w
	}
	checks := map[string]func(wired) []string{}
	for _, c := range wiringChecks {
		checks[c.name] = c.check
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, ok := stacks[c.stack]
			if !ok {
				t.Fatalf("no stack %s", c.stack)
			}
			// Given the stack as synthesized, which passes (TestWiring),
			// when one thing changes, then its check reports it.
			w.doc = deepCopy(t, w.doc)
			c.mutate(t, w.doc)
			problems := checks[c.check](w)
			if len(problems) == 0 {
				t.Fatalf("check %q found nothing wrong", c.check)
			}
			t.Logf("%s: %s", c.check, problems[0])
		})
	}
}

// ---- the checks ----

// checkKeyUsers: every encrypted resource's key lets in whoever uses it.
// CloudWatch Logs may use the logs key for exactly the stack's log groups
// (the key policy's encryption-context condition must match each group's
// ARN); whoever sends to or receives from a queue may use its key; whoever
// reads a secret may decrypt it; ECS's execution role may read every
// secret and parameter it injects; CloudWatch alarms may use the topic's
// key.
func checkKeyUsers(w wired) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	keyStatements := func(keyRef string) ([]stmt, bool) {
		typ, name, ok := reference(keyRef)
		if !ok || typ != "aws_kms_key" || w.doc.resources(typ)[name] == nil {
			return nil, false
		}
		return w.documentStatements(w.doc.resources(typ)[name]["policy"]), true
	}
	for name, g := range w.doc.resources("aws_cloudwatch_log_group") {
		keyRef := str(g["kms_key_id"])
		statements, ok := keyStatements(keyRef)
		if !ok {
			add("log group %s: key %q is not a key of the stack", name, keyRef)
			continue
		}
		groupARN := fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s", partition(w.region), w.region, w.account, g["name"])
		if !slices.ContainsFunc(statements, func(s stmt) bool {
			return s.allows("Service", "logs."+w.region+".amazonaws.com") &&
				s.grants("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey") &&
				s.conditionMatches("kms:EncryptionContext:aws:logs:arn", groupARN)
		}) {
			add("log group %s (%s): its key %s does not let CloudWatch Logs encrypt for %s", name, g["name"], keyRef, groupARN)
		}
	}
	// queue and secret ARNs (references and spelled out) -> their key
	keyOf := map[string]string{}
	for name, q := range w.doc.resources("aws_sqs_queue") {
		keyOf["${aws_sqs_queue."+name+".arn}"] = str(q["kms_master_key_id"])
		keyOf[sqsARN(w.region, w.account, str(q["name"]))] = str(q["kms_master_key_id"])
	}
	for name, s := range w.doc.resources("aws_secretsmanager_secret") {
		keyOf["${aws_secretsmanager_secret."+name+".arn}"] = str(s["kms_key_id"])
	}
	for name, tb := range w.doc.resources("aws_dynamodb_table") {
		sse := block(tb["server_side_encryption"])
		if sse["enabled"] != true || sse["kms_key_arn"] == nil {
			add("table %s is not encrypted with a key of the stack", name)
			continue
		}
		keyOf[TableARN(w.region, w.account, str(tb["name"]))] = str(sse["kms_key_arn"])
	}
	keyGrants := func(role string, resource string, actions ...string) bool {
		key := keyOf[resource]
		return key != "" && slices.ContainsFunc(w.roleStatements(role), func(s stmt) bool {
			return s.grants(actions...) && slices.Contains(s.resources, key)
		})
	}
	for _, role := range keys(w.doc.resources("aws_iam_role")) {
		for _, s := range w.roleStatements(role) {
			for _, r := range s.resources {
				switch {
				case s.grants("sqs:SendMessage") && keyOf[r] != "" && !keyGrants(role, r, "kms:GenerateDataKey", "kms:Decrypt"):
					add("role %s sends to %s but may not make data keys with its key %s", role, r, keyOf[r])
				case s.grants("sqs:ReceiveMessage") && keyOf[r] != "" && !keyGrants(role, r, "kms:Decrypt"):
					add("role %s receives from %s but may not decrypt with its key %s", role, r, keyOf[r])
				case s.grants("secretsmanager:GetSecretValue") && keyOf[secretOf(r)] != "" && !keyGrants(role, secretOf(r), "kms:Decrypt"):
					add("role %s reads secret %s but may not decrypt it with %s", role, r, keyOf[secretOf(r)])
				case slices.ContainsFunc(s.actions, func(a string) bool { return strings.HasPrefix(a, "dynamodb:") }) && keyOf[r] != "" &&
					!keyGrants(role, r, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"):
					add("role %s uses table %s but may not use its key %s", role, r, keyOf[r])
				}
			}
		}
	}
	// What ECS injects, the execution role reads (parameters are injected
	// by ARN and granted by reference, or the other way round).
	parameterRef := map[string]string{}
	for name, p := range w.doc.resources("aws_ssm_parameter") {
		parameterRef[fmt.Sprintf("arn:%s:ssm:%s:%s:parameter%s", partition(w.region), w.region, w.account, str(p["name"]))] = "${aws_ssm_parameter." + name + ".arn}"
	}
	for name, td := range w.doc.resources("aws_ecs_task_definition") {
		_, exec, _ := reference(str(td["execution_role_arn"]))
		for cname, c := range w.containers(td) {
			for _, from := range c.secrets() {
				action := "ssm:GetParameters"
				if strings.Contains(from, ":secretsmanager:") || strings.HasPrefix(from, "${aws_secretsmanager_secret.") {
					action = "secretsmanager:GetSecretValue"
				}
				if !slices.ContainsFunc(w.roleStatements(exec), func(s stmt) bool {
					return s.grants(action) && (slices.Contains(s.resources, secretOf(from)) || slices.Contains(s.resources, parameterRef[from]))
				}) {
					add("task definition %s/%s: ECS injects %s, but the execution role %s may not %s it", name, cname, from, exec, action)
				}
			}
		}
	}
	// Whoever the topic's policy lets publish (CloudWatch alarms, SES)
	// may use its key, for the same sources.
	for name, topic := range w.doc.resources("aws_sns_topic") {
		statements, ok := keyStatements(str(topic["kms_master_key_id"]))
		if !ok {
			add("topic %s: its key is not a key of the stack", name)
			continue
		}
		publishers := w.publishers(name)
		if len(publishers) == 0 {
			add("topic %s: no service may publish to it", name)
		}
		for _, pub := range publishers {
			if !slices.ContainsFunc(statements, func(s stmt) bool {
				return s.allows("Service", pub.service) && s.grants("kms:Decrypt", "kms:GenerateDataKey") && sameSources(s, pub.stmt)
			}) {
				add("topic %s: %s publishes to it but may not use its key for the same sources", name, pub.service)
			}
		}
	}
	// SNS encrypts what it delivers to a subscribed queue with the queue's
	// key; the subscription's redrive queue alike.
	for name, sub := range w.doc.resources("aws_sns_topic_subscription") {
		if sub["protocol"] != "sqs" {
			continue
		}
		_, topic, _ := reference(str(sub["topic_arn"]))
		topicARN := w.topicARN(topic)
		for _, queue := range w.subscriptionQueues(sub) {
			statements, _ := keyStatements(keyOf[queue])
			if !slices.ContainsFunc(statements, func(s stmt) bool {
				return s.allows("Service", "sns.amazonaws.com") && s.grants("kms:Decrypt", "kms:GenerateDataKey") && s.conditionMatches("aws:SourceArn", topicARN)
			}) {
				add("subscription %s: SNS may not use the key of %s for topic %s", name, queue, topicARN)
			}
		}
	}
	return problems
}

// checkEgress: every task's security group reaches every endpoint its work
// needs, and the endpoint lets it in. The work is read from the task: its
// image registry (ECR API and registry, S3 for the layers), its log driver
// (Logs), what ECS injects (SSM, Secrets Manager), what its task role may
// call (SQS, Secrets Manager, SES, App Mesh), Service Connect (the ECS
// endpoints). A service with a VPC endpoint is reached through it; one
// without (SES) through NAT. The load balancer reaches the API's port.
func checkEgress(w wired) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	interfaces := map[string]map[string]any{} // service suffix -> endpoint
	gateways := map[string]string{}           // service suffix -> gateway endpoint's logical name
	prefix := "com.amazonaws." + w.region + "."
	for name, e := range w.doc.resources("aws_vpc_endpoint") {
		svc := strings.TrimPrefix(str(e["service_name"]), prefix)
		if e["vpc_endpoint_type"] == "Gateway" {
			gateways[svc] = name
		} else if e["private_dns_enabled"] == true {
			interfaces[svc] = e
		}
	}
	rules := w.doc.resources("aws_security_group_rule")
	// opens reports whether group's rules of kind let port through to (or
	// from) the destination.
	opens := func(kind, group string, port float64, to func(r map[string]any) bool) bool {
		for _, r := range rules {
			if r["type"] == kind && r["security_group_id"] == group && num(r["from_port"]) <= port && port <= num(r["to_port"]) && to(r) {
				return true
			}
		}
		return false
	}
	toGroup := func(g string) func(map[string]any) bool {
		return func(r map[string]any) bool { return r["source_security_group_id"] == g }
	}
	toInternet := func(r map[string]any) bool { return slices.Contains(list(r["cidr_blocks"]), "0.0.0.0/0") }
	routeTableOf := map[string]string{} // subnet ref -> route table ref
	for _, a := range w.doc.resources("aws_route_table_association") {
		routeTableOf[strings.Replace(str(a["subnet_id"]), ".id}", "", 1)] = str(a["route_table_id"])
	}
	for name, svc := range w.doc.resources("aws_ecs_service") {
		nc := block(svc["network_configuration"])
		groups := list(nc["security_groups"])
		if len(groups) != 1 {
			add("service %s: want one security group, have %v", name, groups)
			continue
		}
		group := groups[0]
		_, tdName, _ := reference(str(svc["task_definition"]))
		td := w.doc.resources("aws_ecs_task_definition")[tdName]
		needs := w.needs(svc, td)
		for _, need := range needs {
			if gatewayName, ok := gateways[need]; ok {
				gateway := w.doc.resources("aws_vpc_endpoint")[gatewayName]
				if !opens("egress", group, 443, func(r map[string]any) bool {
					return slices.Contains(list(r["prefix_list_ids"]), "${aws_vpc_endpoint."+gatewayName+".prefix_list_id}")
				}) && !opens("egress", group, 443, toInternet) {
					add("service %s: its tasks cannot reach %s through the gateway endpoint's prefix list", name, need)
				}
				for _, subnet := range list(nc["subnets"]) {
					rt := routeTableOf[strings.Replace(subnet, ".id}", "", 1)]
					if rt != "" && !slices.Contains(list(gateway["route_table_ids"]), rt) {
						add("service %s: subnet %s routes through %s, which the %s gateway endpoint is not on", name, subnet, rt, need)
					}
				}
				continue
			}
			e, ok := interfaces[need]
			if !ok {
				// no endpoint: through NAT, if the group lets the task out
				if !opens("egress", group, 443, toInternet) {
					add("service %s needs %s, which has no VPC endpoint here, and its tasks may not leave for it on 443", name, need)
				}
				continue
			}
			for _, eg := range list(e["security_group_ids"]) {
				if !opens("egress", group, 443, toGroup(eg)) && !opens("egress", group, 443, toInternet) {
					add("service %s needs %s: its security group does not reach the endpoint's group %s on 443", name, need, eg)
				}
				if !opens("ingress", eg, 443, toGroup(group)) {
					add("service %s needs %s: the endpoint's group %s does not admit the service's group on 443", name, need, eg)
				}
			}
		}
		for _, lbt := range blocks(svc["load_balancer"]) {
			port := num(lbt["container_port"])
			_, tgName, _ := reference(str(lbt["target_group_arn"]))
			if tg := w.doc.resources("aws_lb_target_group")[tgName]; tg == nil || num(tg["port"]) != port {
				add("service %s: target group %s does not send to container port %v", name, tgName, port)
			}
			mapped := false
			for _, m := range w.containers(td)[fmt.Sprint(lbt["container_name"])].PortMappings {
				mapped = mapped || float64(m.ContainerPort) == port
			}
			if !mapped {
				add("service %s: container %v does not map port %v", name, lbt["container_name"], port)
			}
			for _, l := range w.doc.resources("aws_lb") {
				for _, lbGroup := range list(l["security_groups"]) {
					if !opens("egress", lbGroup, port, toGroup(group)) {
						add("service %s: the load balancer's group %s may not reach the tasks on %v", name, lbGroup, port)
					}
					if !opens("ingress", group, port, toGroup(lbGroup)) {
						add("service %s: its group does not admit the load balancer on %v", name, port)
					}
				}
			}
		}
	}
	return problems
}

// needs lists the AWS services a task's work calls, by endpoint suffix.
func (w wired) needs(svc, td map[string]any) []string {
	set := map[string]bool{}
	for _, c := range w.containers(td) {
		if strings.Contains(c.Image, ".dkr.ecr.") {
			set["ecr.api"], set["ecr.dkr"], set["s3"] = true, true, true
		}
		if c.LogConfiguration.LogDriver == "awslogs" {
			set["logs"] = true
		}
		for _, from := range c.secrets() {
			if strings.Contains(from, ":ssm:") {
				set["ssm"] = true
			} else {
				set["secretsmanager"] = true
			}
		}
	}
	_, role, _ := reference(str(td["task_role_arn"]))
	for _, s := range w.roleStatements(role) {
		for _, a := range s.actions {
			switch service, _, _ := strings.Cut(a, ":"); service {
			case "sqs", "secretsmanager", "dynamodb":
				set[service] = true
			case "ses":
				set["email"] = true // the SES API (no interface endpoint here)
			case "appmesh":
				set["appmesh-envoy-management"] = true
			}
		}
	}
	if block(svc["service_connect_configuration"]) != nil {
		// The endpoints AWS lists for ECS: with fewer of them, ECS traffic
		// from the VPC takes the public endpoints.
		set["ecs"], set["ecs-agent"], set["ecs-telemetry"] = true, true, true
	}
	return keys(set)
}

// checkReferences: every reference names a resource of the stack, and the
// mesh's names agree. Service Connect: the namespace is the cluster's,
// the published port name is a port mapping of the task, the proxy logs to
// the task's own group. App Mesh: the registry exists in the namespace the
// virtual node discovers through, Envoy's resource ARN names an existing
// virtual node of the mesh, which the task role may stream, and the proxy's
// application port is the node's listener and the container's port.
func checkReferences(w wired) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, ref := range anyReference.FindAllStringSubmatch(mustJSON(map[string]any{"resource": w.doc["resource"], "data": w.doc["data"], "output": w.doc["output"]}), -1) {
		kind := "resource"
		if ref[1] != "" {
			kind = "data"
		}
		if w.doc.section(kind, ref[2])[ref[3]] == nil {
			add("%s references %s.%s, which is not in the stack", kind, ref[2], ref[3])
		}
	}
	for name, svc := range w.doc.resources("aws_ecs_service") {
		_, tdName, _ := reference(str(svc["task_definition"]))
		td := w.doc.resources("aws_ecs_task_definition")[tdName]
		containers := w.containers(td)
		if sc := block(svc["service_connect_configuration"]); sc != nil {
			_, clusterName, _ := reference(str(svc["cluster"]))
			cluster := w.doc.resources("aws_ecs_cluster")[clusterName]
			if ns := sc["namespace"]; ns != block(cluster["service_connect_defaults"])["namespace"] || !isRefTo(ns, "aws_service_discovery_private_dns_namespace", w.doc) {
				add("service %s: Service Connect namespace %v is not the cluster's namespace of the stack", name, ns)
			}
			for _, published := range blocks(sc["service"]) {
				found := false
				for _, c := range containers {
					for _, m := range c.PortMappings {
						if m.Name == published["port_name"] {
							found = true
							if alias := block(published["client_alias"]); alias != nil && num(alias["port"]) != float64(m.ContainerPort) {
								add("service %s: clients call port %v, the container listens on %d", name, alias["port"], m.ContainerPort)
							}
						}
					}
				}
				if !found {
					add("service %s: Service Connect publishes port %q, which no container of %s names", name, published["port_name"], tdName)
				}
			}
			if lc := block(sc["log_configuration"]); lc != nil {
				group, _ := lc["options"].(map[string]any)["awslogs-group"].(string)
				_, exec, _ := reference(str(td["execution_role_arn"]))
				if !w.mayWriteLogs(exec, group) {
					add("service %s: the Service Connect proxy logs to %q, which the execution role %s may not write", name, group, exec)
				}
			}
		}
		if reg := block(svc["service_registries"]); reg != nil {
			typ, regName, _ := reference(str(reg["registry_arn"]))
			registry := w.doc.resources(typ)[regName]
			if typ != "aws_service_discovery_service" || registry == nil {
				add("service %s registers in %v, not a Cloud Map service of the stack", name, reg["registry_arn"])
				continue
			}
			_, nsName, _ := reference(str(block(registry["dns_config"])["namespace_id"]))
			namespace := w.doc.resources("aws_service_discovery_private_dns_namespace")[nsName]
			envoy, ok := containers[envoyContainer]
			if !ok {
				add("service %s: registered for App Mesh without an Envoy container", name)
				continue
			}
			node, nodeName := w.virtualNode(envoy.variables()["APPMESH_RESOURCE_ARN"])
			if node == nil {
				add("service %s: Envoy's APPMESH_RESOURCE_ARN %q names no virtual node of the stack's mesh", name, envoy.variables()["APPMESH_RESOURCE_ARN"])
				continue
			}
			spec := block(node["spec"])
			cm := block(block(spec["service_discovery"])["aws_cloud_map"])
			if namespace == nil || cm["namespace_name"] != namespace["name"] || (cm["service_name"] != registry["name"] && cm["service_name"] != "${aws_service_discovery_service."+regName+".name}") {
				add("service %s: virtual node %s discovers %v/%v, the tasks register in %v/%v", name, nodeName, cm["namespace_name"], cm["service_name"], namespace["name"], registry["name"])
			}
			appPorts, _ := block(td["proxy_configuration"])["properties"].(map[string]any)["AppPorts"].(string)
			listener := num(block(block(spec["listener"])["port_mapping"])["port"])
			app := containers[str(svc["name"])]
			if appPorts != strconv.Itoa(int(listener)) || len(app.PortMappings) == 0 || float64(app.PortMappings[0].ContainerPort) != listener {
				add("service %s: the proxy's AppPorts %q, the node's listener %v and the container's port %v disagree", name, appPorts, listener, app.PortMappings)
			}
			_, role, _ := reference(str(td["task_role_arn"]))
			if !slices.ContainsFunc(w.roleStatements(role), func(s stmt) bool {
				return s.grants("appmesh:StreamAggregatedResources") && (slices.Contains(s.resources, envoy.variables()["APPMESH_RESOURCE_ARN"]) || slices.Contains(s.resources, "${aws_appmesh_virtual_node."+nodeName+".arn}"))
			}) {
				add("service %s: the task role may not stream virtual node %s", name, nodeName)
			}
		}
	}
	return problems
}

// virtualNode finds the virtual node an Envoy resource ARN names.
func (w wired) virtualNode(arn string) (map[string]any, string) {
	m := regexp.MustCompile(`^arn:[a-z-]+:appmesh:` + w.region + `:` + w.account + `:mesh/([^/]+)/virtualNode/([^/]+)$`).FindStringSubmatch(arn)
	if m == nil {
		return nil, ""
	}
	for meshName, mesh := range w.doc.resources("aws_appmesh_mesh") {
		if mesh["name"] != m[1] {
			continue
		}
		for name, node := range w.doc.resources("aws_appmesh_virtual_node") {
			if node["name"] == m[2] && node["mesh_name"] == "${aws_appmesh_mesh."+meshName+".name}" {
				return node, name
			}
		}
	}
	return nil, ""
}

// checkOrdering: every order AWS needs at apply is a dependency Terraform
// sees (a reference or depends_on). An ECS service needs its target group
// attached to the load balancer (a listener) and its roles' policies; a
// task definition's awslogs group must exist; a load balancer turning on
// access logs needs the bucket policy; a queue's redrive needs its DLQ;
// autoscaling needs the service; a NAT gateway needs the internet gateway;
// a log group needs its key (and key policy) first; a routed virtual
// service needs its route.
func checkOrdering(w wired) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	dependsOn := func(r map[string]any, typ, name string) bool {
		return slices.Contains(list(r["depends_on"]), typ+"."+name)
	}
	for name, svc := range w.doc.resources("aws_ecs_service") {
		for _, lbt := range blocks(svc["load_balancer"]) {
			attached := false
			for lname, l := range w.doc.resources("aws_lb_listener") {
				if block(l["default_action"])["target_group_arn"] == lbt["target_group_arn"] && dependsOn(svc, "aws_lb_listener", lname) {
					attached = true
				}
			}
			if !attached {
				add("service %s does not wait for a listener that attaches its target group %v", name, lbt["target_group_arn"])
			}
		}
		_, tdName, _ := reference(str(svc["task_definition"]))
		td := w.doc.resources("aws_ecs_task_definition")[tdName]
		for _, roleAttr := range []string{"execution_role_arn", "task_role_arn"} {
			_, role, _ := reference(str(td[roleAttr]))
			for pname, p := range w.doc.resources("aws_iam_role_policy") {
				if p["role"] == "${aws_iam_role."+role+".id}" && !dependsOn(svc, "aws_iam_role_policy", pname) {
					add("service %s does not wait for %s's policy %s", name, role, pname)
				}
			}
		}
	}
	groups := map[string]string{} // name -> logical name
	for name, g := range w.doc.resources("aws_cloudwatch_log_group") {
		groups[str(g["name"])] = name
		if typ, _, ok := reference(str(g["kms_key_id"])); !ok || typ != "aws_kms_key" {
			add("log group %s names its key %v, not by reference: Terraform may create it before the key and its policy", name, g["kms_key_id"])
		}
	}
	for name, td := range w.doc.resources("aws_ecs_task_definition") {
		for cname, c := range w.containers(td) {
			if g := c.LogConfiguration.Options["awslogs-group"]; g != "" && !dependsOn(td, "aws_cloudwatch_log_group", groups[g]) {
				add("task definition %s/%s logs to %s without waiting for it", name, cname, g)
			}
		}
	}
	for name, l := range w.doc.resources("aws_lb") {
		logs := block(l["access_logs"])
		if logs == nil || logs["enabled"] != true {
			continue
		}
		waits := false
		for pname, p := range w.doc.resources("aws_s3_bucket_policy") {
			_, bname, _ := reference(str(p["bucket"]))
			if w.doc.resources("aws_s3_bucket")[bname]["bucket"] == logs["bucket"] && dependsOn(l, "aws_s3_bucket_policy", pname) {
				waits = true
			}
		}
		if !waits {
			add("load balancer %s logs to %v without waiting for the bucket's policy", name, logs["bucket"])
		}
	}
	queues := map[string]string{} // ARN -> logical name
	for name, q := range w.doc.resources("aws_sqs_queue") {
		queues[sqsARN(w.region, w.account, str(q["name"]))] = name
	}
	for name, q := range w.doc.resources("aws_sqs_queue") {
		if text, ok := q["redrive_policy"].(string); ok {
			var rp struct {
				Target string `json:"deadLetterTargetArn"`
			}
			json.Unmarshal([]byte(text), &rp)
			if !dependsOn(q, "aws_sqs_queue", queues[rp.Target]) {
				add("queue %s redrives to %s without waiting for it", name, rp.Target)
			}
		}
	}
	for name, target := range w.doc.resources("aws_appautoscaling_target") {
		id, _ := target["resource_id"].(string)
		for sname, svc := range w.doc.resources("aws_ecs_service") {
			if strings.HasSuffix(id, "/"+str(svc["name"])) && !dependsOn(target, "aws_ecs_service", sname) {
				add("autoscaling target %s (%s) does not wait for the service", name, id)
			}
		}
	}
	for name, nat := range w.doc.resources("aws_nat_gateway") {
		if !slices.ContainsFunc(list(nat["depends_on"]), func(d string) bool { return strings.HasPrefix(d, "aws_internet_gateway.") }) {
			add("NAT gateway %s does not wait for the internet gateway", name)
		}
	}
	for name, vs := range w.doc.resources("aws_appmesh_virtual_service") {
		router := block(block(block(vs["spec"])["provider"])["virtual_router"])
		if router == nil {
			continue
		}
		waits := false
		for rname, r := range w.doc.resources("aws_appmesh_route") {
			if r["virtual_router_name"] == router["virtual_router_name"] && dependsOn(vs, "aws_appmesh_route", rname) {
				waits = true
			}
		}
		if !waits {
			add("virtual service %s routes through %v without waiting for its route", name, router["virtual_router_name"])
		}
	}
	return problems
}

// checkFeedback follows SES's events to the sender: the configuration
// set's event destination publishes every type the feedback processor
// reads to a topic whose policy lets SES publish for that set, and waits
// for that policy; the topic's SQS subscription delivers the envelope (not
// raw) to a queue, and its redrive to a DLQ, whose policies admit the
// topic; the sender reads that queue (HERALD_FEEDBACK_QUEUE_URL), may
// receive from it, checks the topic (HERALD_FEEDBACK_TOPIC_ARN) and holds
// events as long as the queue does (HERALD_FEEDBACK_VISIBILITY).
func checkFeedback(w wired) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var sender map[string]string
	var senderRole string
	for _, td := range w.doc.resources("aws_ecs_task_definition") {
		if c, ok := w.containers(td)[senderService]; ok {
			sender = c.variables()
			_, senderRole, _ = reference(str(td["task_role_arn"]))
		}
	}
	destinations := w.doc.resources("aws_sesv2_configuration_set_event_destination")
	if len(destinations) == 0 && sender[contract.FeedbackQueueURL.Name] != "" {
		add("the sender reads feedback from %s, but no configuration set publishes events", sender[contract.FeedbackQueueURL.Name])
	}
	for name, d := range destinations {
		ed := block(d["event_destination"])
		if ed["enabled"] != true {
			add("event destination %s is disabled", name)
		}
		for _, typ := range contract.SESEventTypes() {
			if !slices.Contains(list(ed["matching_event_types"]), typ) {
				add("event destination %s does not publish %s", name, typ)
			}
		}
		_, topic, ok := reference(str(block(ed["sns_destination"])["topic_arn"]))
		if !ok || w.doc.resources("aws_sns_topic")[topic] == nil {
			add("event destination %s publishes to %v, not a topic of the stack", name, block(ed["sns_destination"])["topic_arn"])
			continue
		}
		set := fmt.Sprintf("arn:%s:ses:%s:%s:configuration-set/%s", partition(w.region), w.region, w.account, d["configuration_set_name"])
		if !slices.ContainsFunc(w.publishers(topic), func(p publisher) bool {
			return p.service == "ses.amazonaws.com" && p.stmt.conditionMatches("aws:SourceArn", set)
		}) {
			add("event destination %s: topic %s does not let SES publish for %s", name, topic, set)
		}
		if policy := w.topicPolicy(topic); policy == "" || !slices.Contains(list(d["depends_on"]), "aws_sns_topic_policy."+policy) {
			add("event destination %s does not wait for its topic's policy: SES cannot publish until it exists", name)
		}
		subscribed := false
		for sname, sub := range w.doc.resources("aws_sns_topic_subscription") {
			if sub["topic_arn"] != "${aws_sns_topic."+topic+".arn}" || sub["protocol"] != "sqs" {
				continue
			}
			subscribed = true
			if sub["raw_message_delivery"] != false {
				add("subscription %s delivers raw events: the processor reads the SNS envelope", sname)
			}
			queues := w.subscriptionQueues(sub)
			for _, q := range queues {
				if !w.queueAdmits(q, w.topicARN(topic)) {
					add("subscription %s: the policy of %s does not admit topic %s", sname, q, topic)
				}
			}
			if len(queues) < 2 {
				add("subscription %s has no redrive queue: what SNS cannot deliver is lost", sname)
			}
			_, qname, _ := reference(queues[0])
			queue := w.doc.resources("aws_sqs_queue")[qname]
			url := fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", w.region, w.account, queue["name"])
			if sender[contract.FeedbackQueueURL.Name] != url {
				add("the sender reads feedback from %q, the topic delivers to %s", sender[contract.FeedbackQueueURL.Name], url)
			}
			if sender[contract.FeedbackTopicARN.Name] != w.topicARN(topic) {
				add("the sender accepts events of topic %q, they come from %s", sender[contract.FeedbackTopicARN.Name], w.topicARN(topic))
			}
			if want := strconv.Itoa(int(num(queue["visibility_timeout_seconds"]))) + "s"; sender[contract.FeedbackVisibility.Name] != want {
				add("HERALD_FEEDBACK_VISIBILITY %q, the feedback queue's visibility timeout %s", sender[contract.FeedbackVisibility.Name], want)
			}
			if !slices.ContainsFunc(w.roleStatements(senderRole), func(s stmt) bool {
				return s.grants("sqs:ReceiveMessage", "sqs:DeleteMessage") && slices.Contains(s.resources, queues[0])
			}) {
				add("the sender may not receive and delete from the feedback queue %s", queues[0])
			}
		}
		if !subscribed {
			add("topic %s has no SQS subscription: the events go nowhere", topic)
		}
	}
	return problems
}

// publisher is a service a topic's policy lets publish, with the statement.
type publisher struct {
	service string
	stmt    stmt
}

// publishers are the services a topic's policy lets publish to it.
func (w wired) publishers(topic string) []publisher {
	var out []publisher
	for _, p := range w.doc.resources("aws_sns_topic_policy") {
		if p["arn"] != "${aws_sns_topic."+topic+".arn}" {
			continue
		}
		for _, s := range w.documentStatements(p["policy"]) {
			if s.grants("sns:Publish") {
				for _, svc := range s.principals["Service"] {
					out = append(out, publisher{svc, s})
				}
			}
		}
	}
	return out
}

// sameSources: the key statement k admits every source the policy
// statement p admits (aws:SourceArn and aws:SourceAccount).
func sameSources(k, p stmt) bool {
	for _, c := range p.conditions {
		if c.Variable != "aws:SourceArn" && c.Variable != "aws:SourceAccount" {
			continue
		}
		if !slices.ContainsFunc(k.conditions, func(kc Condition) bool { return kc.Variable == c.Variable }) {
			continue // the key admits every source of that kind
		}
		for _, v := range c.Values {
			if !k.conditionMatches(c.Variable, v) {
				return false
			}
		}
	}
	return true
}

func (w wired) topicPolicy(topic string) string {
	for name, p := range w.doc.resources("aws_sns_topic_policy") {
		if p["arn"] == "${aws_sns_topic."+topic+".arn}" {
			return name
		}
	}
	return ""
}

func (w wired) topicARN(topic string) string {
	return fmt.Sprintf("arn:%s:sns:%s:%s:%s", partition(w.region), w.region, w.account, w.doc.resources("aws_sns_topic")[topic]["name"])
}

// subscriptionQueues are a subscription's queue and its redrive queue, as
// references.
func (w wired) subscriptionQueues(sub map[string]any) []string {
	out := []string{str(sub["endpoint"])}
	var rp struct {
		Target string `json:"deadLetterTargetArn"`
	}
	json.Unmarshal([]byte(str(sub["redrive_policy"])), &rp)
	for name, q := range w.doc.resources("aws_sqs_queue") {
		if rp.Target != "" && sqsARN(w.region, w.account, str(q["name"])) == rp.Target {
			out = append(out, "${aws_sqs_queue."+name+".arn}")
		}
	}
	return out
}

// queueAdmits: the queue's policy lets SNS send from topicARN, and no
// deny refuses it.
func (w wired) queueAdmits(queueRef, topicARN string) bool {
	_, name, _ := reference(queueRef)
	allowed := false
	for _, p := range w.doc.resources("aws_sqs_queue_policy") {
		if p["queue_url"] != "${aws_sqs_queue."+name+".url}" {
			continue
		}
		for _, s := range w.documentStatements(p["policy"]) {
			if s.allows("Service", "sns.amazonaws.com") && s.grants("sqs:SendMessage") && s.conditionMatches("aws:SourceArn", topicARN) {
				allowed = true
			}
			if s.effect == "Deny" && slices.Contains(s.actions, "sqs:SendMessage") && slices.ContainsFunc(s.conditions, func(c Condition) bool {
				return c.Test == "ArnNotEquals" && c.Variable == "aws:SourceArn" && !slices.Contains(c.Values, topicARN)
			}) {
				return false
			}
		}
	}
	return allowed
}

// ---- reading the stack ----

// stmt is one policy statement, flattened.
type stmt struct {
	effect     string
	actions    []string
	resources  []string
	principals map[string][]string
	conditions []Condition
}

func (s stmt) grants(actions ...string) bool {
	if s.effect == "Deny" {
		return false
	}
	for _, a := range actions {
		if !slices.Contains(s.actions, a) {
			return false
		}
	}
	return true
}

func (s stmt) allows(kind, principal string) bool {
	return s.effect != "Deny" && slices.Contains(s.principals[kind], principal)
}

// conditionMatches reports whether the statement's condition on variable
// (ArnLike/ArnEquals/StringLike/StringEquals) admits value.
func (s stmt) conditionMatches(variable, value string) bool {
	for _, c := range s.conditions {
		if c.Variable != variable {
			continue
		}
		for _, pattern := range c.Values {
			if ok, _ := path.Match(pattern, value); ok || pattern == value {
				return true
			}
		}
	}
	return false
}

// documentStatements reads the aws_iam_policy_document a policy attribute
// references.
func (w wired) documentStatements(policy any) []stmt {
	m := docReference.FindStringSubmatch(fmt.Sprint(policy))
	if m == nil {
		return nil
	}
	var out []stmt
	for _, st := range blocks(w.doc.data("aws_iam_policy_document")[m[1]]["statement"]) {
		s := stmt{actions: list(st["actions"]), resources: list(st["resources"]), principals: map[string][]string{}}
		s.effect, _ = st["effect"].(string)
		for _, p := range blocks(st["principals"]) {
			s.principals[str(p["type"])] = append(s.principals[str(p["type"])], list(p["identifiers"])...)
		}
		for _, c := range blocks(st["condition"]) {
			s.conditions = append(s.conditions, Condition{Test: str(c["test"]), Variable: str(c["variable"]), Values: list(c["values"])})
		}
		out = append(out, s)
	}
	return out
}

// roleStatements are the statements of a role's inline policies, by the
// role's logical name.
func (w wired) roleStatements(role string) []stmt {
	var out []stmt
	for _, p := range w.doc.resources("aws_iam_role_policy") {
		if p["role"] == "${aws_iam_role."+role+".id}" {
			out = append(out, w.documentStatements(p["policy"])...)
		}
	}
	return out
}

func (w wired) mayWriteLogs(role, group string) bool {
	for name, g := range w.doc.resources("aws_cloudwatch_log_group") {
		if g["name"] != group {
			continue
		}
		return slices.ContainsFunc(w.roleStatements(role), func(s stmt) bool {
			return s.grants("logs:CreateLogStream", "logs:PutLogEvents") && slices.Contains(s.resources, "${aws_cloudwatch_log_group."+name+".arn}:*")
		})
	}
	return false
}

// containers decodes a task definition's containers; the tests' own
// decoder fails the test, this one reports nothing for a mutated document.
func (w wired) containers(td map[string]any) map[string]container {
	out := map[string]container{}
	text, _ := td["container_definitions"].(string)
	if strings.HasPrefix(text, "${jsonencode(") {
		return out // rendered by Terraform; the SMTP path, not a declared stack
	}
	var list []container
	json.Unmarshal([]byte(text), &list)
	for _, c := range list {
		out[c.Name] = c
	}
	return out
}

var (
	wholeReference = regexp.MustCompile(`^\$\{(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)\.[a-z_]+\}$`)
	anyReference   = regexp.MustCompile(`\b(data\.)?(aws_[a-z0-9_]+)\.([A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*_[0-9A-F]{8})\b`)
)

// reference splits "${type.name.attr}".
func reference(s string) (typ, name string, ok bool) {
	m := wholeReference.FindStringSubmatch(s)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func isRefTo(v any, typ string, doc tfDoc) bool {
	s, _ := v.(string)
	t, name, ok := reference(s)
	return ok && t == typ && doc.resources(typ)[name] != nil
}

// secretOf strips the JSON key ECS reads from a secret's valueFrom.
func secretOf(valueFrom string) string {
	if i := strings.Index(valueFrom, "}:"); i > 0 && strings.HasPrefix(valueFrom, "${") {
		return valueFrom[:i+1]
	}
	return valueFrom
}

// list reads a list of strings (nil if v is none).
func list(v any) []string {
	items, _ := v.([]any)
	var out []string
	for _, e := range items {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// ---- mutation helpers ----

func deepCopy(t *testing.T, d tfDoc) tfDoc {
	t.Helper()
	return decode(t, mustJSON(d))
}

func docOf(t *testing.T, policy any) string {
	t.Helper()
	m := docReference.FindStringSubmatch(fmt.Sprint(policy))
	if m == nil {
		t.Fatalf("%v is not a policy document reference", policy)
	}
	return m[1]
}

// remove deletes the one resource of typ whose logical name contains part.
func remove(t *testing.T, d tfDoc, typ, part string) {
	t.Helper()
	name := logicalName(t, d, typ, part)
	delete(d["resource"].(map[string]any)[typ].(map[string]any), name)
}

// dropAction removes an action from every statement of a role's policies.
func dropAction(t *testing.T, d tfDoc, rolePart, action string) {
	t.Helper()
	dropped := false
	for name, p := range d.resources("aws_iam_role_policy") {
		if !strings.Contains(name, rolePart) {
			continue
		}
		for _, st := range blocks(d.data("aws_iam_policy_document")[docOf(t, p["policy"])]["statement"]) {
			actions := strs(t, st["actions"])
			if i := slices.Index(actions, action); i >= 0 {
				st["actions"] = toAny(slices.Delete(actions, i, i+1))
				dropped = true
			}
		}
	}
	if !dropped {
		t.Fatalf("no %s in the policies of *%s*", action, rolePart)
	}
}

// dropStatement removes the statement with sid from the policy document a
// policy attribute references.
func dropStatement(t *testing.T, d tfDoc, policy any, sid string) {
	t.Helper()
	doc := d.data("aws_iam_policy_document")[docOf(t, policy)]
	var kept []any
	for _, st := range blocks(doc["statement"]) {
		if st["sid"] != sid {
			kept = append(kept, st)
		}
	}
	if len(kept) == len(blocks(doc["statement"])) {
		t.Fatalf("no statement %s", sid)
	}
	doc["statement"] = kept
}

// dropStatementOfRole removes a statement from a role's policies.
func dropStatementOfRole(t *testing.T, d tfDoc, rolePart, sid string) {
	t.Helper()
	for name, p := range d.resources("aws_iam_role_policy") {
		if strings.Contains(name, rolePart) {
			dropStatement(t, d, p["policy"], sid)
			return
		}
	}
	t.Fatalf("no role *%s*", rolePart)
}

// setContainerEnv changes one environment value of a container.
func setContainerEnv(t *testing.T, d tfDoc, taskPart, containerName, variable, value string) {
	t.Helper()
	td := d.named(t, "aws_ecs_task_definition", taskPart)
	var list []map[string]any
	if err := json.Unmarshal([]byte(td["container_definitions"].(string)), &list); err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c["name"] != containerName {
			continue
		}
		for _, e := range c["environment"].([]any) {
			if kv := e.(map[string]any); kv["name"] == variable {
				kv["value"] = value
				td["container_definitions"] = mustJSON(list)
				return
			}
		}
	}
	t.Fatalf("no %s in container %s", variable, containerName)
}

// dropDependency removes a resource's depends_on entries starting with
// prefix.
func dropDependency(t *testing.T, r map[string]any, prefix string) {
	t.Helper()
	r["depends_on"] = without(strs(t, r["depends_on"]), prefix)
}

func without(list []string, prefix string) []any {
	var out []any
	for _, s := range list {
		if !strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func toAny(list []string) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}
