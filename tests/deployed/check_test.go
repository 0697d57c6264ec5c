package deployed

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/applicationautoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	http_helper "github.com/gruntwork-io/terratest/modules/http-helper"
	"github.com/gruntwork-io/terratest/modules/random"
	"github.com/gruntwork-io/terratest/modules/retry"

	"herald/services/devstack"
)

// Mailbox simulator addresses: SES accepts both; the second bounces.
const (
	simulatorSuccess = "success@simulator.amazonses.com"
	simulatorBounce  = "bounce@simulator.amazonses.com"
)

// runTag is the SES message tag (from the notification's metadata) that
// tells this run's mail apart in CloudWatch.
const runTag = "herald_e2e_run"

// deployment is one applied stack under test.
type deployment struct {
	t     *testing.T
	ctx   context.Context
	cfg   aws.Config
	stack string
	mode  string
	start time.Time
	out   map[string]string

	apiKey string
	run    string // value of runTag for this run's mail
}

// check runs every check of the deployed stack in order. Its first steps
// are stacks/README.md's first-deploy steps after the deploy: the API
// becomes healthy on its own (with the empty key set the stack stores),
// then the operator stores a key, which needs no deploy.
func (d *deployment) check() {
	d.run = strings.ToLower(random.UniqueId())
	if got := d.out["mesh_mode"]; got != d.mode {
		d.t.Fatalf("stack output mesh_mode %q, want %q", got, d.mode)
	}
	// Step 3: the API's tasks are healthy before anyone stores a key.
	d.waitHealthy()
	d.servicesAtDesiredCount()
	d.unauthorizedWithoutKeys()
	// Step 4: store a key; the API picks it up on its next refresh.
	d.installAPIKey()
	d.scalesOnCPU()
	d.logGroupsExist()
	d.stateStoreExists()
	d.feedbackPathExists()
	d.parametersPublished()
	d.alarmIs("dlq-not-empty", cwtypes.StateValueOk, 10*time.Minute)
	d.sendThroughSimulator()
	d.feedbackStatuses()
	d.deadLetterAlarm()
}

// installAPIKey stores a fresh key's hash in the API key secret, as
// stacks/README.md says: put-secret-value and nothing else. The API reads
// the secret again every HERALD_API_KEYS_REFRESH; post retries on 401 until
// it has.
func (d *deployment) installAPIKey() {
	key, hash, err := devstack.MintKey()
	if err != nil {
		d.t.Fatal(err)
	}
	d.apiKey = key
	value := mustJSON(map[string]string{"e2e": hash})
	if _, err := secretsmanager.NewFromConfig(d.cfg).PutSecretValue(d.ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(d.out["api_keys_secret_arn"]), SecretString: aws.String(string(value)),
	}); err != nil {
		d.t.Fatalf("store the API key hash: %v", err)
	}
}

// unauthorizedWithoutKeys checks that the API started with the stack's empty
// key set refuses a request: 401, not an open door nor a crash.
func (d *deployment) unauthorizedWithoutKeys() {
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.out["api_url"]+"/api/notifications", bytes.NewReader(mustJSON(map[string]any{"to": []string{simulatorSuccess}, "subject": "x", "text": "x"})))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer not-a-key")
	resp, err := client.Do(req)
	if err != nil {
		d.t.Fatalf("post without a stored key: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		d.t.Fatalf("post before any key is stored: status %d, want 401", resp.StatusCode)
	}
}

// waitHealthy waits for the API's health path through the load balancer.
func (d *deployment) waitHealthy() {
	// The listener's certificate (with one) is for the organisation's
	// domain, not the load balancer's own name this test calls.
	tlsConfig := &tls.Config{InsecureSkipVerify: true}
	http_helper.HttpGetWithRetryWithCustomValidation(d.t, d.out["api_url"]+"/api", tlsConfig, 90, 10*time.Second,
		func(status int, _ string) bool { return status == http.StatusOK })
}

// servicesAtDesiredCount waits until both ECS services run their desired
// count of tasks on one completed deployment.
func (d *deployment) servicesAtDesiredCount() {
	client := ecs.NewFromConfig(d.cfg)
	retry.DoWithRetry(d.t, "both ECS services at their desired count", 60, 15*time.Second, func() (string, error) {
		out, err := client.DescribeServices(d.ctx, &ecs.DescribeServicesInput{
			Cluster:  aws.String(d.out["cluster_name"]),
			Services: []string{d.out["api_service_name"], d.out["sender_service_name"]},
		})
		if err != nil {
			return "", err
		}
		if len(out.Services) != 2 {
			return "", fmt.Errorf("%d services found, failures %v", len(out.Services), out.Failures)
		}
		var states []string
		ready := true
		for _, s := range out.Services {
			done := len(s.Deployments) == 1 && s.Deployments[0].RolloutState == ecstypes.DeploymentRolloutStateCompleted
			states = append(states, fmt.Sprintf("%s %d/%d running, %d deployments", aws.ToString(s.ServiceName), s.RunningCount, s.DesiredCount, len(s.Deployments)))
			if s.DesiredCount < 1 || s.RunningCount != s.DesiredCount || !done {
				ready = false
			}
		}
		if !ready {
			return "", fmt.Errorf("%s", strings.Join(states, "; "))
		}
		return strings.Join(states, "; "), nil
	})
}

// scalesOnCPU checks each service's target tracking policy aims at 70% CPU.
func (d *deployment) scalesOnCPU() {
	client := applicationautoscaling.NewFromConfig(d.cfg)
	for _, svc := range []string{d.out["api_service_name"], d.out["sender_service_name"]} {
		resource := "service/" + d.out["cluster_name"] + "/" + svc
		out, err := client.DescribeScalingPolicies(d.ctx, &applicationautoscaling.DescribeScalingPoliciesInput{
			ServiceNamespace: astypes.ServiceNamespaceEcs, ResourceId: aws.String(resource),
		})
		if err != nil {
			d.t.Fatalf("scaling policies of %s: %v", svc, err)
		}
		found := false
		for _, p := range out.ScalingPolicies {
			c := p.TargetTrackingScalingPolicyConfiguration
			if p.PolicyType != astypes.PolicyTypeTargetTrackingScaling || c == nil || c.PredefinedMetricSpecification == nil {
				continue
			}
			if c.PredefinedMetricSpecification.PredefinedMetricType == astypes.MetricTypeECSServiceAverageCPUUtilization {
				found = true
				if aws.ToFloat64(c.TargetValue) != 70 {
					d.t.Errorf("%s scales on CPU with target %g%%, want 70%%", svc, aws.ToFloat64(c.TargetValue))
				}
			}
		}
		if !found {
			d.t.Errorf("%s has no target tracking policy on ECSServiceAverageCPUUtilization (%d policies)", svc, len(out.ScalingPolicies))
		}
	}
}

// logGroupsExist checks both log groups exist, encrypted, with retention.
func (d *deployment) logGroupsExist() {
	client := cloudwatchlogs.NewFromConfig(d.cfg)
	for _, name := range []string{d.out["api_log_group_name"], d.out["sender_log_group_name"]} {
		out, err := client.DescribeLogGroups(d.ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(name)})
		if err != nil {
			d.t.Fatalf("log group %s: %v", name, err)
		}
		found := false
		for _, g := range out.LogGroups {
			if aws.ToString(g.LogGroupName) != name {
				continue
			}
			found = true
			if g.RetentionInDays == nil || aws.ToString(g.KmsKeyId) == "" {
				d.t.Errorf("log group %s: retention %v, key %q; want both set", name, g.RetentionInDays, aws.ToString(g.KmsKeyId))
			}
		}
		if !found {
			d.t.Errorf("log group %s does not exist", name)
		}
	}
}

// stateStoreExists checks the state store as issue 11 wants it: active, on
// demand, the string key pk, TTL on expiresAt, encrypted with its own KMS
// key.
func (d *deployment) stateStoreExists() {
	client := dynamodb.NewFromConfig(d.cfg)
	name := d.out["table_name"]
	out, err := client.DescribeTable(d.ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		d.t.Fatalf("table %s: %v", name, err)
	}
	tb := out.Table
	if aws.ToString(tb.TableArn) != d.out["table_arn"] || tb.TableStatus != ddbtypes.TableStatusActive {
		d.t.Errorf("table %s: ARN %s (output %s), status %s", name, aws.ToString(tb.TableArn), d.out["table_arn"], tb.TableStatus)
	}
	if tb.BillingModeSummary == nil || tb.BillingModeSummary.BillingMode != ddbtypes.BillingModePayPerRequest {
		d.t.Errorf("table %s is not on demand: %+v", name, tb.BillingModeSummary)
	}
	if len(tb.KeySchema) != 1 || aws.ToString(tb.KeySchema[0].AttributeName) != "pk" || tb.KeySchema[0].KeyType != ddbtypes.KeyTypeHash {
		d.t.Errorf("table %s: key schema %+v, want pk (hash) only", name, tb.KeySchema)
	}
	if sse := tb.SSEDescription; sse == nil || sse.SSEType != ddbtypes.SSETypeKms || sse.Status != ddbtypes.SSEStatusEnabled || aws.ToString(sse.KMSMasterKeyArn) == "" {
		d.t.Errorf("table %s is not encrypted with a customer managed key: %+v", name, sse)
	}
	ttl, err := client.DescribeTimeToLive(d.ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil {
		d.t.Fatalf("table %s TTL: %v", name, err)
	}
	if desc := ttl.TimeToLiveDescription; desc == nil || aws.ToString(desc.AttributeName) != "expiresAt" ||
		(desc.TimeToLiveStatus != ddbtypes.TimeToLiveStatusEnabled && desc.TimeToLiveStatus != ddbtypes.TimeToLiveStatusEnabling) {
		d.t.Errorf("table %s: TTL %+v, want expiresAt enabled", name, desc)
	}
}

// feedbackPathExists checks, in a stack with a configuration set, that SES
// publishes its events to the feedback topic and the topic's queue is
// encrypted and redrives to its DLQ (issue 14).
func (d *deployment) feedbackPathExists() {
	set := d.out["ses_configuration_set"]
	if set == "" {
		return
	}
	for _, k := range []string{"feedback_queue_url", "feedback_dlq_url", "feedback_topic_arn"} {
		if d.out[k] == "" {
			d.t.Fatalf("stack output %s is missing in a stack with the configuration set %s", k, set)
		}
	}
	dests, err := sesv2.NewFromConfig(d.cfg).GetConfigurationSetEventDestinations(d.ctx, &sesv2.GetConfigurationSetEventDestinationsInput{ConfigurationSetName: aws.String(set)})
	if err != nil {
		d.t.Fatalf("event destinations of %s: %v", set, err)
	}
	published := false
	for _, e := range dests.EventDestinations {
		if e.SnsDestination != nil && aws.ToString(e.SnsDestination.TopicArn) == d.out["feedback_topic_arn"] && e.Enabled {
			published = len(e.MatchingEventTypes) == 7
		}
	}
	if !published {
		d.t.Errorf("configuration set %s does not publish the seven event types to %s: %+v", set, d.out["feedback_topic_arn"], dests.EventDestinations)
	}
	attrs, err := sqs.NewFromConfig(d.cfg).GetQueueAttributes(d.ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(d.out["feedback_queue_url"]),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		d.t.Fatalf("feedback queue: %v", err)
	}
	dlqName := d.out["feedback_dlq_url"][strings.LastIndex(d.out["feedback_dlq_url"], "/")+1:]
	if attrs.Attributes["KmsMasterKeyId"] == "" || !strings.Contains(attrs.Attributes["RedrivePolicy"], ":"+dlqName+`"`) {
		d.t.Errorf("feedback queue: key %q, redrive %q; want encrypted, redriving to %s", attrs.Attributes["KmsMasterKeyId"], attrs.Attributes["RedrivePolicy"], dlqName)
	}
}

// parametersPublished checks that service teams read the same values from
// SSM as the stack's outputs (issue 15), and that no parameter under the
// path is a SecureString.
func (d *deployment) parametersPublished() {
	path := d.out["parameter_path"]
	got := map[string]string{}
	pages := ssm.NewGetParametersByPathPaginator(ssm.NewFromConfig(d.cfg), &ssm.GetParametersByPathInput{Path: aws.String(path), Recursive: aws.Bool(true)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(d.ctx)
		if err != nil {
			d.t.Fatalf("parameters under %s: %v", path, err)
		}
		for _, p := range page.Parameters {
			if p.Type != "String" {
				d.t.Errorf("parameter %s is a %s, want String", aws.ToString(p.Name), p.Type)
			}
			got[strings.TrimPrefix(aws.ToString(p.Name), path+"/")] = aws.ToString(p.Value)
		}
	}
	for parameter, output := range map[string]string{
		"api-url": "api_url", "queue-url": "queue_url", "queue-arn": "queue_arn", "dlq-url": "dlq_url", "dlq-arn": "dlq_arn",
		"api-keys-secret-arn": "api_keys_secret_arn", "api-log-group": "api_log_group_name", "sender-log-group": "sender_log_group_name",
		"dashboard-url": "dashboard_url", "table-name": "table_name", "table-arn": "table_arn",
	} {
		if got[parameter] == "" || got[parameter] != d.out[output] {
			d.t.Errorf("parameter %s/%s = %q, output %s = %q", path, parameter, got[parameter], output, d.out[output])
		}
	}
}

// sendThroughSimulator posts notifications to the SES mailbox simulator and
// checks their whole way: the queue drains, the sender logs each send once,
// SES delivers the success ones and bounces the bounce one (seen through a
// CloudWatch event destination on the stack's configuration set, keyed by
// this run's message tag), and nothing is dead-lettered or counted failed.
func (d *deployment) sendThroughSimulator() {
	const successes = 5
	if set := d.out["ses_configuration_set"]; set != "" {
		d.publishEventsToCloudWatch(set)
	} else {
		d.t.Errorf("the environment has no SES configuration set (Email.ConfigurationSet): the bounce cannot be observed")
	}
	posted := time.Now()
	ids := map[string]string{} // envelope id -> recipient
	for i := range successes + 1 {
		to := simulatorSuccess
		if i == successes {
			to = simulatorBounce
		}
		id := d.post(map[string]any{
			"to":       []string{to},
			"subject":  fmt.Sprintf("Herald e2e %s #%d", d.run, i),
			"text":     "Herald deployed-stack test",
			"metadata": map[string]string{runTag: d.run},
		})
		ids[id] = to
	}

	d.queueDrains(d.out["queue_url"])
	logged := d.sentLogLines(posted, ids)
	dups := 0
	for _, n := range logged {
		dups += max(n-1, 0)
	}

	// SES's own account of the mail, per this run's tag.
	var bounces, deliveries float64
	if d.out["ses_configuration_set"] != "" {
		bounces = d.metricSum("AWS/SES", "Bounce", []cwtypes.Dimension{{Name: aws.String(runTag), Value: aws.String(d.run)}}, posted, 1)
		deliveries = d.metricSum("AWS/SES", "Delivery", []cwtypes.Dimension{{Name: aws.String(runTag), Value: aws.String(d.run)}}, posted, successes)
	}
	// Herald's account: a bounce is a send SES accepted, not a failure.
	env := strings.TrimPrefix(d.stack, "herald-")
	dims := []cwtypes.Dimension{{Name: aws.String("Environment"), Value: aws.String(env)}, {Name: aws.String("Service"), Value: aws.String("email-sender")}}
	sent := d.metricSum("Herald", "Sent", dims, posted, successes+1)
	failed := d.metricSum("Herald", "Failed", dims, posted, 0)
	if failed != 0 {
		d.t.Errorf("the sender counted %g failures; a bounce is not a send failure", failed)
	}
	if dead := d.peek(d.out["dlq_url"]); len(dead) != 0 {
		d.t.Errorf("%d messages in the dead-letter queue after sending to the simulator", len(dead))
	}
	d.t.Logf("FIGURES deployed %s: sent %d, logged sent %d, duplicates %d, lost %d, dead-lettered 0; SES deliveries %g, bounces %g; Herald Sent %g, Failed %g; elapsed %s",
		d.mode, len(ids), len(logged), dups, len(ids)-len(logged), deliveries, bounces, sent, failed, time.Since(d.start).Round(time.Second))
}

// publishEventsToCloudWatch adds an event destination to the stack's
// configuration set for the test's duration: SES then publishes Send,
// Delivery and Bounce counts to CloudWatch with this run's tag as a
// dimension. Destroying the stack deletes the set with it.
func (d *deployment) publishEventsToCloudWatch(set string) {
	client := sesv2.NewFromConfig(d.cfg)
	name := "herald-e2e-" + d.run
	if _, err := client.CreateConfigurationSetEventDestination(d.ctx, &sesv2.CreateConfigurationSetEventDestinationInput{
		ConfigurationSetName: aws.String(set),
		EventDestinationName: aws.String(name),
		EventDestination: &sestypes.EventDestinationDefinition{
			Enabled:            true,
			MatchingEventTypes: []sestypes.EventType{sestypes.EventTypeSend, sestypes.EventTypeDelivery, sestypes.EventTypeBounce},
			CloudWatchDestination: &sestypes.CloudWatchDestination{DimensionConfigurations: []sestypes.CloudWatchDimensionConfiguration{{
				DimensionName: aws.String(runTag), DimensionValueSource: sestypes.DimensionValueSourceMessageTag, DefaultDimensionValue: aws.String("none"),
			}}},
		},
	}); err != nil {
		d.t.Fatalf("add a CloudWatch event destination to configuration set %s: %v", set, err)
	}
	d.t.Cleanup(func() {
		client.DeleteConfigurationSetEventDestination(context.Background(), &sesv2.DeleteConfigurationSetEventDestinationInput{
			ConfigurationSetName: aws.String(set), EventDestinationName: aws.String(name),
		})
	})
}

// post sends one notification with the test's key and returns its envelope
// id; it retries while the API answers 401 (its tasks read the key secret
// again every HERALD_API_KEYS_REFRESH, 5 minutes by default) or 503.
func (d *deployment) post(n map[string]any) string {
	body := mustJSON(n)
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return retry.DoWithRetry(d.t, "post a notification", 45, 10*time.Second, func() (string, error) {
		req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.out["api_url"]+"/api/notifications", bytes.NewReader(body))
		if err != nil {
			return "", retry.FatalError{Underlying: err}
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+d.apiKey)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusAccepted:
			var acc struct{ ID string }
			if err := json.Unmarshal(b, &acc); err != nil || acc.ID == "" {
				return "", retry.FatalError{Underlying: fmt.Errorf("202 without an id: %s", b)}
			}
			return acc.ID, nil
		case http.StatusUnauthorized, http.StatusServiceUnavailable, http.StatusBadGateway:
			return "", fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return "", retry.FatalError{Underlying: fmt.Errorf("%d %s", resp.StatusCode, b)}
	})
}

// queueDrains waits until the queue reports no message, visible, in flight
// or delayed, twice in a row (SQS's counts are approximate).
func (d *deployment) queueDrains(url string) {
	client := sqs.NewFromConfig(d.cfg)
	zeros := 0
	retry.DoWithRetry(d.t, "the queue drains", 60, 10*time.Second, func() (string, error) {
		out, err := client.GetQueueAttributes(d.ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{
				sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
			},
		})
		if err != nil {
			return "", err
		}
		total := 0
		for _, v := range out.Attributes {
			n, _ := strconv.Atoi(v)
			total += n
		}
		if total != 0 {
			zeros = 0
			return "", fmt.Errorf("%v", out.Attributes)
		}
		if zeros++; zeros < 2 {
			return "", errNotYet
		}
		return "drained", nil
	})
}

// sentLogLines waits until the sender's log group shows a "message sent"
// line for every posted envelope, and returns how many each has.
func (d *deployment) sentLogLines(since time.Time, ids map[string]string) map[string]int {
	client := cloudwatchlogs.NewFromConfig(d.cfg)
	var seen map[string]int
	retry.DoWithRetry(d.t, "the sender logs every send", 40, 15*time.Second, func() (string, error) {
		seen = map[string]int{}
		p := cloudwatchlogs.NewFilterLogEventsPaginator(client, &cloudwatchlogs.FilterLogEventsInput{
			LogGroupName:  aws.String(d.out["sender_log_group_name"]),
			StartTime:     aws.Int64(since.Add(-time.Minute).UnixMilli()),
			FilterPattern: aws.String(`{ $.msg = "message sent" }`),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(d.ctx)
			if err != nil {
				return "", err
			}
			for _, e := range page.Events {
				var line struct {
					EnvelopeID string `json:"envelopeId"`
					ProviderID string `json:"providerId"`
				}
				if json.Unmarshal([]byte(aws.ToString(e.Message)), &line) == nil && line.ProviderID != "" {
					if _, ours := ids[line.EnvelopeID]; ours {
						seen[line.EnvelopeID]++
					}
				}
			}
		}
		if len(seen) < len(ids) {
			return "", fmt.Errorf("%d of %d sends logged", len(seen), len(ids))
		}
		return "", nil
	})
	return seen
}

// metricSum waits until a metric's sum since start reaches at least want
// (CloudWatch takes minutes to show it) and returns it; want 0 reads once.
func (d *deployment) metricSum(namespace, metric string, dims []cwtypes.Dimension, since time.Time, want float64) float64 {
	client := cloudwatch.NewFromConfig(d.cfg)
	var sum float64
	read := func() (string, error) {
		out, err := client.GetMetricStatistics(d.ctx, &cloudwatch.GetMetricStatisticsInput{
			Namespace: aws.String(namespace), MetricName: aws.String(metric), Dimensions: dims,
			StartTime: aws.Time(since.Add(-5 * time.Minute)), EndTime: aws.Time(time.Now().Add(5 * time.Minute)),
			Period: aws.Int32(60), Statistics: []cwtypes.Statistic{cwtypes.StatisticSum},
		})
		if err != nil {
			return "", err
		}
		sum = 0
		for _, p := range out.Datapoints {
			sum += aws.ToFloat64(p.Sum)
		}
		if sum < want {
			return "", fmt.Errorf("%s/%s = %g, want %g", namespace, metric, sum, want)
		}
		return "", nil
	}
	if want == 0 {
		if _, err := read(); err != nil {
			d.t.Fatal(err)
		}
		return sum
	}
	retry.DoWithRetry(d.t, namespace+"/"+metric, 40, 15*time.Second, read)
	return sum
}

// deadLetterAlarm puts a message no sender can read on the queue: the
// sender dead-letters it with class unreadable, the DLQ alarm fires; once
// the DLQ is emptied the alarm returns to OK.
func (d *deployment) deadLetterAlarm() {
	client := sqs.NewFromConfig(d.cfg)
	body := "not a Herald envelope " + d.run
	if _, err := client.SendMessage(d.ctx, &sqs.SendMessageInput{QueueUrl: aws.String(d.out["queue_url"]), MessageBody: aws.String(body)}); err != nil {
		d.t.Fatalf("put a poison message on the queue: %v", err)
	}
	var dead []sqstypes.Message
	retry.DoWithRetry(d.t, "the poison message is dead-lettered", 30, 10*time.Second, func() (string, error) {
		dead = d.peek(d.out["dlq_url"])
		if len(dead) == 0 {
			return "", errNotYet
		}
		return "", nil
	})
	if len(dead) != 1 || aws.ToString(dead[0].Body) != body {
		d.t.Fatalf("the DLQ holds %d messages, want only the poison one", len(dead))
	}
	attrs := dead[0].MessageAttributes
	if class := aws.ToString(attrs["herald.failure.class"].StringValue); class != "unreadable" {
		d.t.Errorf("dead letter class %q, want unreadable (attributes %v)", class, attrs)
	}
	d.alarmIs("dlq-not-empty", cwtypes.StateValueAlarm, 10*time.Minute)
	if _, err := client.PurgeQueue(d.ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(d.out["dlq_url"])}); err != nil {
		d.t.Fatalf("purge the DLQ: %v", err)
	}
	d.alarmIs("dlq-not-empty", cwtypes.StateValueOk, 15*time.Minute)
}

// peek receives every message in a queue and makes each visible again.
func (d *deployment) peek(url string) []sqstypes.Message {
	client := sqs.NewFromConfig(d.cfg)
	out, err := client.ReceiveMessage(d.ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 2, VisibilityTimeout: 5,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		d.t.Fatalf("peek %s: %v", url, err)
	}
	for _, m := range out.Messages {
		client.ChangeMessageVisibility(d.ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
	}
	return out.Messages
}

// alarmIs waits until the stack's alarm (by its name after the stack
// prefix) is in state.
func (d *deployment) alarmIs(name string, state cwtypes.StateValue, timeout time.Duration) {
	client := cloudwatch.NewFromConfig(d.cfg)
	full := d.stack + "-" + name
	retry.DoWithRetry(d.t, fmt.Sprintf("alarm %s in state %s", full, state), int(timeout/(15*time.Second)), 15*time.Second, func() (string, error) {
		out, err := client.DescribeAlarms(d.ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{full}})
		if err != nil {
			return "", err
		}
		if len(out.MetricAlarms) != 1 {
			return "", retry.FatalError{Underlying: fmt.Errorf("alarm %s: %d found", full, len(out.MetricAlarms))}
		}
		if got := out.MetricAlarms[0].StateValue; got != state {
			return "", fmt.Errorf("state %s", got)
		}
		return string(state), nil
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
