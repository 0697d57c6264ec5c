package stacks

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appautoscalingpolicy"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appautoscalingtarget"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ecsservice"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ecstaskdefinition"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/securitygroup"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/securitygrouprule"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// Task and container constants shared by both services.
const (
	// nonRootUser is the distroless "nonroot" user the images run as.
	nonRootUser = "65532:65532"
	// stopTimeout is how long ECS waits after SIGTERM before SIGKILL; the
	// services drain within HERALD_SHUTDOWN_TIMEOUT (shutdownTimeout).
	stopTimeout = 30 * time.Second
	// healthCheckGrace lets a new API task warm up before the load
	// balancer's failed checks count.
	healthCheckGrace = 60 * time.Second
	// Envoy (App Mesh) runs as this user; the proxy ignores its traffic.
	envoyUser         = "1337"
	envoyIngressPort  = 15000
	envoyEgressPort   = 15001
	envoyAdminPort    = 9901
	ecsMetadataIP     = "169.254.170.2"
	instanceMetadata  = "169.254.169.254"
	envoyContainer    = "envoy"
	scaleOutCooldown  = 60
	scaleInCooldown   = 300
	cpuScalingMetric  = "ECSServiceAverageCPUUtilization"
	containerInsights = "ECS/ContainerInsights"
)

// EgressRule lets the service's tasks open connections to one destination.
type EgressRule struct {
	// ID names the rule's resource ("egress-<ID>"): a stable name for what
	// the rule is for, e.g. "ses" (trivy-ignore.rego matches on it).
	ID          string
	Description string
	Port        int
	// Exactly one destination: CIDRs, a prefix list or a security group.
	CIDRs           []string
	PrefixListID    *string
	SecurityGroupID *string
}

// LoadBalancerTarget attaches the service to a target group.
type LoadBalancerTarget struct {
	TargetGroupARN *string
	// SecurityGroupID of the load balancer, the only source let in.
	SecurityGroupID *string
}

// BacklogScaling scales a queue consumer on visible messages per task.
type BacklogScaling struct {
	QueueName string
	PerTask   int
}

// ServiceConnectSettings put the service into Service Connect.
type ServiceConnectSettings struct {
	NamespaceARN *string
	// Publish makes the service's port discoverable as DiscoveryName;
	// otherwise the service is a client only.
	Publish       bool
	DiscoveryName string
}

// AppMeshSettings put the service into App Mesh with an Envoy sidecar.
type AppMeshSettings struct {
	// VirtualNodeARN is the node's reference (for the task role);
	// VirtualNodeName its ARN spelled out (for Envoy's environment).
	VirtualNodeARN  *string
	VirtualNodeName string
	// RegistryARN is the Cloud Map service the tasks register in.
	RegistryARN *string
	EnvoyImage  string
	// ExtraIgnoredPorts bypass the proxy in addition to 443 (AWS APIs).
	ExtraIgnoredPorts []int
}

// FargateServiceProps describe one service: task definition, ECS service,
// roles, security group, log group and autoscaling.
type FargateServiceProps struct {
	// Name of the service: container, ECS service and the metric dimension
	// Service, e.g. "notification-api".
	Name string
	// Prefix of resource names, e.g. "herald-dev".
	Prefix      string
	Account     string
	Region      string
	ClusterARN  *string
	ClusterName string

	// Image reference; ImageRepositoryARN is its ECR repository, empty for
	// images outside ECR.
	Image              string
	ImageRepositoryARN string
	// HealthCheckCommand runs inside the container, e.g.
	// ["CMD", "/notification-api", "healthcheck"].
	HealthCheckCommand []string
	// CPU units and Memory MiB: a Fargate pair.
	CPU    int
	Memory int
	// Port the service listens on and its port mapping name.
	Port     int
	PortName string

	// Variables are plain environment values; Secrets map a variable to an
	// ECS valueFrom (a Secrets Manager ARN, optionally with ":key::", or an
	// SSM parameter ARN). A variable is in one of them, never both.
	Variables map[string]string
	Secrets   map[string]string
	// ExecutionGrants let the execution role read what resolves Secrets:
	// the grants of those secrets and parameters (Secrets.GrantRead,
	// Secrets.GrantReadParameters).
	ExecutionGrants []Statement
	// TaskGrants are the application's own permissions: the grants of what
	// it uses (Queue.GrantSend, Secrets.GrantRead, ...).
	TaskGrants []Statement

	VPCID       *string
	SubnetIDs   []*string
	EgressRules []EgressRule
	// LoadBalancer is nil for a service nothing calls.
	LoadBalancer *LoadBalancerTarget

	MinTasks  int
	MaxTasks  int
	CPUTarget int
	Backlog   *BacklogScaling

	// At most one of ServiceConnect and AppMesh.
	ServiceConnect *ServiceConnectSettings
	AppMesh        *AppMeshSettings

	LogKeyARN        *string
	LogRetentionDays int

	// DependsOn are created before the ECS service (e.g. the listener that
	// attaches the target group to the load balancer).
	DependsOn []cdktf.ITerraformDependable
}

// FargateService is one running service.
type FargateService struct {
	constructs.Construct
	Service        ecsservice.EcsService
	TaskDefinition ecstaskdefinition.EcsTaskDefinition
	SecurityGroup  securitygroup.SecurityGroup
	ExecutionRole  *Role
	TaskRole       *Role
	LogGroup       *LogGroup
	Scaling        appautoscalingtarget.AppautoscalingTarget
	// Name of the ECS service, known at synth time.
	Name string
}

var secretLikeVariable = []string{"PASSWORD", "USERNAME", "KEY_HASHES", "TOKEN"}

var egressIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func (p *FargateServiceProps) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Name == "" || p.Prefix == "" {
		add("Name and Prefix are required")
	}
	if len(p.Prefix)+len(p.Name)+len("-execution") > 64 {
		add("Prefix %q and Name %q make role names longer than 64 characters", p.Prefix, p.Name)
	}
	if _, err := ParseImage(p.Image); err != nil {
		add("Image: %v", err)
	}
	if len(p.HealthCheckCommand) < 2 || p.HealthCheckCommand[0] != "CMD" {
		add("HealthCheckCommand %q must be an exec-form [\"CMD\", binary, args...]: the images have no shell", p.HealthCheckCommand)
	}
	if err := CheckFargateSize(p.CPU, p.Memory); err != nil {
		add("%v", err)
	}
	if p.Port < 1 || p.Port > 65535 || p.PortName == "" {
		add("Port %d is outside 1..65535, or PortName %q is empty", p.Port, p.PortName)
	}
	for k := range p.Variables {
		if _, dup := p.Secrets[k]; dup {
			add("Variables[%s] is also a secret", k)
		}
		for _, s := range secretLikeVariable {
			if strings.Contains(k, s) {
				add("Variables[%s] looks like a secret: pass it in Secrets", k)
			}
		}
	}
	if p.ClusterARN == nil || p.ClusterName == "" || p.VPCID == nil || len(p.SubnetIDs) == 0 {
		add("ClusterARN, ClusterName, VPCID and SubnetIDs are required")
	}
	ids := map[string]bool{}
	for _, r := range p.EgressRules {
		if !egressIDPattern.MatchString(r.ID) || ids[r.ID] {
			add("EgressRules %q: ID %q must be unique, lower-case letters, digits and -", r.Description, r.ID)
		}
		ids[r.ID] = true
		n := 0
		if len(r.CIDRs) > 0 {
			n++
		}
		if r.PrefixListID != nil {
			n++
		}
		if r.SecurityGroupID != nil {
			n++
		}
		if n != 1 || r.Description == "" || r.Port < 1 || r.Port > 65535 {
			add("EgressRules %q: needs a description, a port and exactly one destination", r.Description)
		}
	}
	if p.MinTasks < 1 || p.MaxTasks < p.MinTasks {
		add("MinTasks %d / MaxTasks %d: need 1 <= MinTasks <= MaxTasks", p.MinTasks, p.MaxTasks)
	}
	if p.CPUTarget < 1 || p.CPUTarget > 100 {
		add("CPUTarget %d is outside 1..100", p.CPUTarget)
	}
	if p.Backlog != nil && (p.Backlog.QueueName == "" || p.Backlog.PerTask < 1) {
		add("Backlog needs a queue name and PerTask >= 1")
	}
	if p.ServiceConnect != nil && p.AppMesh != nil {
		add("ServiceConnect and AppMesh are exclusive")
	}
	if m := p.AppMesh; m != nil {
		if m.VirtualNodeARN == nil || m.VirtualNodeName == "" || m.RegistryARN == nil {
			add("AppMesh needs VirtualNodeARN, VirtualNodeName and RegistryARN")
		}
		if _, err := ParseImage(m.EnvoyImage); err != nil {
			add("AppMesh.EnvoyImage: %v", err)
		}
	}
	if s := p.ServiceConnect; s != nil && (s.NamespaceARN == nil || (s.Publish && s.DiscoveryName == "")) {
		add("ServiceConnect needs NamespaceARN, and DiscoveryName when it publishes")
	}
	if p.LogKeyARN == nil {
		add("LogKeyARN is required")
	}
	return errors.Join(errs...)
}

// containerDefinition is the subset of ECS's container definition Herald
// uses, in ECS's JSON field names.
type containerDefinition struct {
	Name                   string            `json:"name"`
	Image                  string            `json:"image"`
	Essential              bool              `json:"essential"`
	User                   string            `json:"user"`
	ReadonlyRootFilesystem bool              `json:"readonlyRootFilesystem"`
	PortMappings           []portMapping     `json:"portMappings,omitempty"`
	Variables              []keyValue        `json:"environment,omitempty"`
	Secrets                []secretRef       `json:"secrets,omitempty"`
	HealthCheck            *healthCheck      `json:"healthCheck,omitempty"`
	StopTimeout            int               `json:"stopTimeout,omitempty"`
	DependsOn              []containerDepend `json:"dependsOn,omitempty"`
	LogConfiguration       logConfiguration  `json:"logConfiguration"`
}

type portMapping struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	AppProtocol   string `json:"appProtocol"`
}

type keyValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type secretRef struct {
	Name      string `json:"name"`
	ValueFrom string `json:"valueFrom"`
}

type healthCheck struct {
	Command     []string `json:"command"`
	Interval    int      `json:"interval"`
	Timeout     int      `json:"timeout"`
	Retries     int      `json:"retries"`
	StartPeriod int      `json:"startPeriod"`
}

type containerDepend struct {
	ContainerName string `json:"containerName"`
	Condition     string `json:"condition"`
}

type logConfiguration struct {
	LogDriver string            `json:"logDriver"`
	Options   map[string]string `json:"options"`
}

func (p *FargateServiceProps) awslogs(prefix string, group string) logConfiguration {
	return logConfiguration{LogDriver: "awslogs", Options: map[string]string{
		"awslogs-group":         group,
		"awslogs-region":        p.Region,
		"awslogs-stream-prefix": prefix,
	}}
}

func (p *FargateServiceProps) containers(logGroup string) []containerDefinition {
	app := containerDefinition{
		Name:                   p.Name,
		Image:                  p.Image,
		Essential:              true,
		User:                   nonRootUser,
		ReadonlyRootFilesystem: true,
		PortMappings:           []portMapping{{Name: p.PortName, ContainerPort: p.Port, Protocol: "tcp", AppProtocol: "http"}},
		HealthCheck:            &healthCheck{Command: p.HealthCheckCommand, Interval: 15, Timeout: 5, Retries: 3, StartPeriod: 20},
		StopTimeout:            int(stopTimeout.Seconds()),
		LogConfiguration:       p.awslogs(p.Name, logGroup),
	}
	for _, k := range sortedKeys(p.Variables) {
		app.Variables = append(app.Variables, keyValue{Name: k, Value: p.Variables[k]})
	}
	for _, k := range sortedKeys(p.Secrets) {
		app.Secrets = append(app.Secrets, secretRef{Name: k, ValueFrom: p.Secrets[k]})
	}
	if p.AppMesh == nil {
		return []containerDefinition{app}
	}
	// The application starts once Envoy is healthy, so its first requests
	// already go through the proxy; on stop ECS stops it before Envoy.
	app.DependsOn = []containerDepend{{ContainerName: envoyContainer, Condition: "HEALTHY"}}
	envoy := containerDefinition{
		Name:      envoyContainer,
		Image:     p.AppMesh.EnvoyImage,
		Essential: true,
		User:      envoyUser,
		// AWS's Envoy image writes its bootstrap configuration at start.
		ReadonlyRootFilesystem: false,
		Variables: []keyValue{
			{Name: "APPMESH_RESOURCE_ARN", Value: p.AppMesh.VirtualNodeName},
			{Name: "ENVOY_LOG_LEVEL", Value: "info"},
		},
		// The Envoy image has a shell and curl; this is AWS's documented
		// check of the admin interface.
		HealthCheck: &healthCheck{
			Command:  []string{"CMD-SHELL", fmt.Sprintf("curl -s http://localhost:%d/server_info | grep state | grep -q LIVE", envoyAdminPort)},
			Interval: 5, Timeout: 2, Retries: 3, StartPeriod: 10,
		},
		StopTimeout:      int(stopTimeout.Seconds()),
		LogConfiguration: p.awslogs(envoyContainer, logGroup),
	}
	return []containerDefinition{envoy, app}
}

// proxyConfiguration routes the task's traffic through Envoy, except Envoy's
// own (its UID), the ECS and instance metadata endpoints, and HTTPS to AWS
// APIs (which SigV4 and TLS protect end to end).
func (p *FargateServiceProps) proxyConfiguration() *ecstaskdefinition.EcsTaskDefinitionProxyConfiguration {
	ignored := []string{"443"}
	for _, port := range p.AppMesh.ExtraIgnoredPorts {
		ignored = append(ignored, strconv.Itoa(port))
	}
	return &ecstaskdefinition.EcsTaskDefinitionProxyConfiguration{
		Type:          jsii.String("APPMESH"),
		ContainerName: jsii.String(envoyContainer),
		Properties: &map[string]*string{
			"IgnoredUID":         jsii.String(envoyUser),
			"ProxyIngressPort":   jsii.String(strconv.Itoa(envoyIngressPort)),
			"ProxyEgressPort":    jsii.String(strconv.Itoa(envoyEgressPort)),
			"AppPorts":           jsii.String(strconv.Itoa(p.Port)),
			"EgressIgnoredIPs":   jsii.String(ecsMetadataIP + "," + instanceMetadata),
			"EgressIgnoredPorts": jsii.String(strings.Join(ignored, ",")),
		},
	}
}

func (p *FargateServiceProps) executionStatements(logGroupARN string) []Statement {
	var repos []string
	if p.ImageRepositoryARN != "" {
		repos = append(repos, p.ImageRepositoryARN)
	}
	if p.AppMesh != nil {
		if ref, err := ParseImage(p.AppMesh.EnvoyImage); err == nil {
			if arn, ok := ref.ECRRepositoryARN(); ok {
				repos = append(repos, arn)
			}
		}
	}
	var out []Statement
	if len(repos) > 0 {
		out = append(out,
			Statement{Sid: "RegistryLogin", Actions: []string{"ecr:GetAuthorizationToken"}, Resources: []string{"*"}},
			Statement{Sid: "PullOwnImages", Actions: []string{"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}, Resources: repos},
		)
	}
	out = append(out, Statement{
		Sid: "WriteOwnLogs", Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{logGroupARN + ":*"},
		WildcardReason: "ECS names the log streams in the service's own group at run time",
	})
	return append(out, p.ExecutionGrants...)
}

// NewFargateService creates the service. Both Herald services are built by
// it; their differences are all in props.
func NewFargateService(scope constructs.Construct, id string, props *FargateServiceProps) *FargateService {
	if props == nil {
		props = &FargateServiceProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: service %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	s := &FargateService{Construct: c, Name: p.Name}
	full := p.Prefix + "-" + p.Name

	s.LogGroup = NewLogGroup(c, "logs", &LogGroupProps{
		Name:          "/herald/" + p.Prefix + "/" + p.Name,
		RetentionDays: p.LogRetentionDays,
		KMSKeyARN:     p.LogKeyARN,
	})
	ecsTasks := fmt.Sprintf("arn:%s:ecs:%s:%s:*", partition(p.Region), p.Region, p.Account)
	s.ExecutionRole = NewRole(c, "execution-role", &RoleProps{
		Name:          full + "-execution",
		Description:   "ECS pulls the image, writes logs and resolves secrets for " + full,
		Service:       "ecs-tasks.amazonaws.com",
		Account:       p.Account,
		SourceArnLike: ecsTasks,
		Statements:    p.executionStatements(*s.LogGroup.Group.Arn()),
	})
	taskStatements := slices.Clone(p.TaskGrants)
	if p.AppMesh != nil {
		taskStatements = append(taskStatements, Statement{
			Sid:       "EnvoyReadsOwnVirtualNode",
			Actions:   []string{"appmesh:StreamAggregatedResources"},
			Resources: []string{*p.AppMesh.VirtualNodeARN},
		})
	}
	s.TaskRole = NewRole(c, "task-role", &RoleProps{
		Name:          full + "-task",
		Description:   "What " + full + " itself may do",
		Service:       "ecs-tasks.amazonaws.com",
		Account:       p.Account,
		SourceArnLike: ecsTasks,
		Statements:    taskStatements,
	})

	td := &ecstaskdefinition.EcsTaskDefinitionConfig{
		Family:                  jsii.String(full),
		Cpu:                     jsii.String(strconv.Itoa(p.CPU)),
		Memory:                  jsii.String(strconv.Itoa(p.Memory)),
		NetworkMode:             jsii.String("awsvpc"),
		RequiresCompatibilities: jsii.Strings("FARGATE"),
		RuntimePlatform: &ecstaskdefinition.EcsTaskDefinitionRuntimePlatform{
			OperatingSystemFamily: jsii.String("LINUX"),
			CpuArchitecture:       jsii.String("X86_64"),
		},
		ExecutionRoleArn:     s.ExecutionRole.Role.Arn(),
		TaskRoleArn:          s.TaskRole.Role.Arn(),
		ContainerDefinitions: jsonDocument(p.containers(s.LogGroup.Name)),
		DependsOn:            &[]cdktf.ITerraformDependable{s.LogGroup.Group},
	}
	if p.AppMesh != nil {
		td.ProxyConfiguration = p.proxyConfiguration()
	}
	s.TaskDefinition = ecstaskdefinition.NewEcsTaskDefinition(c, jsii.String("task"), td)

	s.SecurityGroup = securitygroup.NewSecurityGroup(c, jsii.String("security-group"), &securitygroup.SecurityGroupConfig{
		Name:        jsii.String(full),
		Description: jsii.String("Tasks of " + full),
		VpcId:       p.VPCID,
		Tags:        nameTag(full),
	})
	for _, r := range p.EgressRules {
		rule := &securitygrouprule.SecurityGroupRuleConfig{
			SecurityGroupId: s.SecurityGroup.Id(),
			Type:            jsii.String("egress"),
			Protocol:        jsii.String("tcp"),
			FromPort:        jsii.Number(float64(r.Port)),
			ToPort:          jsii.Number(float64(r.Port)),
			Description:     jsii.String(r.Description),
		}
		switch {
		case len(r.CIDRs) > 0:
			rule.CidrBlocks = jsii.Strings(r.CIDRs...)
		case r.PrefixListID != nil:
			rule.PrefixListIds = &[]*string{r.PrefixListID}
		default:
			rule.SourceSecurityGroupId = r.SecurityGroupID
		}
		securitygrouprule.NewSecurityGroupRule(c, jsii.String("egress-"+r.ID), rule)
	}

	dependsOn := append([]cdktf.ITerraformDependable{s.ExecutionRole.Policy}, p.DependsOn...)
	if s.TaskRole.Policy != nil {
		dependsOn = append(dependsOn, s.TaskRole.Policy)
	}
	svc := &ecsservice.EcsServiceConfig{
		Name:                            jsii.String(p.Name),
		Cluster:                         p.ClusterARN,
		TaskDefinition:                  s.TaskDefinition.Arn(),
		DesiredCount:                    jsii.Number(float64(p.MinTasks)),
		LaunchType:                      jsii.String("FARGATE"),
		PlatformVersion:                 jsii.String("LATEST"),
		DeploymentMinimumHealthyPercent: jsii.Number(100),
		DeploymentMaximumPercent:        jsii.Number(200),
		DeploymentCircuitBreaker: &ecsservice.EcsServiceDeploymentCircuitBreaker{
			Enable:   jsii.Bool(true),
			Rollback: jsii.Bool(true),
		},
		NetworkConfiguration: &ecsservice.EcsServiceNetworkConfiguration{
			Subnets:        &p.SubnetIDs,
			SecurityGroups: &[]*string{s.SecurityGroup.Id()},
			AssignPublicIp: jsii.Bool(false),
		},
		PropagateTags:        jsii.String("SERVICE"),
		EnableEcsManagedTags: jsii.Bool(true),
		EnableExecuteCommand: jsii.Bool(false),
		WaitForSteadyState:   jsii.Bool(false),
		// Autoscaling owns the task count after the first deploy.
		Lifecycle: &cdktf.TerraformResourceLifecycle{IgnoreChanges: jsii.Strings("desired_count")},
		DependsOn: &dependsOn,
	}
	if lb := p.LoadBalancer; lb != nil {
		securitygrouprule.NewSecurityGroupRule(c, jsii.String("ingress-from-load-balancer"), &securitygrouprule.SecurityGroupRuleConfig{
			SecurityGroupId:       s.SecurityGroup.Id(),
			Type:                  jsii.String("ingress"),
			Protocol:              jsii.String("tcp"),
			FromPort:              jsii.Number(float64(p.Port)),
			ToPort:                jsii.Number(float64(p.Port)),
			SourceSecurityGroupId: lb.SecurityGroupID,
			Description:           jsii.String("The load balancer reaches " + p.Name),
		})
		svc.LoadBalancer = []*ecsservice.EcsServiceLoadBalancer{{
			TargetGroupArn: lb.TargetGroupARN,
			ContainerName:  jsii.String(p.Name),
			ContainerPort:  jsii.Number(float64(p.Port)),
		}}
		svc.HealthCheckGracePeriodSeconds = jsii.Number(healthCheckGrace.Seconds())
	}
	if sc := p.ServiceConnect; sc != nil {
		cfg := &ecsservice.EcsServiceServiceConnectConfiguration{
			Enabled:   jsii.Bool(true),
			Namespace: sc.NamespaceARN,
			LogConfiguration: &ecsservice.EcsServiceServiceConnectConfigurationLogConfiguration{
				LogDriver: jsii.String("awslogs"),
				Options: &map[string]*string{
					"awslogs-group":         jsii.String(s.LogGroup.Name),
					"awslogs-region":        jsii.String(p.Region),
					"awslogs-stream-prefix": jsii.String("service-connect"),
				},
			},
		}
		if sc.Publish {
			cfg.Service = []*ecsservice.EcsServiceServiceConnectConfigurationService{{
				PortName:      jsii.String(p.PortName),
				DiscoveryName: jsii.String(sc.DiscoveryName),
				ClientAlias: &ecsservice.EcsServiceServiceConnectConfigurationServiceClientAlias{
					Port:    jsii.Number(float64(p.Port)),
					DnsName: jsii.String(sc.DiscoveryName),
				},
			}}
		}
		svc.ServiceConnectConfiguration = cfg
	}
	if m := p.AppMesh; m != nil {
		svc.ServiceRegistries = &ecsservice.EcsServiceServiceRegistries{RegistryArn: m.RegistryARN}
	}
	s.Service = ecsservice.NewEcsService(c, jsii.String("service"), svc)

	resourceID := fmt.Sprintf("service/%s/%s", p.ClusterName, p.Name)
	s.Scaling = appautoscalingtarget.NewAppautoscalingTarget(c, jsii.String("scaling"), &appautoscalingtarget.AppautoscalingTargetConfig{
		ServiceNamespace:  jsii.String("ecs"),
		ScalableDimension: jsii.String("ecs:service:DesiredCount"),
		ResourceId:        jsii.String(resourceID),
		MinCapacity:       jsii.Number(float64(p.MinTasks)),
		MaxCapacity:       jsii.Number(float64(p.MaxTasks)),
		DependsOn:         &[]cdktf.ITerraformDependable{s.Service},
	})
	appautoscalingpolicy.NewAppautoscalingPolicy(c, jsii.String("scale-on-cpu"), &appautoscalingpolicy.AppautoscalingPolicyConfig{
		Name:              jsii.String(full + "-cpu"),
		PolicyType:        jsii.String("TargetTrackingScaling"),
		ServiceNamespace:  s.Scaling.ServiceNamespace(),
		ScalableDimension: s.Scaling.ScalableDimension(),
		ResourceId:        s.Scaling.ResourceId(),
		TargetTrackingScalingPolicyConfiguration: &appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration{
			TargetValue: jsii.Number(float64(p.CPUTarget)),
			PredefinedMetricSpecification: &appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification{
				PredefinedMetricType: jsii.String(cpuScalingMetric),
			},
			ScaleOutCooldown: jsii.Number(scaleOutCooldown),
			ScaleInCooldown:  jsii.Number(scaleInCooldown),
		},
	})
	if b := p.Backlog; b != nil {
		s.newBacklogScaling(c, full, p.ClusterName, b)
	}
	return s
}

// newBacklogScaling tracks visible messages per running task: an I/O-bound
// sender can starve the queue while its CPU idles, which CPU tracking misses.
func (s *FargateService) newBacklogScaling(c constructs.Construct, full, cluster string, b *BacklogScaling) {
	type metrics = appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetrics
	type stat = appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricsMetricStat
	type metric = appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricsMetricStatMetric
	type dimension = appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricsMetricStatMetricDimensions
	dims := func(kv ...string) []*dimension {
		var out []*dimension
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &dimension{Name: jsii.String(kv[i]), Value: jsii.String(kv[i+1])})
		}
		sort.Slice(out, func(i, j int) bool { return *out[i].Name < *out[j].Name })
		return out
	}
	appautoscalingpolicy.NewAppautoscalingPolicy(c, jsii.String("scale-on-backlog"), &appautoscalingpolicy.AppautoscalingPolicyConfig{
		Name:              jsii.String(full + "-backlog"),
		PolicyType:        jsii.String("TargetTrackingScaling"),
		ServiceNamespace:  s.Scaling.ServiceNamespace(),
		ScalableDimension: s.Scaling.ScalableDimension(),
		ResourceId:        s.Scaling.ResourceId(),
		TargetTrackingScalingPolicyConfiguration: &appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration{
			TargetValue:      jsii.Number(float64(b.PerTask)),
			ScaleOutCooldown: jsii.Number(scaleOutCooldown),
			ScaleInCooldown:  jsii.Number(scaleInCooldown),
			CustomizedMetricSpecification: &appautoscalingpolicy.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecification{
				Metrics: []*metrics{
					{
						Id:         jsii.String("visible"),
						ReturnData: jsii.Bool(false),
						MetricStat: &stat{Stat: jsii.String("Sum"), Metric: &metric{
							Namespace: jsii.String("AWS/SQS"), MetricName: jsii.String("ApproximateNumberOfMessagesVisible"),
							Dimensions: dims("QueueName", b.QueueName),
						}},
					},
					{
						Id:         jsii.String("tasks"),
						ReturnData: jsii.Bool(false),
						MetricStat: &stat{Stat: jsii.String("Average"), Metric: &metric{
							Namespace: jsii.String(containerInsights), MetricName: jsii.String("RunningTaskCount"),
							Dimensions: dims("ClusterName", cluster, "ServiceName", s.Name),
						}},
					},
					{
						Id:         jsii.String("backlog_per_task"),
						Label:      jsii.String("visible messages per running task"),
						Expression: jsii.String("visible / tasks"),
						ReturnData: jsii.Bool(true),
					},
				},
			},
		},
	})
}
