package stacks

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/services/contract"
)

const (
	testAccount = "123456789012"
	testRegion  = "eu-west-1"
)

func TestNetwork(t *testing.T) {
	existing := &ExistingNetwork{
		VPCID:                "vpc-0123456789abcdef0",
		PublicSubnetIDs:      []string{"subnet-0a000001", "subnet-0a000002"},
		PrivateSubnetIDs:     []string{"subnet-0b000001", "subnet-0b000002"},
		PrivateRouteTableIDs: []string{"rtb-0c000001"},
	}
	cases := []struct {
		name                       string
		config                     NetworkConfig
		extra                      []string
		vpcs, subnets, nats, flows int
		interfaceEndpoints         int
		gatewayEndpoints           int
	}{
		{"dev: 2 AZs, one NAT", NetworkConfig{CIDR: "10.40.0.0/16", AZCount: 2, NATGateways: 1}, nil, 1, 4, 1, 1, 7, 1},
		{"prod: 3 AZs, NAT per AZ", NetworkConfig{CIDR: "10.50.0.0/16", AZCount: 3, NATGateways: 3}, []string{"ecs", "ecs-agent", "ecs-telemetry"}, 1, 6, 3, 1, 10, 1},
		{"existing VPC", NetworkConfig{Existing: existing}, nil, 0, 0, 0, 0, 7, 1},
		{"existing VPC with its own endpoints", NetworkConfig{Existing: existing, SkipEndpoints: true}, nil, 0, 0, 0, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n *Network
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
				n = NewNetwork(stack, "network", &NetworkProps{
					Name: "herald-test", Account: testAccount, Region: testRegion,
					NetworkConfig: c.config.withDefaults(), ExtraEndpoints: c.extra,
					LogKeyARN: jsii.String("arn:aws:kms:eu-west-1:123456789012:key/test"), LogRetentionDays: 30,
				})
			})
			counts := map[string]int{
				"aws_vpc": c.vpcs, "aws_subnet": c.subnets, "aws_nat_gateway": c.nats, "aws_flow_log": c.flows,
			}
			for typ, want := range counts {
				if got := len(doc.resources(typ)); got != want {
					t.Errorf("%s: %d, want %d", typ, got, want)
				}
			}
			kinds := map[string]int{}
			for _, e := range doc.resources("aws_vpc_endpoint") {
				kinds[e["vpc_endpoint_type"].(string)]++
				if e["vpc_endpoint_type"] == "Interface" && e["private_dns_enabled"] != true {
					t.Errorf("endpoint %s without private DNS", e["service_name"])
				}
			}
			if kinds["Interface"] != c.interfaceEndpoints || kinds["Gateway"] != c.gatewayEndpoints {
				t.Errorf("endpoints %v, want %d interface and %d gateway", kinds, c.interfaceEndpoints, c.gatewayEndpoints)
			}
			for name, s := range doc.resources("aws_subnet") {
				if s["map_public_ip_on_launch"] != false {
					t.Errorf("subnet %s maps public IPs", name)
				}
			}
			if c.config.Existing != nil {
				if *n.VPCID != existing.VPCID || len(n.PrivateSubnetIDs) != 2 || *n.PrivateSubnetIDs[0] != "subnet-0b000001" {
					t.Errorf("existing network not adopted: %v %v", *n.VPCID, n.PrivateSubnetIDs)
				}
				return
			}
			// Given a NAT per AZ, when routes are made, then each private
			// route table leaves through its own zone's NAT gateway.
			nats := map[string]bool{}
			for name, r := range doc.resources("aws_route") {
				if strings.Contains(name, "private") {
					nats[r["nat_gateway_id"].(string)] = true
				}
			}
			if len(nats) != c.nats {
				t.Errorf("private routes use %d NAT gateways, want %d", len(nats), c.nats)
			}
			if len(doc.resources("aws_default_security_group")) != 1 {
				t.Error("the default security group is not emptied")
			}
		})
	}
}

func TestQueue(t *testing.T) {
	cases := []struct {
		sendTimeout time.Duration
		visibility  float64
	}{{10 * time.Second, 60}, {30 * time.Second, 180}}
	for _, c := range cases {
		t.Run(c.sendTimeout.String(), func(t *testing.T) {
			var q *Queue
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
				q = NewQueue(stack, "queue", queueProps(c.sendTimeout))
			})
			var main map[string]any
			for _, candidate := range doc.resources("aws_sqs_queue") {
				if candidate["name"] == "herald-test-notifications" {
					main = candidate
				}
			}
			dlq := doc.named(t, "aws_sqs_queue", "dead-letter")
			if num(main["visibility_timeout_seconds"]) != c.visibility || q.VisibilityTimeout.Seconds() != c.visibility {
				t.Errorf("visibility %v (field %s), want %v", main["visibility_timeout_seconds"], q.VisibilityTimeout, c.visibility)
			}
			for name, queue := range map[string]map[string]any{"queue": main, "dlq": dlq} {
				if !strings.HasPrefix(queue["kms_master_key_id"].(string), "${aws_kms_key.") {
					t.Errorf("%s is not encrypted with the stack's key: %v", name, queue["kms_master_key_id"])
				}
				if num(queue["receive_wait_time_seconds"]) != 20 || num(queue["max_message_size"]) != 262144 {
					t.Errorf("%s: wait %v, size %v", name, queue["receive_wait_time_seconds"], queue["max_message_size"])
				}
			}
			if num(dlq["message_retention_seconds"]) <= num(main["message_retention_seconds"]) {
				t.Error("the DLQ does not keep messages longer than the queue")
			}
			var redrive struct {
				Target string `json:"deadLetterTargetArn"`
				Max    int    `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(main["redrive_policy"].(string)), &redrive); err != nil {
				t.Fatal(err)
			}
			if redrive.Max != 5 || redrive.Target != "arn:aws:sqs:eu-west-1:123456789012:herald-test-notifications-dlq" {
				t.Errorf("redrive %+v", redrive)
			}
			// Both queues refuse plain HTTP.
			denies := 0
			for _, d := range doc.data("aws_iam_policy_document") {
				for _, st := range blocks(d["statement"]) {
					cond := block(st["condition"])
					if st["effect"] == "Deny" && cond["variable"] == "aws:SecureTransport" && strs(t, cond["values"])[0] == "false" && slices.Contains(strs(t, st["actions"]), "sqs:SendMessage") {
						denies++
					}
				}
			}
			if denies != 2 || len(doc.resources("aws_sqs_queue_policy")) != 2 {
				t.Errorf("TLS-only policies: %d", denies)
			}
		})
	}
}

// queueProps is a valid queue, as the stack makes it by default.
func queueProps(sendTimeout time.Duration) *QueueProps {
	return &QueueProps{
		Name: "herald-test-notifications", Account: testAccount, Region: testRegion, SendTimeout: sendTimeout,
		MaxReceiveCount: 5, Retention: 4 * 24 * time.Hour, DLQRetention: 14 * 24 * time.Hour, MaxMessageBytes: 262144,
	}
}

// serviceProps is a valid service for the service tests.
func serviceProps() *FargateServiceProps {
	return &FargateServiceProps{
		Name: "email-sender", Prefix: "herald-test", Account: testAccount, Region: testRegion,
		ClusterARN: jsii.String("arn:aws:ecs:eu-west-1:123456789012:cluster/herald-test"), ClusterName: "herald-test",
		Image:              "123456789012.dkr.ecr.eu-west-1.amazonaws.com/herald-test/email-sender@sha256:" + strings.Repeat("ab", 32),
		ImageRepositoryARN: "arn:aws:ecr:eu-west-1:123456789012:repository/herald-test/email-sender",
		HealthCheckCommand: []string{"CMD", "/email-sender", "healthcheck"},
		CPU:                512, Memory: 1024, Port: 8081, PortName: "health",
		Variables:       map[string]string{"HERALD_ENV": "test"},
		Secrets:         map[string]string{"HERALD_SEND_RATE": "arn:aws:ssm:eu-west-1:123456789012:parameter/herald-test/send-rate"},
		ExecutionGrants: []Statement{{Sid: "ReadOwnParameters", Actions: []string{"ssm:GetParameters"}, Resources: []string{"arn:aws:ssm:eu-west-1:123456789012:parameter/herald-test/send-rate"}}},
		TaskGrants:      []Statement{{Sid: "Consume", Actions: []string{"sqs:ReceiveMessage"}, Resources: []string{"arn:aws:sqs:eu-west-1:123456789012:q"}}},
		VPCID:           jsii.String("vpc-01234567"), SubnetIDs: []*string{jsii.String("subnet-01234567"), jsii.String("subnet-89abcdef")},
		EgressRules: []EgressRule{{ID: "ses", Description: "SES", Port: 443, CIDRs: []string{"0.0.0.0/0"}}},
		MinTasks:    2, MaxTasks: 6, CPUTarget: 70,
		Backlog:   &BacklogScaling{QueueName: "herald-test-notifications", PerTask: 50},
		LogKeyARN: jsii.String("arn:aws:kms:eu-west-1:123456789012:key/test"), LogRetentionDays: 30,
	}
}

func TestFargateService(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(p *FargateServiceProps)
		check  func(t *testing.T, doc tfDoc, c map[string]container)
	}{
		{
			name: "service connect client",
			mutate: func(p *FargateServiceProps) {
				p.ServiceConnect = &ServiceConnectSettings{NamespaceARN: jsii.String("arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-1")}
			},
			check: func(t *testing.T, doc tfDoc, c map[string]container) {
				sc := block(doc.only(t, "aws_ecs_service")["service_connect_configuration"])
				if sc["enabled"] != true || sc["service"] != nil {
					t.Errorf("a client-only service connect configuration: %v", sc)
				}
				if len(c) != 1 || doc.only(t, "aws_ecs_task_definition")["proxy_configuration"] != nil {
					t.Error("service connect needs no sidecar of ours")
				}
			},
		},
		{
			name: "service connect server behind a load balancer",
			mutate: func(p *FargateServiceProps) {
				p.Name, p.Port, p.PortName, p.Backlog = "notification-api", 8080, "http", nil
				p.HealthCheckCommand = []string{"CMD", "/notification-api", "healthcheck"}
				p.EgressRules = nil
				p.LoadBalancer = &LoadBalancerTarget{TargetGroupARN: jsii.String("arn:tg"), SecurityGroupID: jsii.String("sg-0123456789")}
				p.ServiceConnect = &ServiceConnectSettings{NamespaceARN: jsii.String("arn:ns"), Publish: true, DiscoveryName: "notification-api"}
			},
			check: func(t *testing.T, doc tfDoc, c map[string]container) {
				svc := doc.only(t, "aws_ecs_service")
				published := block(block(svc["service_connect_configuration"])["service"])
				if published["port_name"] != "http" || published["discovery_name"] != "notification-api" || num(block(published["client_alias"])["port"]) != 8080 {
					t.Errorf("published service %v", published)
				}
				if c["notification-api"].PortMappings[0].Name != "http" {
					t.Error("the port mapping is not named for service connect")
				}
				lb := block(svc["load_balancer"])
				if lb["container_name"] != "notification-api" || num(lb["container_port"]) != 8080 || num(svc["health_check_grace_period_seconds"]) != 60 {
					t.Errorf("load balancer %v grace %v", lb, svc["health_check_grace_period_seconds"])
				}
				ingress := doc.named(t, "aws_security_group_rule", "ingress-from-load-balancer")
				if ingress["source_security_group_id"] != "sg-0123456789" || num(ingress["from_port"]) != 8080 {
					t.Errorf("ingress %v", ingress)
				}
				if len(doc.data("aws_iam_policy_document")) == 0 || len(doc.resources("aws_appautoscaling_policy")) != 1 {
					t.Error("the API scales on CPU only")
				}
			},
		},
		{
			name: "app mesh",
			mutate: func(p *FargateServiceProps) {
				p.AppMesh = &AppMeshSettings{
					VirtualNodeARN:    jsii.String("arn:aws:appmesh:eu-west-1:123456789012:mesh/m/virtualNode/email-sender"),
					VirtualNodeName:   "arn:aws:appmesh:eu-west-1:123456789012:mesh/m/virtualNode/email-sender",
					RegistryARN:       jsii.String("arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-1"),
					EnvoyImage:        "840364872350.dkr.ecr.eu-west-1.amazonaws.com/aws-appmesh-envoy:v1.29.6.0-prod",
					ExtraIgnoredPorts: []int{587},
				}
			},
			check: func(t *testing.T, doc tfDoc, c map[string]container) {
				proxy := block(doc.only(t, "aws_ecs_task_definition")["proxy_configuration"])
				props, _ := proxy["properties"].(map[string]any)
				want := map[string]any{
					"IgnoredUID": "1337", "ProxyIngressPort": "15000", "ProxyEgressPort": "15001", "AppPorts": "8081",
					"EgressIgnoredIPs": "169.254.170.2,169.254.169.254", "EgressIgnoredPorts": "443,587",
				}
				if proxy["type"] != "APPMESH" || proxy["container_name"] != "envoy" {
					t.Errorf("proxy %v", proxy)
				}
				for k, v := range want {
					if props[k] != v {
						t.Errorf("proxy %s = %v, want %v", k, props[k], v)
					}
				}
				envoy, app := c["envoy"], c["email-sender"]
				if envoy.User != "1337" || envoy.variables()["APPMESH_RESOURCE_ARN"] == "" || envoy.HealthCheck == nil {
					t.Errorf("envoy %+v", envoy)
				}
				if len(app.DependsOn) != 1 || app.DependsOn[0].ContainerName != "envoy" || app.DependsOn[0].Condition != "HEALTHY" {
					t.Errorf("the app does not wait for a healthy envoy: %+v", app.DependsOn)
				}
				if block(doc.only(t, "aws_ecs_service")["service_registries"])["registry_arn"] == nil {
					t.Error("tasks are not registered in Cloud Map")
				}
				found := false
				for _, d := range doc.data("aws_iam_policy_document") {
					for _, st := range blocks(d["statement"]) {
						if slices.Contains(strs(t, st["actions"]), "appmesh:StreamAggregatedResources") {
							found = true
							if r := strs(t, st["resources"]); len(r) != 1 || !strings.HasSuffix(r[0], "virtualNode/email-sender") {
								t.Errorf("envoy may read %v, want its own virtual node only", r)
							}
						}
					}
				}
				if !found {
					t.Error("the task role cannot stream its virtual node")
				}
				// the envoy image comes from AWS's registry: the execution
				// role may pull it
				if !strings.Contains(mustJSON(doc.data("aws_iam_policy_document")), "repository/aws-appmesh-envoy") {
					t.Error("the execution role cannot pull envoy")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := serviceProps()
			tc.mutate(p)
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) { NewFargateService(stack, "svc", p) })
			c := containers(t, doc.only(t, "aws_ecs_task_definition"))
			app := c[p.Name]
			if app.User != "65532:65532" || !app.ReadonlyRootFilesystem || app.StopTimeout != 30 {
				t.Errorf("app container user %q read-only %v stop %d", app.User, app.ReadonlyRootFilesystem, app.StopTimeout)
			}
			if app.HealthCheck == nil || strings.Join(app.HealthCheck.Command, " ") != "CMD /"+p.Name+" healthcheck" {
				t.Errorf("health check %+v", app.HealthCheck)
			}
			if app.LogConfiguration.LogDriver != "awslogs" || app.LogConfiguration.Options["awslogs-group"] != "/herald/herald-test/"+p.Name {
				t.Errorf("logs %+v", app.LogConfiguration)
			}
			svc := doc.only(t, "aws_ecs_service")
			cb := block(svc["deployment_circuit_breaker"])
			if cb["enable"] != true || cb["rollback"] != true || num(svc["deployment_minimum_healthy_percent"]) != 100 || num(svc["deployment_maximum_percent"]) != 200 {
				t.Errorf("deployment settings %v %v %v", cb, svc["deployment_minimum_healthy_percent"], svc["deployment_maximum_percent"])
			}
			if block(svc["network_configuration"])["assign_public_ip"] != false {
				t.Error("tasks get a public IP")
			}
			if !slices.Contains(strs(t, block(svc["lifecycle"])["ignore_changes"]), "desired_count") {
				t.Error("terraform would fight autoscaling over desired_count")
			}
			target := doc.only(t, "aws_appautoscaling_target")
			if num(target["min_capacity"]) != float64(p.MinTasks) || num(target["max_capacity"]) != float64(p.MaxTasks) {
				t.Errorf("scaling %v..%v", target["min_capacity"], target["max_capacity"])
			}
			cpu := block(doc.named(t, "aws_appautoscaling_policy", "cpu")["target_tracking_scaling_policy_configuration"])
			if num(cpu["target_value"]) != 70 || block(cpu["predefined_metric_specification"])["predefined_metric_type"] != "ECSServiceAverageCPUUtilization" {
				t.Errorf("cpu policy %v", cpu)
			}
			tc.check(t, doc, c)
		})
	}
}

func TestSenderScalesOnBacklog(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) { NewFargateService(stack, "svc", serviceProps()) })
	spec := block(block(doc.named(t, "aws_appautoscaling_policy", "backlog")["target_tracking_scaling_policy_configuration"])["customized_metric_specification"])
	text := mustJSON(spec)
	for _, want := range []string{"ApproximateNumberOfMessagesVisible", "herald-test-notifications", "RunningTaskCount", "visible / tasks"} {
		if !strings.Contains(text, want) {
			t.Errorf("backlog metric lacks %q: %s", want, text)
		}
	}
	if num(block(doc.named(t, "aws_appautoscaling_policy", "backlog")["target_tracking_scaling_policy_configuration"])["target_value"]) != 50 {
		t.Error("backlog target")
	}
}

func TestIngress(t *testing.T) {
	logs := func(stack cdktf.TerraformStack) *AccessLogBucket {
		return NewAccessLogBucket(stack, "logs", &AccessLogBucketProps{Name: "herald-test-lb-logs-123456789012", Account: testAccount, Region: testRegion, RetentionDays: 90})
	}
	cases := []struct {
		name      string
		props     IngressProps
		logs      bool
		listeners map[float64]string // port -> protocol
		open      map[float64]string // open listener port -> allowed blocks
		internal  bool
		url       string // "" = the load balancer's own name
	}{
		{"https with redirect", IngressProps{CertificateARN: testCertificate}, false,
			map[float64]string{80: "HTTP", 443: "HTTPS"}, map[float64]string{80: "0.0.0.0/0", 443: "0.0.0.0/0"}, false, ""},
		{"https on a domain, with access logs", IngressProps{CertificateARN: testCertificate, Domain: "api.example.com", HostedZoneID: "Z0123456789ABC"}, true,
			map[float64]string{80: "HTTP", 443: "HTTPS"}, map[float64]string{80: "0.0.0.0/0", 443: "0.0.0.0/0"}, false, "https://api.example.com"},
		{"internal plain http", IngressProps{Internal: true}, false,
			map[float64]string{80: "HTTP"}, map[float64]string{80: "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"}, true, ""},
		{"plain http to an allow-list", IngressProps{AllowedCIDRs: []string{"203.0.113.0/24"}}, false,
			map[float64]string{80: "HTTP"}, map[float64]string{80: "203.0.113.0/24"}, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.props
			p.Name, p.VPCID, p.TargetPort, p.HealthPath = "herald-test", jsii.String("vpc-01234567"), 8080, "/api"
			p.SubnetIDs = []*string{jsii.String("subnet-01234567"), jsii.String("subnet-89abcdef")}
			var in *Ingress
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
				if c.logs {
					p.AccessLogs = logs(stack)
				}
				in = NewIngress(stack, "ingress", &p)
			})
			lb := doc.only(t, "aws_lb")
			if lb["internal"] != c.internal {
				t.Errorf("internal %v, want %v", lb["internal"], c.internal)
			}
			if lb["drop_invalid_header_fields"] != true {
				t.Error("invalid headers reach the API")
			}
			got := map[float64]string{}
			for _, l := range doc.resources("aws_lb_listener") {
				proto := l["protocol"].(string)
				got[num(l["port"])] = proto
				action := block(l["default_action"])
				if c.props.CertificateARN != "" && proto == "HTTP" && (action["type"] != "redirect" || block(action["redirect"])["protocol"] != "HTTPS") {
					t.Errorf("plain HTTP is not redirected: %v", action)
				}
				if proto == "HTTPS" && l["ssl_policy"] != tlsPolicy {
					t.Errorf("TLS policy %v", l["ssl_policy"])
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.listeners) {
				t.Errorf("listeners %v, want %v", got, c.listeners)
			}
			open := map[float64]string{}
			for _, r := range doc.resources("aws_security_group_rule") {
				if r["type"] == "ingress" {
					open[num(r["from_port"])] = strings.Join(strs(t, r["cidr_blocks"]), ",")
				}
			}
			if fmt.Sprint(open) != fmt.Sprint(c.open) {
				t.Errorf("open listeners %v, want %v", open, c.open)
			}
			hc := block(doc.only(t, "aws_lb_target_group")["health_check"])
			if hc["path"] != "/api" || hc["matcher"] != "200" {
				t.Errorf("target group health check %v", hc)
			}
			records := doc.resources("aws_route53_record")
			if c.props.Domain == "" {
				scheme := map[bool]string{true: "https://", false: "http://"}[c.props.CertificateARN != ""]
				if len(records) != 0 || !strings.HasPrefix(*in.URL, scheme+"${TfToken[") {
					t.Errorf("records %v, URL %s: want none and %s<the load balancer's name>", records, *in.URL, scheme)
				}
			} else {
				alias := doc.only(t, "aws_route53_record")
				target := block(alias["alias"])
				if alias["name"] != c.props.Domain || alias["type"] != "A" || alias["zone_id"] != c.props.HostedZoneID ||
					!strings.HasSuffix(target["name"].(string), ".dns_name}") || !strings.HasSuffix(target["zone_id"].(string), ".zone_id}") {
					t.Errorf("alias record %v", alias)
				}
				if *in.URL != c.url {
					t.Errorf("URL %s, want %s", *in.URL, c.url)
				}
			}
			accessLogs := block(lb["access_logs"])
			if c.logs != (accessLogs != nil) {
				t.Fatalf("access logs %v, want them: %v", accessLogs, c.logs)
			}
			if c.logs && (accessLogs["bucket"] != "herald-test-lb-logs-123456789012" || accessLogs["enabled"] != true || !slices.ContainsFunc(strs(t, lb["depends_on"]), func(d string) bool { return strings.HasPrefix(d, "aws_s3_bucket_policy.") })) {
				t.Errorf("access logs %v, depends on %v", accessLogs, lb["depends_on"])
			}
		})
	}
	// Given no certificate, no internal load balancer and no allow-list,
	// when the ingress is built, then it refuses to serve plain HTTP to the
	// internet, naming the settings that would allow it.
	app := cdktf.Testing_App(nil)
	stack := cdktf.NewTerraformStack(app, jsii.String("test"))
	msg := mustPanic(t, func() {
		NewIngress(stack, "ingress", &IngressProps{Name: "herald-test", VPCID: jsii.String("vpc-01234567"), TargetPort: 8080, HealthPath: "/api",
			SubnetIDs: []*string{jsii.String("subnet-01234567"), jsii.String("subnet-89abcdef")}, AllowedCIDRs: []string{"0.0.0.0/0"}})
	})
	if !strings.Contains(msg, "Ingress.AllowedCIDRs") || !strings.Contains(msg, "clear text") {
		t.Errorf("plain HTTP to the internet: %q", msg)
	}
}

// The access log bucket: SSE-S3 (all ALB delivery takes), private, expiring,
// written to by the Region's ELB log delivery only, over TLS only.
func TestAccessLogBucket(t *testing.T) {
	cases := []struct{ region, principal string }{
		{"eu-west-1", "AWS arn:aws:iam::156460612806:root"},
		{"ap-southeast-5", "Service logdelivery.elasticloadbalancing.amazonaws.com"},
	}
	for _, c := range cases {
		t.Run(c.region, func(t *testing.T) {
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
				NewAccessLogBucket(stack, "logs", &AccessLogBucketProps{Name: "herald-test-lb-logs-123456789012", Account: testAccount, Region: c.region, RetentionDays: 30, ForceDestroy: true})
			})
			if b := doc.only(t, "aws_s3_bucket"); b["bucket"] != "herald-test-lb-logs-123456789012" || b["force_destroy"] != true {
				t.Errorf("bucket %v", b)
			}
			sse := block(block(doc.only(t, "aws_s3_bucket_server_side_encryption_configuration")["rule"])["apply_server_side_encryption_by_default"])
			if sse["sse_algorithm"] != "AES256" {
				t.Errorf("encryption %v", sse)
			}
			pab := doc.only(t, "aws_s3_bucket_public_access_block")
			for _, k := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
				if pab[k] != true {
					t.Errorf("public access block %s = %v", k, pab[k])
				}
			}
			rule := block(doc.only(t, "aws_s3_bucket_lifecycle_configuration")["rule"])
			if rule["status"] != "Enabled" || num(block(rule["expiration"])["days"]) != 30 {
				t.Errorf("lifecycle %v", rule)
			}
			var allow, deny map[string]any
			for _, st := range blocks(doc.data("aws_iam_policy_document")[keys(doc.data("aws_iam_policy_document"))[0]]["statement"]) {
				if st["effect"] == "Deny" {
					deny = st
				} else {
					allow = st
				}
			}
			pr := block(allow["principals"])
			if got := pr["type"].(string) + " " + strs(t, pr["identifiers"])[0]; got != c.principal {
				t.Errorf("log writer %s, want %s", got, c.principal)
			}
			if r := strs(t, allow["resources"]); len(r) != 1 || r[0] != "arn:aws:s3:::herald-test-lb-logs-123456789012/AWSLogs/123456789012/*" || !slices.Equal(strs(t, allow["actions"]), []string{"s3:PutObject"}) {
				t.Errorf("log writer may %v on %v", allow["actions"], r)
			}
			if cond := block(deny["condition"]); cond["variable"] != "aws:SecureTransport" {
				t.Errorf("no TLS-only statement: %v", deny)
			}
		})
	}
}

func TestAppMesh(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewAppMesh(stack, "mesh", &AppMeshProps{
			Name: "herald-test", Account: testAccount, Region: testRegion,
			NamespaceID: jsii.String("ns-123"), NamespaceName: "herald-test.internal", EgressFilter: "DROP_ALL",
			Services: []MeshService{
				{Name: "notification-api", Port: 8080, HealthPath: "/api", Routed: true},
				{Name: "email-sender", Port: 8081, HealthPath: "/api/notification/send-email"},
			},
		})
	})
	mesh := doc.only(t, "aws_appmesh_mesh")
	if block(block(mesh["spec"])["egress_filter"])["type"] != "DROP_ALL" {
		t.Errorf("egress filter %v", mesh["spec"])
	}
	if len(doc.resources("aws_appmesh_virtual_node")) != 2 || len(doc.resources("aws_appmesh_virtual_service")) != 2 {
		t.Fatal("want a virtual node and a virtual service per service")
	}
	for name, node := range doc.resources("aws_appmesh_virtual_node") {
		spec := block(node["spec"])
		listener := block(spec["listener"])
		hc := block(listener["health_check"])
		cm := block(block(spec["service_discovery"])["aws_cloud_map"])
		want := map[string]string{"notification-api": "/api", "email-sender": "/api/notification/send-email"}[node["name"].(string)]
		if hc["path"] != want || cm["namespace_name"] != "herald-test.internal" || cm["service_name"] == nil {
			t.Errorf("node %s: health %v (want %s) discovery %v", name, hc, want, cm)
		}
	}
	if len(doc.resources("aws_appmesh_virtual_router")) != 1 || len(doc.resources("aws_appmesh_route")) != 1 {
		t.Error("want a router and a route for the API only")
	}
	api := doc.named(t, "aws_appmesh_virtual_service", "notification-api")
	if api["name"] != "notification-api.herald-test.internal" || block(block(api["spec"])["provider"])["virtual_router"] == nil {
		t.Errorf("the API's virtual service %v", api)
	}
	if len(doc.resources("aws_service_discovery_service")) != 2 {
		t.Error("want a Cloud Map service per service")
	}
	// An empty health_check_custom_config is not sent, so it is missing
	// from state and replaces the service on every apply (provider issue
	// 44285); failure_threshold 1 (AWS's only value) is sent and read back.
	for name, svc := range doc.resources("aws_service_discovery_service") {
		if hc := block(svc["health_check_custom_config"]); num(hc["failure_threshold"]) != 1 {
			t.Errorf("%s: health_check_custom_config %v, want failure_threshold 1", name, svc["health_check_custom_config"])
		}
	}
}

func TestObservability(t *testing.T) {
	for _, email := range []string{"", "oncall@example.com"} {
		t.Run("email="+email, func(t *testing.T) {
			doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
				NewObservability(stack, "obs", &ObservabilityProps{
					Prefix: "herald-test", EnvironmentName: "test", Account: testAccount, Region: testRegion,
					ClusterName: "herald-test",
					Services:    []MonitoredService{{Name: "notification-api", MinTasks: 2}, {Name: "email-sender", MinTasks: 1}},
					Queue:       "q", DeadLetter: "q-dlq", Table: "herald-test-state",
					LoadBalancerARNSuffix: jsii.String("app/x/1"), TargetGroupARNSuffix: jsii.String("targetgroup/y/2"),
					AlarmEmail: email, OldestMessageAge: 10 * time.Minute, API5xxPercent: 5, SenderFailurePercent: 5,
					// the second case with SES feedback
					FeedbackQueue: map[bool]string{true: "fq"}[email != ""], FeedbackDeadLetter: map[bool]string{true: "fq-dlq"}[email != ""],
				})
			})
			feedback := email != ""
			alarms := map[string]map[string]any{}
			for _, a := range doc.resources("aws_cloudwatch_metric_alarm") {
				alarms[a["alarm_name"].(string)] = a
				if len(strs(t, a["alarm_actions"])) != 1 {
					t.Errorf("alarm %s notifies nobody", a["alarm_name"])
				}
			}
			for _, name := range []string{"dlq-not-empty", "oldest-message-age", "api-5xx-rate", "sender-failure-rate", "notification-api-tasks-below-minimum", "email-sender-tasks-below-minimum", "store-throttled"} {
				if alarms["herald-test-"+name] == nil {
					t.Errorf("no alarm %s (have %v)", name, keys(alarms))
				}
			}
			if q := mustJSON(alarms["herald-test-store-throttled"]["metric_query"]); !strings.Contains(q, `"TableName":"herald-test-state"`) ||
				!strings.Contains(q, "ReadThrottleEvents") || !strings.Contains(q, "WriteThrottleEvents") {
				t.Errorf("store alarm queries %s", q)
			}
			// SES reputation: account-wide hourly ratios, alarmed before
			// SES's review at 5 % and 0.1 %; the feedback queues.
			for name, want := range map[string]struct {
				metric    string
				threshold float64
			}{
				"ses-bounce-rate":             {"Reputation.BounceRate", 0.04},
				"ses-complaint-rate":          {"Reputation.ComplaintRate", 0.0008},
				"feedback-dlq-not-empty":      {"ApproximateNumberOfMessagesVisible", 0},
				"feedback-oldest-message-age": {"ApproximateAgeOfOldestMessage", 900},
			} {
				a := alarms["herald-test-"+name]
				if (a != nil) != feedback {
					t.Errorf("alarm %s exists %v with feedback %v", name, a != nil, feedback)
					continue
				}
				if a != nil && (a["metric_name"] != want.metric || num(a["threshold"]) != want.threshold) {
					t.Errorf("alarm %s: %v >= %v, want %s at %v", name, a["metric_name"], a["threshold"], want.metric, want.threshold)
				}
			}
			if a := alarms["herald-test-ses-bounce-rate"]; feedback && (a["namespace"] != "AWS/SES" || a["statistic"] != "Maximum" || num(a["period"]) != 3600 ||
				a["comparison_operator"] != "GreaterThanOrEqualToThreshold" || a["dimensions"] != nil && len(a["dimensions"].(map[string]any)) != 0 || a["treat_missing_data"] != "notBreaching") {
				t.Errorf("bounce rate alarm %v", a)
			}
			// The DLQ alarm fires on the first message, be it moved by SQS
			// redrive (the DLQ's depth) or by the sender (its DeadLettered).
			if a := alarms["herald-test-dlq-not-empty"]; num(a["threshold"]) != 0 || a["comparison_operator"] != "GreaterThanThreshold" ||
				num(a["evaluation_periods"]) != 1 || num(a["datapoints_to_alarm"]) != 1 {
				t.Errorf("dlq alarm %v", a)
			} else if q := mustJSON(a["metric_query"]); !strings.Contains(q, `"QueueName":"q-dlq"`) || !strings.Contains(q, `"metric_name":"DeadLettered"`) ||
				!strings.Contains(q, "MAX([FILL(visible, 0), FILL(moved, 0)])") {
				t.Errorf("dlq alarm queries %s", q)
			}
			if a := alarms["herald-test-notification-api-tasks-below-minimum"]; num(a["threshold"]) != 2 || a["comparison_operator"] != "LessThanThreshold" {
				t.Errorf("task alarm %v", a)
			}
			if !strings.HasPrefix(doc.only(t, "aws_sns_topic")["kms_master_key_id"].(string), "${aws_kms_key.") {
				t.Error("the alarm topic is not encrypted")
			}
			if got := len(doc.resources("aws_sns_topic_subscription")); got != map[bool]int{true: 1, false: 0}[email != ""] {
				t.Errorf("%d subscriptions", got)
			}
			body := mustJSON(doc.only(t, "aws_cloudwatch_dashboard")["dashboard_body"])
			for _, metric := range []string{"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible", "ApproximateAgeOfOldestMessage", "RequestCount", "TargetResponseTime", "HTTPCode_Target_5XX_Count", "EnqueueLatency", "Sent", "Failed", "Retried", "Throttled", "PausedTime", "ProcessingTime", "p99", "CPUUtilization", "MemoryUtilization", "RunningTaskCount", "ConsumedWriteCapacityUnits", "WriteThrottleEvents"} {
				if !strings.Contains(body, metric) {
					t.Errorf("the dashboard lacks %s", metric)
				}
			}
			for _, metric := range []string{"Reputation.BounceRate", "Reputation.ComplaintRate", "Delivered", "Bounced", "Complained", "SESRejected", "Delayed", "DuplicateSends", "FeedbackDeadLettered", "bounce rate alarm", "complaint rate alarm", "0.0008"} {
				if strings.Contains(body, metric) != feedback {
					t.Errorf("the dashboard shows %s: %v, with feedback %v", metric, !feedback, feedback)
				}
			}
		})
	}
}

func TestSES(t *testing.T) {
	for _, manage := range []bool{true, false} {
		doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
			NewSES(stack, "ses", &SESProps{Identity: "example.com", Manage: manage, ConfigurationSet: "herald-test", Account: testAccount, Region: testRegion})
		})
		if got := len(doc.resources("aws_sesv2_email_identity")); got != map[bool]int{true: 1, false: 0}[manage] {
			t.Errorf("manage=%v: %d identities", manage, got)
		}
		cs := doc.only(t, "aws_sesv2_configuration_set")
		if block(cs["delivery_options"])["tls_policy"] != "REQUIRE" {
			t.Errorf("configuration set %v", cs)
		}
	}
}

// SES.GrantSend: the sender may send only from what the API accepts: the
// allow-list's addresses ignoring case, any address of an allowed domain
// (lower case, as SES compares it); in the sandbox also to the listed
// recipients' identities. The queue and the secrets grant what their users
// need, the key through their service only.
func TestGrants(t *testing.T) {
	identity := func(id string) string { return "arn:aws:ses:eu-west-1:123456789012:identity/" + id }
	ses := &SES{IdentityARN: identity("example.com"), account: testAccount, region: testRegion}
	from, err := contract.ParseAllowList("No-Reply@Example.com,@Mail.Example.com,alerts@example.com,no-reply@example.com")
	if err != nil {
		t.Fatal(err)
	}
	got := ses.GrantSend(from, []string{"tester@example.org"})
	want := []Statement{
		{Sid: "SendAsAllowedAddresses", Actions: []string{"ses:SendEmail"}, Resources: []string{identity("example.com"), identity("tester@example.org")},
			Conditions: []Condition{{Test: "StringEqualsIgnoreCase", Variable: "ses:FromAddress", Values: []string{"alerts@example.com", "no-reply@example.com"}}}},
		{Sid: "SendAsAllowedDomains", Actions: []string{"ses:SendEmail"}, Resources: []string{identity("example.com"), identity("tester@example.org")},
			Conditions: []Condition{{Test: "StringLike", Variable: "ses:FromAddress", Values: []string{"*@mail.example.com"}}}},
	}
	if mustJSON(got) != mustJSON(want) {
		t.Errorf("statements\n %s\nwant\n %s", mustJSON(got), mustJSON(want))
	}
	if err := checkStatements(got, identityPolicy); err != nil {
		t.Error(err)
	}
	// Without an @domain entry there is no domain statement.
	addresses, _ := contract.ParseAllowList("alerts@example.com")
	if got := ses.GrantSend(addresses, nil); len(got) != 1 || len(got[0].Resources) != 1 {
		t.Errorf("addresses only: %s", mustJSON(got))
	}

	synthConstruct(t, func(stack cdktf.TerraformStack) {
		q := NewQueue(stack, "queue", queueProps(10*time.Second))
		s := NewSecrets(stack, "secrets", &SecretsProps{Prefix: "herald-test", Account: testAccount, Region: testRegion, RecoveryWindowDays: 7,
			Secrets: []SecretSpec{{Name: "k"}}, Parameters: []ParameterSpec{{Name: "p", Value: "v"}}})
		for name, g := range map[string][]Statement{
			"send": q.GrantSend(), "consume": q.GrantConsume(), "read": s.GrantRead("K", "k"), "parameters": {s.GrantReadParameters("P", "p")},
		} {
			if err := checkStatements(g, identityPolicy); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			actions := map[string]bool{}
			for _, st := range g {
				for _, a := range st.Actions {
					actions[a] = true
				}
				if strings.HasPrefix(st.Actions[0], "kms:") && (len(st.Conditions) != 1 || st.Conditions[0].Variable != "kms:ViaService") {
					t.Errorf("%s: the key without kms:ViaService: %+v", name, st)
				}
			}
			wantActions := map[string][]string{
				"send":       {"sqs:SendMessage", "sqs:GetQueueAttributes", "kms:GenerateDataKey"},
				"consume":    {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage", "kms:Decrypt"},
				"read":       {"secretsmanager:GetSecretValue", "kms:Decrypt"},
				"parameters": {"ssm:GetParameters"},
			}[name]
			for _, a := range wantActions {
				if !actions[a] {
					t.Errorf("%s grants no %s", name, a)
				}
			}
			if name == "send" && actions["sqs:ReceiveMessage"] {
				t.Error("a producer may receive")
			}
		}
	})
}

func TestRepositories(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewRepositories(stack, "repos", &RepositoriesProps{Prefix: "herald-test", Account: testAccount, Region: testRegion, Images: []string{"notification-api", "email-sender"}, KeepImages: 10})
	})
	repos := doc.resources("aws_ecr_repository")
	if len(repos) != 2 || len(doc.resources("aws_ecr_lifecycle_policy")) != 2 {
		t.Fatalf("%d repositories", len(repos))
	}
	for name, r := range repos {
		enc := block(r["encryption_configuration"])
		if r["image_tag_mutability"] != "IMMUTABLE" || block(r["image_scanning_configuration"])["scan_on_push"] != true || enc["encryption_type"] != "KMS" || enc["kms_key"] == nil {
			t.Errorf("repository %s: %v", name, r)
		}
	}
	for _, lp := range doc.resources("aws_ecr_lifecycle_policy") {
		if !strings.Contains(lp["policy"].(string), `"countNumber":10`) {
			t.Errorf("lifecycle %v", lp["policy"])
		}
	}
}

func TestSecretsHoldNoValues(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewSecrets(stack, "secrets", &SecretsProps{
			Prefix: "herald-test", Account: testAccount, Region: testRegion, RecoveryWindowDays: 7,
			Secrets:    []SecretSpec{{Name: "api-key-hashes", InitialValue: "{}"}, {Name: "smtp-credentials"}},
			Parameters: []ParameterSpec{{Name: "default-from", Value: "no-reply@example.com"}},
		})
	})
	// The only value is the API key set's placeholder: no key at all.
	v := doc.only(t, "aws_secretsmanager_secret_version")
	if v["secret_string"] != "{}" || !strings.Contains(v["secret_id"].(string), "api-key-hashes") {
		t.Errorf("secret version %v", v)
	}
	// Terraform leaves the operator's values alone, and the placeholder
	// keeps a label of its own so Secrets Manager never deletes it (which
	// would make Terraform create it again, as the current value).
	if got := strs(t, block(v["lifecycle"])["ignore_changes"]); !slices.Equal(got, []string{"secret_string", "version_stages"}) {
		t.Errorf("ignore_changes %v", got)
	}
	if got := strs(t, v["version_stages"]); !slices.Equal(got, []string{"AWSCURRENT", "herald-initial"}) {
		t.Errorf("version stages %v", got)
	}
	for name, s := range doc.resources("aws_secretsmanager_secret") {
		if s["kms_key_id"] == nil {
			t.Errorf("secret %s is not encrypted with the stack's key", name)
		}
	}
	if p := doc.only(t, "aws_ssm_parameter"); p["type"] != "String" || p["name"] != "/herald-test/default-from" {
		t.Errorf("parameter %v", p)
	}
}

func TestCluster(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewCluster(stack, "cluster", &ClusterProps{Name: "herald-test", ServiceConnectNamespaceARN: jsii.String("arn:ns")})
	})
	c := doc.only(t, "aws_ecs_cluster")
	if s := block(c["setting"]); s["name"] != "containerInsights" || s["value"] != "enabled" {
		t.Errorf("container insights %v", c["setting"])
	}
	if block(c["service_connect_defaults"])["namespace"] != "arn:ns" {
		t.Errorf("service connect defaults %v", c["service_connect_defaults"])
	}
}

func TestRoleTrust(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewRole(stack, "role", &RoleProps{
			Name: "herald-test-role", Service: "ecs-tasks.amazonaws.com", Account: testAccount,
			SourceArnLike: "arn:aws:ecs:eu-west-1:123456789012:*",
			Statements:    []Statement{{Actions: []string{"sqs:SendMessage"}, Resources: []string{"arn:aws:sqs:eu-west-1:123456789012:q"}}},
		})
	})
	trust := doc.named(t, "aws_iam_role", "role")["assume_role_policy"].(string)
	var doc2 map[string]any
	for name, d := range doc.data("aws_iam_policy_document") {
		if strings.Contains(trust, name) {
			doc2 = d
		}
	}
	st := block(doc2["statement"])
	conds := map[string][]string{}
	for _, c := range blocks(st["condition"]) {
		conds[c["variable"].(string)] = strs(t, c["values"])
	}
	if !slices.Equal(conds["aws:SourceAccount"], []string{testAccount}) || conds["aws:SourceArn"] == nil || st["resources"] != nil {
		t.Errorf("trust statement %v", st)
	}
}

func TestConstructsRefuseBadProps(t *testing.T) {
	cases := []struct {
		name  string
		build func(stack cdktf.TerraformStack)
		want  string
	}{
		{"service size", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.CPU, p.Memory = 256, 8192
			NewFargateService(s, "svc", p)
		}, "not offered by Fargate"},
		{"service secret in plain variables", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.Variables["HERALD_SMTP_PASSWORD"] = "hunter2"
			NewFargateService(s, "svc", p)
		}, "Variables[HERALD_SMTP_PASSWORD] looks like a secret"},
		{"service shell health check", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.HealthCheckCommand = []string{"CMD-SHELL", "curl localhost"}
			NewFargateService(s, "svc", p)
		}, "the images have no shell"},
		{"service two meshes", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.ServiceConnect = &ServiceConnectSettings{NamespaceARN: jsii.String("arn:ns")}
			p.AppMesh = &AppMeshSettings{}
			NewFargateService(s, "svc", p)
		}, "exclusive"},
		{"service egress rules of one name", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.EgressRules = append(p.EgressRules, p.EgressRules[0])
			NewFargateService(s, "svc", p)
		}, `ID "ses" must be unique`},
		{"service wildcard task action", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.TaskGrants = []Statement{{Actions: []string{"sqs:*"}, Resources: []string{"arn:q"}}}
			NewFargateService(s, "svc", p)
		}, "wildcard"},
		{"table name", func(s cdktf.TerraformStack) {
			NewTable(s, "t", &TableProps{Name: "x", Account: testAccount, Region: testRegion})
		}, `Name "x": 3..255`},
		{"feedback visibility", func(s cdktf.TerraformStack) {
			NewFeedback(s, "f", &FeedbackProps{Prefix: "herald-test", Account: testAccount, Region: testRegion, ConfigurationSetName: "herald-test", Visibility: time.Second})
		}, "HERALD_FEEDBACK_VISIBILITY"},
		{"feedback without a configuration set", func(s cdktf.TerraformStack) {
			NewFeedback(s, "f", &FeedbackProps{Prefix: "herald-test", Account: testAccount, Region: testRegion, Visibility: 30 * time.Second})
		}, "ConfigurationSetName are required"},
		{"published path with a trailing slash", func(s cdktf.TerraformStack) {
			NewPublished(s, "p", &PublishedProps{Path: "/herald/test/", Parameters: []PublishedParameter{{Name: "a", Description: "a", Value: jsii.String("x")}}})
		}, "without a trailing slash"},
		{"generated secret too short", func(s cdktf.TerraformStack) {
			NewSecrets(s, "s", &SecretsProps{Prefix: "p", Account: testAccount, Region: testRegion, RecoveryWindowDays: 7, Secrets: []SecretSpec{{Name: "id", Generate: 16}}})
		}, "Generate 16: 32..4096"},
		{"queue retention", func(s cdktf.TerraformStack) {
			p := queueProps(10 * time.Second)
			p.Retention, p.DLQRetention = 14*24*time.Hour, 7*24*time.Hour
			NewQueue(s, "q", p)
		}, "Queue.DLQRetention"},
		// Constructs have no defaults of their own: a zero is refused.
		{"queue without settings", func(s cdktf.TerraformStack) {
			NewQueue(s, "q", &QueueProps{Name: "q", Account: testAccount, Region: testRegion})
		}, "Queue.MaxReceiveCount: 0 is outside 1..1000"},
		{"key without a deletion window", func(s cdktf.TerraformStack) {
			NewKey(s, "k", &KeyProps{Alias: "x", Account: testAccount, Region: testRegion})
		}, "DeletionWindowDays 0 is outside 7..30"},
		{"service without log retention", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.LogRetentionDays = 0
			NewFargateService(s, "svc", p)
		}, "RetentionDays 0 is not a CloudWatch retention"},
		{"service without tasks", func(s cdktf.TerraformStack) {
			p := serviceProps()
			p.MinTasks, p.MaxTasks = 0, 0
			NewFargateService(s, "svc", p)
		}, "MinTasks 0"},
		{"observability without thresholds", func(s cdktf.TerraformStack) {
			NewObservability(s, "o", &ObservabilityProps{Prefix: "p", EnvironmentName: "e", Account: testAccount, Region: testRegion, ClusterName: "c", Queue: "q", DeadLetter: "d", Table: "t",
				LoadBalancerARNSuffix: jsii.String("a"), TargetGroupARNSuffix: jsii.String("t")})
		}, "OldestMessageAge 0s is under a minute"},
		{"secrets without a recovery window", func(s cdktf.TerraformStack) {
			NewSecrets(s, "s", &SecretsProps{Prefix: "p", Account: testAccount, Region: testRegion})
		}, "RecoveryWindowDays 0 is outside 7..30"},
		{"ingress name", func(s cdktf.TerraformStack) {
			NewIngress(s, "i", &IngressProps{Name: strings.Repeat("x", 33), VPCID: jsii.String("v"), SubnetIDs: []*string{jsii.String("a"), jsii.String("b")}, TargetPort: 8080, HealthPath: "/api", CertificateARN: testCertificate})
		}, "1..32 characters"},
		{"access log bucket name", func(s cdktf.TerraformStack) {
			NewAccessLogBucket(s, "l", &AccessLogBucketProps{Name: "Logs_Bucket", Account: testAccount, Region: testRegion})
		}, "not an S3 bucket name"},
		{"secret placeholder", func(s cdktf.TerraformStack) {
			NewSecrets(s, "s", &SecretsProps{Prefix: "p", Account: testAccount, Region: testRegion, RecoveryWindowDays: 7, Secrets: []SecretSpec{{Name: "k", InitialValue: "{"}}})
		}, "InitialValue is not JSON"},
		{"log group without key", func(s cdktf.TerraformStack) {
			NewLogGroup(s, "l", &LogGroupProps{Name: "/x"})
		}, "every Herald log group is encrypted"},
		{"network cidr", func(s cdktf.TerraformStack) {
			NewNetwork(s, "n", &NetworkProps{Name: "n", Account: testAccount, Region: testRegion, NetworkConfig: NetworkConfig{CIDR: "10.0.0.0/27", AZCount: 2, NATGateways: 1, SubnetNewBits: 4}, LogKeyARN: jsii.String("k"), LogRetentionDays: 30})
		}, "Network.CIDR"},
		{"mesh egress", func(s cdktf.TerraformStack) {
			NewAppMesh(s, "m", &AppMeshProps{Name: "m", Account: testAccount, Region: testRegion, NamespaceID: jsii.String("n"), NamespaceName: "n.internal", EgressFilter: "OPEN", Services: []MeshService{{Name: "a", Port: 1, HealthPath: "/"}}})
		}, "EgressFilter"},
		{"key alias", func(s cdktf.TerraformStack) {
			NewKey(s, "k", &KeyProps{Alias: "alias/x", Account: testAccount, Region: testRegion, DeletionWindowDays: 30})
		}, "without the alias/ prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			app := cdktf.Testing_App(nil)
			stack := cdktf.NewTerraformStack(app, jsii.String("test"))
			msg := mustPanic(t, func() { c.build(stack) })
			if !strings.Contains(msg, c.want) {
				t.Errorf("panic %q does not say %q", msg, c.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewKey(stack, "key", &KeyProps{
			Alias: "herald-test-logs", Account: testAccount, Region: testRegion, DeletionWindowDays: 30,
			ServiceGrants: []Statement{{
				Sid: "Logs", Actions: []string{"kms:Encrypt"},
				Principals: []Principal{{Type: "Service", Identifiers: []string{"logs.eu-west-1.amazonaws.com"}}},
				Conditions: []Condition{{Test: "ArnLike", Variable: "kms:EncryptionContext:aws:logs:arn", Values: []string{"arn:aws:logs:eu-west-1:123456789012:log-group:/herald/*"}}},
			}},
		})
	})
	k := doc.only(t, "aws_kms_key")
	if k["enable_key_rotation"] != true || num(k["deletion_window_in_days"]) != 30 {
		t.Errorf("key %v", k)
	}
	if a := doc.only(t, "aws_kms_alias"); a["name"] != "alias/herald-test-logs" {
		t.Errorf("alias %v", a["name"])
	}
	statements := blocks(doc.data("aws_iam_policy_document")[keys(doc.data("aws_iam_policy_document"))[0]]["statement"])
	if len(statements) != 2 {
		t.Fatalf("%d statements", len(statements))
	}
	admin := strs(t, statements[0]["actions"])
	// The account keeps the key manageable: it may always change the policy.
	if !slices.Contains(admin, "kms:PutKeyPolicy") || !slices.Contains(admin, "kms:ScheduleKeyDeletion") {
		t.Errorf("administration %v", admin)
	}
	if strs(t, block(statements[0]["principals"])["identifiers"])[0] != "arn:aws:iam::123456789012:root" {
		t.Errorf("administrator %v", statements[0]["principals"])
	}
	if block(statements[1]["condition"])["variable"] != "kms:EncryptionContext:aws:logs:arn" {
		t.Errorf("service grant %v", statements[1])
	}
}

func TestLogGroupAndDiscovery(t *testing.T) {
	doc := synthConstruct(t, func(stack cdktf.TerraformStack) {
		NewLogGroup(stack, "logs", &LogGroupProps{Name: "/herald/test/api", RetentionDays: 90, KMSKeyARN: jsii.String("arn:key")})
		NewDiscovery(stack, "discovery", &DiscoveryProps{Name: "herald-test.internal", VPCID: jsii.String("vpc-01234567")})
	})
	g := doc.only(t, "aws_cloudwatch_log_group")
	if g["name"] != "/herald/test/api" || num(g["retention_in_days"]) != 90 || g["kms_key_id"] != "arn:key" {
		t.Errorf("log group %v", g)
	}
	if ns := doc.only(t, "aws_service_discovery_private_dns_namespace"); ns["name"] != "herald-test.internal" || ns["vpc"] != "vpc-01234567" {
		t.Errorf("namespace %v", ns)
	}
}

// TestStackOtherPaths builds a whole stack down the paths the declared
// environments do not take: an existing VPC without endpoints, an internal
// load balancer, SMTP and S3 lock-file state.
func TestStackOtherPaths(t *testing.T) {
	env := validEnv()
	env.Network = NetworkConfig{SkipEndpoints: true, Existing: &ExistingNetwork{
		VPCID:            "vpc-0123456789abcdef0",
		PublicSubnetIDs:  []string{"subnet-0a000001", "subnet-0a000002"},
		PrivateSubnetIDs: []string{"subnet-0b000001", "subnet-0b000002"},
	}}
	env.Ingress = IngressConfig{Internal: true}
	env.Email = EmailConfig{Transport: "smtp", SMTPAddr: "smtp.example.com:587", DefaultFrom: "no-reply@example.com"}
	env.State = StateConfig{Bucket: "herald-state", UseLockfile: true}
	env.API.Image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/herald/api@sha256:" + strings.Repeat("cd", 32)
	if err := env.Validate(); err != nil {
		t.Fatal(err)
	}
	app := cdktf.Testing_App(nil)
	h := NewHeraldStack(app, "herald-test", &HeraldStackProps{Environment: env})
	doc := decode(t, *cdktf.Testing_Synth(h.TerraformStack, jsii.Bool(false)))

	if n := len(doc.resources("aws_vpc")) + len(doc.resources("aws_vpc_endpoint")) + len(doc.resources("aws_flow_log")); n != 0 {
		t.Errorf("%d VPC resources in an existing VPC without endpoints", n)
	}
	if doc.only(t, "aws_lb")["internal"] != true {
		t.Error("the load balancer is not internal")
	}
	if h.SES != nil || len(doc.resources("aws_sesv2_email_identity")) != 0 {
		t.Error("SES resources without SES")
	}
	// Both services reach AWS through NAT here.
	public := map[string][]float64{}
	for _, r := range doc.resources("aws_security_group_rule") {
		if r["type"] == "egress" && slices.Contains(strs(t, r["cidr_blocks"]), "0.0.0.0/0") {
			owner := regexp.MustCompile(`aws_security_group\.([a-z]+)_security-group`).FindStringSubmatch(r["security_group_id"].(string))
			public[owner[1]] = append(public[owner[1]], num(r["from_port"]))
		}
		if r["type"] == "ingress" && slices.ContainsFunc(strs(t, r["cidr_blocks"]), isPublicCIDR) {
			t.Errorf("an internal load balancer open to the internet: %v", r)
		}
	}
	slices.Sort(public["sender"])
	if fmt.Sprint(public) != "map[api:[443] sender:[443 587]]" {
		t.Errorf("public egress %v", public)
	}
	// The SMTP credentials reference a secret, so the sender's container
	// definitions are rendered by jsonencode.
	sender := doc.named(t, "aws_ecs_task_definition", "sender")["container_definitions"].(string)
	for _, want := range []string{"${jsonencode(", `"HERALD_SMTP_PASSWORD"`, `.arn}:password::`, `"HERALD_SMTP_ADDR"`, `"smtp.example.com:587"`} {
		if !strings.Contains(sender, want) {
			t.Errorf("sender container definitions lack %s: %.200s", want, sender)
		}
	}
	if strings.Contains(sender, `"HERALD_SES_CONFIGURATION_SET"`) {
		t.Error("an SES setting with SMTP")
	}
	exec := grants(t, roleStatements(t, doc, "sender_execution-role"))
	if got := exec["secretsmanager:GetSecretValue"]; len(got) != 1 || !strings.Contains(got[0], "smtp-credentials") {
		t.Errorf("the sender's execution role reads %v", got)
	}
	if task := grants(t, roleStatements(t, doc, "sender_task-role")); task["ses:SendEmail"] != nil {
		t.Error("the sender may use SES with SMTP")
	}
	if !strings.HasSuffix(exec["ecr:BatchGetImage"][0], "repository/herald-test/email-sender") {
		t.Errorf("sender pulls %v", exec["ecr:BatchGetImage"])
	}
	if api := grants(t, roleStatements(t, doc, "api_execution-role")); !slices.Equal(api["ecr:BatchGetImage"], []string{"arn:aws:ecr:eu-west-1:123456789012:repository/herald/api"}) {
		t.Errorf("the API pulls %v, want the repository of its configured image", api["ecr:BatchGetImage"])
	}
	s3 := block(block(block(doc["terraform"])["backend"])["s3"])
	if s3["use_lockfile"] != true || s3["key"] != "herald/herald-test.tfstate" || s3["region"] != "eu-west-1" {
		t.Errorf("backend %v", s3)
	}
	if len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "Sender.Image is not set") {
		t.Errorf("warnings %q", h.Warnings)
	}
}
