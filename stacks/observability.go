package stacks

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/cloudwatchdashboard"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/cloudwatchmetricalarm"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/snstopic"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/snstopicpolicy"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/snstopicsubscription"

	"herald/services/contract"
)

// MonitoredService is an ECS service whose running tasks are watched.
type MonitoredService struct {
	Name     string
	MinTasks int
}

// ObservabilityProps describe the dashboard, the alarms and their topic.
type ObservabilityProps struct {
	Prefix string
	// EnvironmentName is the environment's name: the services' metric
	// dimension Environment (HERALD_ENV).
	EnvironmentName string
	Account         string
	Region          string
	ClusterName     string
	Services        []MonitoredService
	// Queue and DeadLetter are queue names.
	Queue      string
	DeadLetter string
	// LoadBalancerARNSuffix and TargetGroupARNSuffix identify the API's
	// load balancer metrics.
	LoadBalancerARNSuffix *string
	TargetGroupARNSuffix  *string
	// AlarmEmail, when set, is subscribed to the alarm topic.
	AlarmEmail           string
	OldestMessageAge     time.Duration
	API5xxPercent        float64
	SenderFailurePercent float64
	// Table is the state store's table name.
	Table string
	// FeedbackQueue and FeedbackDeadLetter name the SES feedback queues;
	// empty without feedback. With them come the SES reputation alarms.
	FeedbackQueue, FeedbackDeadLetter string
}

// SES reviews an account at a bounce rate of 5 % and a complaint rate of
// 0.1 % (SES developer guide, "Reputation metrics"); Herald alarms before.
const (
	bounceRateAlarm    = 0.04
	complaintRateAlarm = 0.0008
	// feedbackOldestAge: an event older than this means the consumer is
	// stuck or the store is down.
	feedbackOldestAge = 15 * time.Minute
)

// Observability is the dashboard, the alarms and the encrypted alarm topic.
type Observability struct {
	constructs.Construct
	Key       *Key
	Topic     snstopic.SnsTopic
	Dashboard cloudwatchdashboard.CloudwatchDashboard
	// DashboardName is known at synth time.
	DashboardName string
	// Alarms by name.
	Alarms map[string]cloudwatchmetricalarm.CloudwatchMetricAlarm
}

func (p *ObservabilityProps) validate() error {
	var errs []error
	if p.Prefix == "" || p.EnvironmentName == "" || p.ClusterName == "" || p.Queue == "" || p.DeadLetter == "" || p.Table == "" {
		errs = append(errs, errors.New("Prefix, EnvironmentName, ClusterName, Queue, DeadLetter and Table are required"))
	}
	if p.LoadBalancerARNSuffix == nil || p.TargetGroupARNSuffix == nil {
		errs = append(errs, errors.New("LoadBalancerARNSuffix and TargetGroupARNSuffix are required"))
	}
	if p.AlarmEmail != "" && !isAddress(p.AlarmEmail) {
		errs = append(errs, fmt.Errorf("AlarmEmail %q is not an address", p.AlarmEmail))
	}
	if p.OldestMessageAge < time.Minute {
		errs = append(errs, fmt.Errorf("OldestMessageAge %s is under a minute", p.OldestMessageAge))
	}
	for _, v := range []float64{p.API5xxPercent, p.SenderFailurePercent} {
		if !(v > 0 && v <= 100) {
			errs = append(errs, fmt.Errorf("percent threshold %g is outside (0, 100]", v))
		}
	}
	for _, s := range p.Services {
		if s.Name == "" || s.MinTasks < 1 {
			errs = append(errs, fmt.Errorf("Services: %q needs a name and MinTasks >= 1", s.Name))
		}
	}
	return errors.Join(errs...)
}

// NewObservability creates the alarm topic, the alarms and the dashboard.
func NewObservability(scope constructs.Construct, id string, props *ObservabilityProps) *Observability {
	if props == nil {
		props = &ObservabilityProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: observability %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	o := &Observability{Construct: c, DashboardName: p.Prefix, Alarms: map[string]cloudwatchmetricalarm.CloudwatchMetricAlarm{}}
	alarmARNs := fmt.Sprintf("arn:%s:cloudwatch:%s:%s:alarm:%s-*", partition(p.Region), p.Region, p.Account, p.Prefix)
	fromThisAccount := Condition{Test: "StringEquals", Variable: "aws:SourceAccount", Values: []string{p.Account}}
	// CloudWatch publishes alarms to the encrypted topic, so it needs the
	// key; only for this account's alarms.
	o.Key = NewKey(c, "key", &KeyProps{
		Alias:              p.Prefix + "-alarms",
		Description:        "Encrypts the alarm notifications of " + p.Prefix,
		Account:            p.Account,
		Region:             p.Region,
		DeletionWindowDays: keyDeletionWindowDays,
		ServiceGrants: []Statement{{
			Sid:        "CloudWatchAlarmsPublish",
			Actions:    []string{"kms:Decrypt", "kms:GenerateDataKey"},
			Principals: []Principal{{Type: "Service", Identifiers: []string{"cloudwatch.amazonaws.com"}}},
			Conditions: []Condition{fromThisAccount},
		}},
	})
	o.Topic = snstopic.NewSnsTopic(c, jsii.String("topic"), &snstopic.SnsTopicConfig{
		Name:           jsii.String(p.Prefix + "-alarms"),
		DisplayName:    jsii.String("Herald " + p.EnvironmentName + " alarms"),
		KmsMasterKeyId: o.Key.Key.Arn(),
	})
	policy := newPolicyDocument(c, "topic-policy-document", []Statement{{
		Sid:        "CloudWatchAlarmsPublish",
		Actions:    []string{"sns:Publish"},
		Resources:  []string{*o.Topic.Arn()},
		Principals: []Principal{{Type: "Service", Identifiers: []string{"cloudwatch.amazonaws.com"}}},
		Conditions: []Condition{fromThisAccount, {Test: "ArnLike", Variable: "aws:SourceArn", Values: []string{alarmARNs}}},
	}}, resourcePolicy)
	snstopicpolicy.NewSnsTopicPolicy(c, jsii.String("topic-policy"), &snstopicpolicy.SnsTopicPolicyConfig{
		Arn:    o.Topic.Arn(),
		Policy: policy.Json(),
	})
	if p.AlarmEmail != "" {
		snstopicsubscription.NewSnsTopicSubscription(c, jsii.String("email"), &snstopicsubscription.SnsTopicSubscriptionConfig{
			TopicArn: o.Topic.Arn(),
			Protocol: jsii.String("email"),
			Endpoint: jsii.String(p.AlarmEmail),
		})
	}
	o.newAlarms(c, &p)
	o.Dashboard = cloudwatchdashboard.NewCloudwatchDashboard(c, jsii.String("dashboard"), &cloudwatchdashboard.CloudwatchDashboardConfig{
		DashboardName: jsii.String(o.DashboardName),
		DashboardBody: jsonDocument(dashboard(&p)),
	})
	return o
}

// alarmSpec is one alarm: either a single metric or metric math.
type alarmSpec struct {
	name, description string
	threshold         float64
	comparison        string
	periods, points   int
	missing           string
	// single metric, over period seconds (default 60)
	namespace, metric, statistic string
	period                       int
	dimensions                   map[string]*string
	// metric math: queries, the last one returned
	queries []*cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery
}

func metricQuery(id, namespace, metric, stat string, dims map[string]*string) *cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery {
	return &cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery{
		Id:         jsii.String(id),
		ReturnData: jsii.Bool(false),
		Metric: &cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQueryMetric{
			Namespace: jsii.String(namespace), MetricName: jsii.String(metric),
			Stat: jsii.String(stat), Period: jsii.Number(60), Dimensions: &dims,
		},
	}
}

func expressionQuery(id, expression, label string) *cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery {
	return &cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery{
		Id: jsii.String(id), Expression: jsii.String(expression), Label: jsii.String(label), ReturnData: jsii.Bool(true),
	}
}

func (o *Observability) newAlarms(c constructs.Construct, p *ObservabilityProps) {
	// heraldQuery sums one of the services' own metrics, all of it (the
	// rollup without a breakdown).
	heraldQuery := func(id string, m contract.Metric) *cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery {
		dims := map[string]*string{contract.DimEnvironment: jsii.String(p.EnvironmentName), contract.DimService: jsii.String(string(m.Service))}
		return metricQuery(id, contract.Namespace, m.Name, "Sum", dims)
	}
	specs := []alarmSpec{
		{
			// On the first message: the DLQ's depth covers what SQS redrive
			// moves; the sender's DeadLettered count is there within a minute
			// even when SQS's metrics of a long-idle DLQ lag (up to 15 min).
			name: "dlq-not-empty", description: "Messages reached the dead-letter queue: a notification could not be sent",
			threshold: 0, comparison: "GreaterThanThreshold", periods: 1, points: 1, missing: "notBreaching",
			queries: []*cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery{
				metricQuery("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", map[string]*string{"QueueName": jsii.String(p.DeadLetter)}),
				heraldQuery("moved", contract.DeadLettered),
				expressionQuery("dead", "MAX([FILL(visible, 0), FILL(moved, 0)])", "dead letters"),
			},
		},
		{
			name: "oldest-message-age", description: fmt.Sprintf("A queued notification is older than %s: the sender is behind or stuck", p.OldestMessageAge),
			namespace: "AWS/SQS", metric: "ApproximateAgeOfOldestMessage", statistic: "Maximum",
			dimensions: map[string]*string{"QueueName": jsii.String(p.Queue)},
			threshold:  p.OldestMessageAge.Seconds(), comparison: "GreaterThanThreshold", periods: 5, points: 5, missing: "notBreaching",
		},
		{
			name: "api-5xx-rate", description: fmt.Sprintf("More than %g%% of API requests failed with 5xx", p.API5xxPercent),
			threshold: p.API5xxPercent, comparison: "GreaterThanThreshold", periods: 5, points: 3, missing: "notBreaching",
			queries: []*cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery{
				metricQuery("target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", map[string]*string{"LoadBalancer": p.LoadBalancerARNSuffix, "TargetGroup": p.TargetGroupARNSuffix}),
				metricQuery("lb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", map[string]*string{"LoadBalancer": p.LoadBalancerARNSuffix}),
				metricQuery("requests", "AWS/ApplicationELB", "RequestCount", "Sum", map[string]*string{"LoadBalancer": p.LoadBalancerARNSuffix}),
				expressionQuery("rate", "100 * (FILL(target5xx, 0) + FILL(lb5xx, 0)) / requests", "API 5xx %"),
			},
		},
		{
			name: "sender-failure-rate", description: fmt.Sprintf("More than %g%% of sends failed", p.SenderFailurePercent),
			threshold: p.SenderFailurePercent, comparison: "GreaterThanThreshold", periods: 5, points: 3, missing: "notBreaching",
			queries: []*cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery{
				heraldQuery("failed", contract.Failed),
				heraldQuery("sent", contract.Sent),
				expressionQuery("rate", "100 * FILL(failed, 0) / (FILL(sent, 0) + FILL(failed, 0))", "sender failure %"),
			},
		},
	}
	// An on-demand table throttles when traffic jumps past twice its
	// previous peak, or at the account's table limits: throttling that
	// lasts is the API answering 503 to keyed requests and the sender
	// pausing.
	table := map[string]*string{"TableName": jsii.String(p.Table)}
	specs = append(specs, alarmSpec{
		name: "store-throttled", description: "The state store's table throttles requests: keyed requests get 503, the sender pauses",
		threshold: 0, comparison: "GreaterThanThreshold", periods: 5, points: 3, missing: "notBreaching",
		queries: []*cloudwatchmetricalarm.CloudwatchMetricAlarmMetricQuery{
			metricQuery("reads", "AWS/DynamoDB", "ReadThrottleEvents", "Sum", table),
			metricQuery("writes", "AWS/DynamoDB", "WriteThrottleEvents", "Sum", table),
			expressionQuery("throttled", "FILL(reads, 0) + FILL(writes, 0)", "throttled requests"),
		},
	})
	if p.FeedbackQueue != "" {
		specs = append(specs, feedbackAlarms(p)...)
	}
	for _, s := range p.Services {
		specs = append(specs, alarmSpec{
			name: s.Name + "-tasks-below-minimum", description: fmt.Sprintf("%s runs fewer than its minimum of %d tasks", s.Name, s.MinTasks),
			namespace: containerInsights, metric: "RunningTaskCount", statistic: "Minimum",
			dimensions: map[string]*string{"ClusterName": jsii.String(p.ClusterName), "ServiceName": jsii.String(s.Name)},
			threshold:  float64(s.MinTasks), comparison: "LessThanThreshold", periods: 3, points: 3,
			// no data means no task reports: as bad as too few
			missing: "breaching",
		})
	}
	actions := &[]*string{o.Topic.Arn()}
	for _, s := range specs {
		name := p.Prefix + "-" + s.name
		cfg := &cloudwatchmetricalarm.CloudwatchMetricAlarmConfig{
			AlarmName:          jsii.String(name),
			AlarmDescription:   jsii.String(s.description),
			ComparisonOperator: jsii.String(s.comparison),
			Threshold:          jsii.Number(s.threshold),
			EvaluationPeriods:  jsii.Number(float64(s.periods)),
			DatapointsToAlarm:  jsii.Number(float64(s.points)),
			TreatMissingData:   jsii.String(s.missing),
			AlarmActions:       actions,
			OkActions:          actions,
		}
		if s.queries != nil {
			cfg.MetricQuery = s.queries
		} else {
			cfg.Namespace = jsii.String(s.namespace)
			cfg.MetricName = jsii.String(s.metric)
			cfg.Statistic = jsii.String(s.statistic)
			cfg.Period = jsii.Number(float64(max(s.period, 60)))
			cfg.Dimensions = &s.dimensions
		}
		o.Alarms[name] = cloudwatchmetricalarm.NewCloudwatchMetricAlarm(c, jsii.String(s.name), cfg)
	}
}

// feedbackAlarms watch SES's reputation (account-wide ratios, without
// dimensions, published about hourly) and the feedback path.
func feedbackAlarms(p *ObservabilityProps) []alarmSpec {
	reputation := func(name, metric, what string, threshold float64) alarmSpec {
		return alarmSpec{
			name: name, description: fmt.Sprintf("SES's %s rate reached %g %%: SES reviews the account at %s", what, threshold*100, map[string]string{"bounce": "5 %", "complaint": "0.1 %"}[what]),
			namespace: "AWS/SES", metric: metric, statistic: "Maximum", period: 3600,
			threshold: threshold, comparison: "GreaterThanOrEqualToThreshold", periods: 1, points: 1, missing: "notBreaching",
		}
	}
	return []alarmSpec{
		reputation("ses-bounce-rate", "Reputation.BounceRate", "bounce", bounceRateAlarm),
		reputation("ses-complaint-rate", "Reputation.ComplaintRate", "complaint", complaintRateAlarm),
		{
			name: "feedback-dlq-not-empty", description: "SES events reached the feedback dead-letter queue: an event could not be applied",
			namespace: "AWS/SQS", metric: "ApproximateNumberOfMessagesVisible", statistic: "Maximum",
			dimensions: map[string]*string{"QueueName": jsii.String(p.FeedbackDeadLetter)},
			threshold:  0, comparison: "GreaterThanThreshold", periods: 1, points: 1, missing: "notBreaching",
		},
		{
			name: "feedback-oldest-message-age", description: fmt.Sprintf("An SES event waits longer than %s: the feedback consumer is stuck or the store is down", feedbackOldestAge),
			namespace: "AWS/SQS", metric: "ApproximateAgeOfOldestMessage", statistic: "Maximum",
			dimensions: map[string]*string{"QueueName": jsii.String(p.FeedbackQueue)},
			threshold:  feedbackOldestAge.Seconds(), comparison: "GreaterThanThreshold", periods: 5, points: 5, missing: "notBreaching",
		},
	}
}

// widget is a CloudWatch dashboard metric widget.
type widget struct {
	Type       string         `json:"type"`
	X          int            `json:"x"`
	Y          int            `json:"y"`
	Width      int            `json:"width"`
	Height     int            `json:"height"`
	Properties map[string]any `json:"properties"`
}

// metricLine renders one dashboard metric: namespace, name, dimension pairs
// and options.
func metricLine(namespace, name string, options map[string]any, dims ...string) []any {
	line := []any{namespace, name}
	for _, d := range dims {
		line = append(line, d)
	}
	if options != nil {
		line = append(line, options)
	}
	return line
}

func dashboard(p *ObservabilityProps) map[string]any {
	stat := func(s string) map[string]any { return map[string]any{"stat": s} }
	statLabel := func(s, label string) map[string]any { return map[string]any{"stat": s, "label": label} }
	lb := *p.LoadBalancerARNSuffix
	heraldLine := func(m contract.Metric, options map[string]any) []any {
		return metricLine(contract.Namespace, m.Name, options, contract.DimEnvironment, p.EnvironmentName, contract.DimService, string(m.Service))
	}
	percentiles := func(line func(map[string]any) []any) [][]any {
		return [][]any{line(statLabel("p50", "p50")), line(statLabel("p90", "p90")), line(statLabel("p99", "p99"))}
	}
	var widgets []widget
	// addWith adds a widget; extra properties override the defaults.
	addWith := func(title string, metrics [][]any, extra map[string]any) {
		i := len(widgets)
		properties := map[string]any{"title": title, "region": p.Region, "view": "timeSeries", "period": 60, "metrics": metrics}
		maps.Copy(properties, extra)
		widgets = append(widgets, widget{
			Type: "metric", X: (i % 3) * 8, Y: (i / 3) * 6, Width: 8, Height: 6,
			Properties: properties,
		})
	}
	add := func(title string, metrics [][]any) { addWith(title, metrics, nil) }
	add("Queue length", [][]any{
		metricLine("AWS/SQS", "ApproximateNumberOfMessagesVisible", statLabel("Maximum", "visible"), "QueueName", p.Queue),
		metricLine("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", statLabel("Maximum", "in flight"), "QueueName", p.Queue),
	})
	add("Age of oldest message (s)", [][]any{
		metricLine("AWS/SQS", "ApproximateAgeOfOldestMessage", stat("Maximum"), "QueueName", p.Queue),
	})
	add("Dead-letter queue depth", [][]any{
		metricLine("AWS/SQS", "ApproximateNumberOfMessagesVisible", statLabel("Maximum", "dead letters"), "QueueName", p.DeadLetter),
	})
	add("API requests", [][]any{
		metricLine("AWS/ApplicationELB", "RequestCount", statLabel("Sum", "load balancer requests"), "LoadBalancer", lb),
		heraldLine(contract.Accepted, statLabel("Sum", "accepted")),
		heraldLine(contract.Rejected, statLabel("Sum", "rejected")),
	})
	add("API latency (ms)", append(
		percentiles(func(o map[string]any) []any {
			return metricLine("AWS/ApplicationELB", "TargetResponseTime", map[string]any{"stat": o["stat"], "label": "response " + o["label"].(string)}, "LoadBalancer", lb)
		}),
		percentiles(func(o map[string]any) []any {
			return heraldLine(contract.EnqueueLatency, map[string]any{"stat": o["stat"], "label": "enqueue " + o["label"].(string), "yAxis": "right"})
		})...,
	))
	add("API 5xx", [][]any{
		metricLine("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", statLabel("Sum", "from the API"), "LoadBalancer", lb),
		metricLine("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", statLabel("Sum", "from the load balancer"), "LoadBalancer", lb),
	})
	add("Sender outcomes", [][]any{
		heraldLine(contract.Sent, statLabel("Sum", "sent")),
		heraldLine(contract.Failed, statLabel("Sum", "failed")),
		heraldLine(contract.Retried, statLabel("Sum", "retried")),
		heraldLine(contract.DeadLettered, statLabel("Sum", "dead-lettered")),
	})
	// Throttled sends are retried in the task; paused time is how long the
	// sender stopped sending while SES failed (ms per period, summed over tasks).
	add("Sender throttling and pauses", [][]any{
		heraldLine(contract.Throttled, statLabel("Sum", "throttled sends")),
		heraldLine(contract.PausedTime, map[string]any{"stat": "Sum", "label": "paused (ms)", "yAxis": "right"}),
	})
	add("Processing time, queued to accepted by SES (ms)", percentiles(func(o map[string]any) []any {
		return heraldLine(contract.ProcessingTime, o)
	}))
	add("Send latency (ms)", percentiles(func(o map[string]any) []any {
		return heraldLine(contract.SendLatency, o)
	}))
	var cpu, memory, tasks [][]any
	for _, s := range p.Services {
		cpu = append(cpu, metricLine("AWS/ECS", "CPUUtilization", statLabel("Average", s.Name), "ClusterName", p.ClusterName, "ServiceName", s.Name))
		memory = append(memory, metricLine("AWS/ECS", "MemoryUtilization", statLabel("Average", s.Name), "ClusterName", p.ClusterName, "ServiceName", s.Name))
		tasks = append(tasks, metricLine(containerInsights, "RunningTaskCount", statLabel("Average", s.Name), "ClusterName", p.ClusterName, "ServiceName", s.Name))
	}
	add("CPU utilization (%)", cpu)
	add("Memory utilization (%)", memory)
	add("Running tasks", tasks)
	add("State store (DynamoDB)", [][]any{
		metricLine("AWS/DynamoDB", "ConsumedWriteCapacityUnits", statLabel("Sum", "write units"), "TableName", p.Table),
		metricLine("AWS/DynamoDB", "ConsumedReadCapacityUnits", statLabel("Sum", "read units"), "TableName", p.Table),
		metricLine("AWS/DynamoDB", "WriteThrottleEvents", map[string]any{"stat": "Sum", "label": "throttled writes", "yAxis": "right"}, "TableName", p.Table),
		metricLine("AWS/DynamoDB", "ReadThrottleEvents", map[string]any{"stat": "Sum", "label": "throttled reads", "yAxis": "right"}, "TableName", p.Table),
	})
	if p.FeedbackQueue != "" {
		// Reputation is an hourly ratio; the lines mark the alarms.
		addWith("SES reputation", [][]any{
			metricLine("AWS/SES", "Reputation.BounceRate", statLabel("Maximum", "bounce rate")),
			metricLine("AWS/SES", "Reputation.ComplaintRate", map[string]any{"stat": "Maximum", "label": "complaint rate", "yAxis": "right"}),
		}, map[string]any{"period": 3600, "annotations": map[string]any{"horizontal": []any{
			map[string]any{"value": bounceRateAlarm, "label": "bounce rate alarm"},
			map[string]any{"value": complaintRateAlarm, "label": "complaint rate alarm", "yAxis": "right"},
		}}})
		add("SES feedback per recipient", [][]any{
			heraldLine(contract.Delivered, statLabel("Sum", "delivered")),
			heraldLine(contract.Bounced, statLabel("Sum", "bounced")),
			metricLine(contract.Namespace, contract.Bounced.Name, statLabel("Sum", "bounced, permanent"), contract.DimEnvironment, p.EnvironmentName, contract.DimService, string(contract.Bounced.Service), contract.DimBounceType, "Permanent"),
			heraldLine(contract.Complained, statLabel("Sum", "complained")),
			heraldLine(contract.SESRejected, statLabel("Sum", "rejected by SES")),
			heraldLine(contract.Delayed, statLabel("Sum", "delayed")),
		})
		add("SES feedback problems", [][]any{
			heraldLine(contract.DuplicateSends, statLabel("Sum", "duplicate sends")),
			heraldLine(contract.FeedbackDeadLettered, statLabel("Sum", "events dead-lettered")),
			metricLine("AWS/SQS", "ApproximateNumberOfMessagesVisible", statLabel("Maximum", "feedback DLQ depth"), "QueueName", p.FeedbackDeadLetter),
			metricLine("AWS/SQS", "ApproximateAgeOfOldestMessage", map[string]any{"stat": "Maximum", "label": "oldest event (s)", "yAxis": "right"}, "QueueName", p.FeedbackQueue),
		})
	}
	return map[string]any{"widgets": widgets}
}
