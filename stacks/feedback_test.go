package stacks

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/services/contract"
)

// TestFeedbackPolicies decodes the topic's, the queues' and the key's
// policies: only SES, for this configuration set of this account, may
// publish to the topic and use the key for it; only this topic may send to
// the feedback queue (no role of the account can forge an event) and to its
// DLQ; nothing travels without TLS.
func TestFeedbackPolicies(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewFeedback(stack, "feedback", &FeedbackProps{
			Prefix: "herald-test", Account: testAccount, Region: testRegion,
			ConfigurationSetName: "herald-test", Visibility: 30 * time.Second,
		})
	})
	w := wired{id: "test", region: testRegion, account: testAccount, doc: doc}
	set := "arn:aws:ses:" + testRegion + ":" + testAccount + ":configuration-set/herald-test"
	topic := "arn:aws:sns:" + testRegion + ":" + testAccount + ":herald-test-feedback"
	queue := sqsARN(testRegion, testAccount, "herald-test-feedback")
	dlq := sqsARN(testRegion, testAccount, "herald-test-feedback-dlq")
	refs := map[string]string{} // a queue's ARN -> its reference
	only := func(s stmt, variable, test string, values ...string) bool {
		for _, c := range s.conditions {
			if c.Variable == variable {
				return c.Test == test && slices.Equal(c.Values, values)
			}
		}
		return false
	}
	tlsOnly := func(what string, statements []stmt, resource string, actions ...string) {
		t.Helper()
		if !slices.ContainsFunc(statements, func(s stmt) bool {
			return s.effect == "Deny" && slices.Equal(s.principals["*"], []string{"*"}) && len(s.resources) == 1 && (s.resources[0] == resource || s.resources[0] == refs[resource]) &&
				only(s, "aws:SecureTransport", "Bool", "false") && !slices.ContainsFunc(actions, func(a string) bool { return !slices.Contains(s.actions, a) })
		}) {
			t.Errorf("%s: no TLS-only deny of %v", what, actions)
		}
	}
	// allows lists who each Allow statement admits, as "principal action resource".
	allows := func(statements []stmt) []string {
		var out []string
		for _, s := range statements {
			if s.effect == "Deny" {
				continue
			}
			for typ, ids := range s.principals {
				for _, id := range ids {
					out = append(out, typ+":"+id+" "+strings.Join(s.actions, ",")+" "+strings.Join(s.resources, ","))
				}
			}
		}
		return out
	}

	// The topic: SES publishes, for this set of this account only.
	tp := w.documentStatements(doc.only(t, "aws_sns_topic_policy")["policy"])
	if got := allows(tp); !slices.Equal(got, []string{"Service:ses.amazonaws.com sns:Publish " + topic}) {
		t.Errorf("the topic admits %v", got)
	}
	for _, s := range tp {
		if s.effect != "Deny" && (!only(s, "aws:SourceArn", "ArnEquals", set) || !only(s, "aws:SourceAccount", "StringEquals", testAccount)) {
			t.Errorf("SES publishes without naming the configuration set and account: %+v", s.conditions)
		}
	}
	tlsOnly("topic", tp, topic, "sns:Publish", "sns:Subscribe")

	// The queues: the topic sends, nobody else sends to the queue.
	policies := map[string][]stmt{}
	for _, p := range doc.resources("aws_sqs_queue_policy") {
		ref := strings.Replace(str(p["queue_url"]), ".url}", ".arn}", 1)
		_, name, _ := reference(ref)
		arn := sqsARN(testRegion, testAccount, str(doc.resources("aws_sqs_queue")[name]["name"]))
		policies[arn], refs[arn] = w.documentStatements(p["policy"]), ref
	}
	for _, q := range []string{queue, dlq} {
		if got := allows(policies[q]); !slices.Equal(got, []string{"Service:sns.amazonaws.com sqs:SendMessage " + q}) {
			t.Errorf("%s admits %v", q, got)
		}
		for _, s := range policies[q] {
			if s.effect != "Deny" && !only(s, "aws:SourceArn", "ArnEquals", topic) {
				t.Errorf("%s: SNS sends without naming the topic: %+v", q, s.conditions)
			}
		}
		tlsOnly(q, policies[q], q, "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage")
	}
	if !slices.ContainsFunc(policies[queue], func(s stmt) bool {
		return s.effect == "Deny" && slices.Equal(s.actions, []string{"sqs:SendMessage"}) && slices.Equal(s.principals["*"], []string{"*"}) &&
			only(s, "aws:SourceArn", "ArnNotEquals", topic)
	}) {
		t.Error("the feedback queue does not refuse SendMessage from anyone but the topic")
	}

	// The key: the account administers; SES for this set, SNS for this topic.
	keyStatements := w.documentStatements(doc.only(t, "aws_kms_key")["policy"])
	var services []string
	for _, s := range keyStatements {
		for _, svc := range s.principals["Service"] {
			services = append(services, svc)
			want := map[string]string{"ses.amazonaws.com": set, "sns.amazonaws.com": topic}[svc]
			if !slices.Equal(s.actions, []string{"kms:Decrypt", "kms:GenerateDataKey"}) || !only(s, "aws:SourceArn", "ArnEquals", want) || !only(s, "aws:SourceAccount", "StringEquals", testAccount) {
				t.Errorf("key grant to %s: %v with %+v, want Decrypt and GenerateDataKey for %s", svc, s.actions, s.conditions, want)
			}
		}
	}
	if !slices.Equal(services, []string{"ses.amazonaws.com", "sns.amazonaws.com"}) {
		t.Errorf("the key admits the services %v", services)
	}
	key := "${aws_kms_key." + logicalName(t, doc, "aws_kms_key", "key") + ".arn}"
	if doc.only(t, "aws_sns_topic")["kms_master_key_id"] != key {
		t.Error("the topic is not encrypted with the feedback key")
	}
	for name, q := range doc.resources("aws_sqs_queue") {
		if q["kms_master_key_id"] != key || num(q["visibility_timeout_seconds"]) != 30 {
			t.Errorf("queue %s: key %v, visibility %v", name, q["kms_master_key_id"], q["visibility_timeout_seconds"])
		}
		var rp struct {
			Target string `json:"deadLetterTargetArn"`
			Max    int    `json:"maxReceiveCount"`
		}
		if text, ok := q["redrive_policy"].(string); ok {
			if json.Unmarshal([]byte(text), &rp); rp.Target != dlq || rp.Max != 20 {
				t.Errorf("queue %s redrives %+v", name, rp)
			}
		}
	}

	// The subscription delivers the envelope, its failures to the DLQ; the
	// destination publishes every type the processor reads, once SES may.
	sub := doc.only(t, "aws_sns_topic_subscription")
	if sub["protocol"] != "sqs" || sub["raw_message_delivery"] != false || !strings.Contains(str(sub["redrive_policy"]), dlq) {
		t.Errorf("subscription %v", sub)
	}
	ed := doc.only(t, "aws_sesv2_configuration_set_event_destination")
	dest := block(ed["event_destination"])
	if ed["configuration_set_name"] != "herald-test" || dest["enabled"] != true || !slices.Equal(strs(t, dest["matching_event_types"]), contract.SESEventTypes()) {
		t.Errorf("event destination %v", ed)
	}
	deps := strings.Join(strs(t, ed["depends_on"]), " ")
	if !strings.Contains(deps, "aws_sns_topic_policy.") || !strings.Contains(deps, "aws_kms_key.") {
		t.Errorf("the event destination depends on %v, want the topic policy and the key", deps)
	}
}
