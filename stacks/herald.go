package stacks

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/provider"
	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/services/contract"
)

// The services, their ports, health paths and settings are
// services/contract's; the stack names its secrets and parameters.
const (
	apiService      = string(contract.API)
	senderService   = string(contract.Sender)
	apiKeysSecret   = "api-key-hashes"
	smtpSecret      = "smtp-credentials"
	defaultFromName = "default-from"
	// apiKeysSecretIDName is the parameter holding the key-hash secret's
	// name (HERALD_API_KEYS_SECRET_ID).
	apiKeysSecretIDName = "api-keys-secret-id"
	sendRateName        = "send-rate"
	// idSecret holds the key that derives and signs notification ids
	// (HERALD_ID_SECRET_ID names it, through the parameter idSecretIDName);
	// idSecretLength random letters and digits, about 380 bits.
	idSecret       = "id-secret"
	idSecretIDName = "id-secret-id"
	idSecretLength = 64
	// tableSuffix names the state store "<stack>-state".
	tableSuffix = "-state"
	// secretRecoveryWindowDays is how long a deleted secret can be
	// restored: a week, the shortest, so a stack destroyed and deployed
	// again soon after does not find its secrets' names taken for long.
	secretRecoveryWindowDays = 7
)

// HeraldStackProps describe one stack: an environment, possibly with its mesh
// mode swapped for a variant (see SynthPlan).
type HeraldStackProps struct {
	Environment Environment
}

// HeraldStack is Herald's whole system for one environment.
type HeraldStack struct {
	cdktf.TerraformStack
	// Environment with its defaults applied.
	Environment   Environment
	LogKey        *Key
	Network       *Network
	Discovery     *Discovery
	Cluster       *Cluster
	Repositories  *Repositories
	Queue         *Queue
	Table         *Table
	Secrets       *Secrets
	SES           *SES      // nil without an SES identity
	Feedback      *Feedback // nil without feedback (Email.FeedbackEnabled)
	Mesh          *AppMesh
	AccessLogs    *AccessLogBucket // nil without access logs
	Ingress       *Ingress
	API           *FargateService
	Sender        *FargateService
	Observability *Observability
	Published     *Published
	CI            *CIRole // nil unless Environment.CI is set
	// Warnings for the person synthesizing (also cdktf annotations).
	Warnings []string
}

// NewHeraldStack builds the stack. The environment must be valid: call
// Environment.Validate first to get the problems as an error; here they
// panic.
func NewHeraldStack(scope constructs.Construct, id string, props *HeraldStackProps) *HeraldStack {
	if props == nil {
		props = &HeraldStackProps{}
	}
	env := props.Environment.WithDefaults()
	if err := env.Validate(); err != nil {
		panic(fmt.Errorf("herald: stack %s: %w", id, err))
	}
	if len(id) > 32 {
		panic(fmt.Errorf("herald: stack %s: the id prefixes the load balancer name and must be at most 32 characters", id))
	}
	stack := cdktf.NewTerraformStack(scope, &id)
	h := &HeraldStack{TerraformStack: stack, Environment: env}
	h.newProviderAndBackend(id, env)

	h.LogKey = NewKey(stack, "log-key", &KeyProps{
		Alias:              id + "-logs",
		Description:        "Encrypts the log groups of " + id,
		Account:            env.Account,
		Region:             env.Region,
		DeletionWindowDays: keyDeletionWindowDays,
		ServiceGrants: []Statement{{
			Sid:        "CloudWatchLogsEncryptsOwnGroups",
			Actions:    []string{"kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"},
			Principals: []Principal{{Type: "Service", Identifiers: []string{"logs." + env.Region + ".amazonaws.com"}}},
			Conditions: []Condition{{
				Test: "ArnLike", Variable: "kms:EncryptionContext:aws:logs:arn",
				Values: []string{fmt.Sprintf("arn:%s:logs:%s:%s:log-group:/herald/%s/*", partition(env.Region), env.Region, env.Account, id)},
			}},
		}},
	})

	h.Table = NewTable(stack, "table", &TableProps{
		Name:                id + tableSuffix,
		Account:             env.Account,
		Region:              env.Region,
		PointInTimeRecovery: env.Store.PointInTimeRecovery,
		DeletionProtection:  env.Store.DeletionProtection,
	})

	var extraEndpoints []string
	switch env.Mesh.Mode {
	case MeshServiceConnect:
		// the Service Connect proxy and the ECS agent talk to ECS
		extraEndpoints = []string{"ecs", "ecs-agent", "ecs-telemetry"}
	case MeshAppMesh:
		// Envoy fetches its configuration from App Mesh
		extraEndpoints = []string{"appmesh-envoy-management"}
	}
	h.Network = NewNetwork(stack, "network", &NetworkProps{
		Name:             id,
		Account:          env.Account,
		Region:           env.Region,
		NetworkConfig:    env.Network,
		ExtraEndpoints:   extraEndpoints,
		LogKeyARN:        h.LogKey.Key.Arn(),
		LogRetentionDays: env.Observability.LogRetentionDays,
		DynamoDBPolicy:   []Statement{h.Table.EndpointStatement()},
	})
	h.Discovery = NewDiscovery(stack, "discovery", &DiscoveryProps{Name: id + ".internal", VPCID: h.Network.VPCID})
	clusterProps := &ClusterProps{Name: id}
	if env.Mesh.Mode == MeshServiceConnect {
		clusterProps.ServiceConnectNamespaceARN = h.Discovery.Namespace.Arn()
	}
	h.Cluster = NewCluster(stack, "cluster", clusterProps)
	h.Repositories = NewRepositories(stack, "repositories", &RepositoriesProps{
		Prefix:      id,
		Account:     env.Account,
		Region:      env.Region,
		Images:      []string{apiService, senderService},
		KeepImages:  env.Repositories.KeepImages,
		ForceDelete: env.Repositories.ForceDelete,
	})
	h.Queue = NewQueue(stack, "queue", &QueueProps{
		Name:            id + "-notifications",
		Account:         env.Account,
		Region:          env.Region,
		MaxReceiveCount: env.Queue.MaxReceiveCount,
		Retention:       env.Queue.Retention,
		DLQRetention:    env.Queue.DLQRetention,
		MaxMessageBytes: env.Queue.MaxMessageBytes,
		SendTimeout:     env.Email.SendTimeout,
	})
	h.Secrets = NewSecrets(stack, "secrets", &SecretsProps{
		Prefix:             id,
		Account:            env.Account,
		Region:             env.Region,
		RecoveryWindowDays: secretRecoveryWindowDays,
		Secrets: []SecretSpec{
			{Name: apiKeysSecret, Description: "API key hashes of Herald's clients: " + contract.KeySetShape, InitialValue: contract.EmptyKeySet},
			{Name: smtpSecret, Description: `SMTP relay credentials: JSON {"username": "...", "password": "..."}`},
			{Name: idSecret, Description: "Key that derives and signs notification ids (the API's); generated", Generate: idSecretLength},
		},
		Parameters: []ParameterSpec{
			{Name: defaultFromName, Description: "Sender address used when a request has none", Value: env.Email.DefaultFrom},
			{Name: sendRateName, Description: "Sends per second; 0 uses the SES account's maximum", Value: strconv.FormatFloat(env.Email.SendRate, 'f', -1, 64)},
			{Name: apiKeysSecretIDName, Description: "Name of the secret holding the API key hashes", Value: id + "/" + apiKeysSecret},
			{Name: idSecretIDName, Description: "Name of the secret holding the notification id key", Value: id + "/" + idSecret},
		},
	})
	if env.Email.Identity != "" {
		configurationSet := ""
		if env.Email.ConfigurationSet {
			configurationSet = id
		}
		h.SES = NewSES(stack, "ses", &SESProps{
			Identity:         env.Email.Identity,
			Manage:           env.Email.ManageIdentity,
			ConfigurationSet: configurationSet,
			Account:          env.Account,
			Region:           env.Region,
		})
		if env.Email.FeedbackEnabled() {
			h.Feedback = NewFeedback(stack, "feedback", &FeedbackProps{
				Prefix:               id,
				Account:              env.Account,
				Region:               env.Region,
				ConfigurationSetName: h.SES.ConfigurationSetName,
				ConfigurationSet:     h.SES.ConfigurationSet,
				Visibility:           contract.FeedbackVisibility.Default,
			})
		}
	}
	if env.Mesh.Mode == MeshAppMesh {
		h.warn(AppMeshDeprecation)
		h.Mesh = NewAppMesh(stack, "mesh", &AppMeshProps{
			Name:          id,
			Account:       env.Account,
			Region:        env.Region,
			NamespaceID:   h.Discovery.Namespace.Id(),
			NamespaceName: h.Discovery.Name,
			EgressFilter:  env.Mesh.EgressFilter,
			Services: []MeshService{
				{Name: apiService, Port: contract.APIPort, HealthPath: contract.HealthPath(contract.API), Routed: true},
				{Name: senderService, Port: contract.SenderPort, HealthPath: contract.HealthPath(contract.Sender)},
			},
		})
	}
	if logs := env.Ingress.AccessLogs; logs.Enabled {
		h.AccessLogs = NewAccessLogBucket(stack, "access-logs", &AccessLogBucketProps{
			Name:          id + "-lb-logs-" + env.Account,
			Account:       env.Account,
			Region:        env.Region,
			RetentionDays: logs.RetentionDays,
			ForceDestroy:  logs.ForceDestroy,
		})
	}
	h.Ingress = NewIngress(stack, "ingress", &IngressProps{
		Name:               id,
		VPCID:              h.Network.VPCID,
		SubnetIDs:          h.Network.PublicSubnetIDs,
		TargetPort:         contract.APIPort,
		HealthPath:         contract.HealthPath(contract.API),
		CertificateARN:     env.Ingress.CertificateARN,
		Domain:             env.Ingress.Domain,
		HostedZoneID:       env.Ingress.HostedZoneID,
		Internal:           env.Ingress.Internal,
		AllowedCIDRs:       env.Ingress.AllowedCIDRs,
		DeletionProtection: env.Ingress.DeletionProtection,
		AccessLogs:         h.AccessLogs,
	})
	vars := h.variables(env)
	h.API = NewFargateService(stack, "api", h.apiProps(id, env, vars[contract.API]))
	h.Sender = NewFargateService(stack, "sender", h.senderProps(id, env, vars[contract.Sender]))
	h.Ingress.AllowTargets(apiService, h.API.SecurityGroup.Id())
	h.Network.AllowEndpointAccess(apiService, h.API.SecurityGroup.Id(), "Tasks of "+apiService+" reach AWS APIs")
	h.Network.AllowEndpointAccess(senderService, h.Sender.SecurityGroup.Id(), "Tasks of "+senderService+" reach AWS APIs")

	obs := &ObservabilityProps{
		Prefix:          id,
		EnvironmentName: env.Name,
		Account:         env.Account,
		Region:          env.Region,
		ClusterName:     h.Cluster.Name,
		Services: []MonitoredService{
			{Name: apiService, MinTasks: env.API.MinTasks},
			{Name: senderService, MinTasks: env.Sender.MinTasks},
		},
		Queue:                 h.Queue.Name,
		DeadLetter:            h.Queue.DeadLetterName,
		Table:                 h.Table.Name,
		LoadBalancerARNSuffix: h.Ingress.LoadBalancer.ArnSuffix(),
		TargetGroupARNSuffix:  h.Ingress.TargetGroup.ArnSuffix(),
		AlarmEmail:            env.Observability.AlarmEmail,
		OldestMessageAge:      env.Observability.OldestMessageAge,
		API5xxPercent:         env.Observability.API5xxPercent,
		SenderFailurePercent:  env.Observability.SenderFailurePercent,
	}
	if h.Feedback != nil {
		obs.FeedbackQueue, obs.FeedbackDeadLetter = h.Feedback.Queue.Name, h.Feedback.Queue.DeadLetterName
	}
	h.Observability = NewObservability(stack, "observability", obs)
	h.Published = NewPublished(stack, "published", &PublishedProps{Path: ParameterPath(env.Name), Parameters: h.published()})
	if env.CI.Enabled() {
		h.CI = NewCIRole(stack, "ci", h.ciProps(id, env))
	}
	h.newOutputs(env)
	return h
}

func (h *HeraldStack) warn(message string) {
	h.Warnings = append(h.Warnings, message)
	cdktf.Annotations_Of(h.TerraformStack).AddWarning(jsii.String(message))
}

func (h *HeraldStack) newProviderAndBackend(id string, env Environment) {
	tags := map[string]*string{}
	for _, k := range sortedKeys(env.Tags) {
		tags[k] = jsii.String(env.Tags[k])
	}
	provider.NewAwsProvider(h.TerraformStack, jsii.String("aws"), &provider.AwsProviderConfig{
		Region: jsii.String(env.Region),
		// refuse credentials of any other account
		AllowedAccountIds: jsii.Strings(env.Account),
		DefaultTags:       []*provider.AwsProviderDefaultTags{{Tags: &tags}},
	})
	s := env.State
	if s.Bucket == "" {
		return // cdktf's default: local state terraform.<stack>.tfstate
	}
	backend := cdktf.NewS3Backend(h.TerraformStack, &cdktf.S3BackendConfig{
		Bucket:  jsii.String(s.Bucket),
		Key:     jsii.String(orString(s.Key, StateKey(id))),
		Region:  jsii.String(s.Region),
		Encrypt: jsii.Bool(true),
	})
	if s.LockTable != "" {
		backend.AddOverride(jsii.String("dynamodb_table"), jsii.String(s.LockTable))
	}
	if s.UseLockfile {
		// S3-native locking (Terraform >= 1.10); the pinned cdktf predates
		// the field, so it is set directly.
		backend.AddOverride(jsii.String("use_lockfile"), jsii.Bool(true))
	}
}

// image resolves a service's image: the configured one, or the stack's own
// repository at the default tag (with a warning).
func (h *HeraldStack) image(service string, configured string, repository *Repository, tag string) (string, string) {
	field, variable := "API.Image", APIImageVariable
	if service == senderService {
		field, variable = "Sender.Image", SenderImageVariable
	}
	if configured == "" {
		configured = repository.URL + ":" + tag
		h.warn(fmt.Sprintf("%s is not set: using %s from the stack's own ECR repository; push that tag before deploying, or set %s to an image digest",
			field, configured, variable))
	}
	ref, err := ParseImage(configured)
	if err != nil {
		panic(fmt.Errorf("herald: %s: %w", field, err))
	}
	arn, _ := ref.ECRRepositoryARN()
	return ref.String(), arn
}

// variables are both services' variables, checked as the services will
// read them (Validate has checked them already, with placeholders for the
// resources).
func (h *HeraldStack) variables(env Environment) map[contract.Service]taskVariables {
	src := variableSources{
		queueURL:              h.Queue.URL,
		dlqURL:                h.Queue.DeadLetterURL,
		defaultFromParameter:  h.Secrets.ParameterARNs[defaultFromName],
		keysSecretIDParameter: h.Secrets.ParameterARNs[apiKeysSecretIDName],
		sendRateParameter:     h.Secrets.ParameterARNs[sendRateName],
		keysSecretName:        h.Secrets.SecretNames[apiKeysSecret],
		smtpSecretARN:         *h.Secrets.Secrets[smtpSecret].Arn(),
		tableName:             h.Table.Name,
		idSecretIDParameter:   h.Secrets.ParameterARNs[idSecretIDName],
		idSecretName:          h.Secrets.SecretNames[idSecret],
	}
	if f := h.Feedback; f != nil {
		src.feedbackQueueURL, src.feedbackDLQURL = f.Queue.URL, f.Queue.DeadLetterURL
		src.feedbackTopicARN = f.TopicARN
		src.feedbackVisibility = f.Queue.VisibilityTimeout
	}
	if h.SES != nil && env.Email.Transport == "ses" {
		src.configurationSet = h.SES.ConfigurationSetName
	}
	vars, err := serviceVariables(env, src)
	if err != nil {
		panic(fmt.Errorf("herald: variables: %w", err))
	}
	for _, svc := range contract.Services {
		if err := vars[svc].check(svc); err != nil {
			panic(fmt.Errorf("herald: %s would refuse its variables: %w", svc, err))
		}
	}
	return vars
}

func (h *HeraldStack) egress(service string, public []EgressRule) []EgressRule {
	n := h.Network
	if n.EndpointSecurityGroup == nil {
		// No endpoints here: AWS APIs are reached through NAT.
		return append(public, EgressRule{
			ID: "nat", Description: service + " reaches AWS APIs through NAT", Port: 443, CIDRs: []string{"0.0.0.0/0"},
		})
	}
	return append([]EgressRule{
		{ID: "endpoints", Description: service + " reaches AWS APIs through the VPC endpoints", Port: 443, SecurityGroupID: n.EndpointSecurityGroup.Id()},
		{ID: "s3-layers", Description: service + " pulls image layers through the S3 gateway endpoint", Port: 443, PrefixListID: n.S3PrefixListID},
		{ID: "dynamodb", Description: service + " reaches the state store through the DynamoDB gateway endpoint", Port: 443, PrefixListID: n.DynamoDBPrefixListID},
	}, public...)
}

// viaService limits a KMS grant to use through one AWS service.
func viaService(service, region string) []Condition {
	return []Condition{{Test: "StringEquals", Variable: "kms:ViaService", Values: []string{service + "." + region + ".amazonaws.com"}}}
}

// serviceBase is what both services' props share: names, image, size,
// network, scaling, logs and the mesh.
func (h *HeraldStack) serviceBase(id string, env Environment, name string, svc ServiceConfig, vars taskVariables, portName string, public []EgressRule) *FargateServiceProps {
	image, repoARN := h.image(name, svc.Image, h.Repositories.ByImage[name], env.Repositories.DefaultTag)
	port := contract.Port(contract.Service(name))
	return &FargateServiceProps{
		Name: name, Prefix: id, Account: env.Account, Region: env.Region,
		ClusterARN: h.Cluster.Cluster.Arn(), ClusterName: h.Cluster.Name,
		Image: image, ImageRepositoryARN: repoARN,
		HealthCheckCommand: []string{"CMD", "/" + name, "healthcheck"},
		CPU:                svc.CPU, Memory: svc.Memory,
		Port: port, PortName: portName,
		Variables: vars.plain, Secrets: vars.secrets,
		VPCID: h.Network.VPCID, SubnetIDs: h.Network.PrivateSubnetIDs,
		EgressRules: h.egress(name, public),
		MinTasks:    svc.MinTasks, MaxTasks: svc.MaxTasks, CPUTarget: svc.CPUTarget,
		LogKeyARN: h.LogKey.Key.Arn(), LogRetentionDays: env.Observability.LogRetentionDays,
	}
}

func (h *HeraldStack) apiProps(id string, env Environment, vars taskVariables) *FargateServiceProps {
	props := h.serviceBase(id, env, apiService, env.API, vars, "http", nil)
	props.ExecutionGrants = []Statement{h.Secrets.GrantReadParameters("OwnParameters", defaultFromName, apiKeysSecretIDName, idSecretIDName)}
	// Queue.GrantSend's GetQueueAttributes answers /readyz.
	props.TaskGrants = append(h.Queue.GrantSend(), h.Secrets.GrantRead("ApiKeyHashes", apiKeysSecret)...)
	props.TaskGrants = append(props.TaskGrants, h.Secrets.GrantRead("IdSecret", idSecret)...)
	props.TaskGrants = append(props.TaskGrants, h.Table.GrantAPI()...)
	props.LoadBalancer = &LoadBalancerTarget{TargetGroupARN: h.Ingress.TargetGroup.Arn(), SecurityGroupID: h.Ingress.SecurityGroup.Id()}
	props.DependsOn = h.Ingress.Listeners
	h.meshSettings(props, env, nil)
	return props
}

func (h *HeraldStack) senderProps(id string, env Environment, vars taskVariables) *FargateServiceProps {
	var public []EgressRule
	var extraIgnored []int
	grants := append(h.Queue.GrantConsume(), h.Table.GrantSender()...)
	execution := []Statement{h.Secrets.GrantReadParameters("OwnParameters", sendRateName)}
	switch env.Email.Transport {
	case "ses":
		// Only from what the API accepts: its allow-list and default sender.
		from, err := env.Email.allowedFrom()
		if err == nil {
			from, err = from.With(env.Email.DefaultFrom)
		}
		if err != nil {
			panic(fmt.Errorf("herald: Email.AllowedFrom: %w", err))
		}
		grants = append(grants, h.SES.GrantSend(from, env.Email.SandboxRecipients)...)
		if h.Feedback != nil {
			grants = append(grants, h.Feedback.GrantConsume()...)
		}
		if env.Email.SendRate == 0 {
			grants = append(grants, h.SES.GrantReadQuota())
		}
		public = append(public, EgressRule{
			ID: "ses", Description: senderService + " calls the SES API, which has no VPC endpoint", Port: 443, CIDRs: []string{"0.0.0.0/0"},
		})
	case "smtp":
		host, portText, _ := strings.Cut(env.Email.SMTPAddr, ":")
		port, _ := strconv.Atoi(portText)
		execution = append(execution, h.Secrets.GrantRead("OwnSecrets", smtpSecret)...)
		public = append(public, EgressRule{
			ID: "smtp", Description: senderService + " reaches the SMTP relay " + host, Port: port, CIDRs: []string{"0.0.0.0/0"},
		})
		extraIgnored = append(extraIgnored, port)
	}
	props := h.serviceBase(id, env, senderService, env.Sender, vars, "health", public)
	props.ExecutionGrants = execution
	props.TaskGrants = grants
	props.Backlog = &BacklogScaling{QueueName: h.Queue.Name, PerTask: env.Sender.BacklogPerTask}
	h.meshSettings(props, env, extraIgnored)
	return props
}

// meshSettings puts a service into the mesh. In Service Connect only the
// API joins, as a server other services in the namespace may call; the
// sender calls no service and stays out (a Service Connect proxy in its
// tasks would only cost CPU and memory). In App Mesh both are nodes.
func (h *HeraldStack) meshSettings(props *FargateServiceProps, env Environment, extraIgnored []int) {
	switch env.Mesh.Mode {
	case MeshServiceConnect:
		if props.Name == apiService {
			props.ServiceConnect = &ServiceConnectSettings{NamespaceARN: h.Discovery.Namespace.Arn(), Publish: true, DiscoveryName: props.Name}
		}
	case MeshAppMesh:
		node := h.Mesh.Nodes[props.Name]
		props.AppMesh = &AppMeshSettings{
			VirtualNodeARN:    node.VirtualNode.Arn(),
			VirtualNodeName:   node.VirtualNodeARN,
			RegistryARN:       node.Registry.Arn(),
			EnvoyImage:        env.Mesh.EnvoyImage,
			ExtraIgnoredPorts: extraIgnored,
		}
	}
}

// Output names are a contract with service teams (stacks/README.md lists
// them): never rename one.
func (h *HeraldStack) newOutputs(env Environment) {
	out := func(name, description string, value *string) {
		cdktf.NewTerraformOutput(h.TerraformStack, jsii.String(name), &cdktf.TerraformOutputConfig{
			Value:       value,
			Description: jsii.String(description),
		})
	}
	out("api_url", "Base URL of the notification API", h.Ingress.URL)
	out("queue_url", "URL of the notification queue", h.Queue.Queue.Url())
	out("queue_arn", "ARN of the notification queue", h.Queue.Queue.Arn())
	out("dlq_url", "URL of the dead-letter queue", h.Queue.DeadLetter.Url())
	out("dlq_arn", "ARN of the dead-letter queue", h.Queue.DeadLetter.Arn())
	out("cluster_name", "ECS cluster of both services", jsii.String(h.Cluster.Name))
	out("api_service_name", "ECS service of the notification API", jsii.String(h.API.Name))
	out("sender_service_name", "ECS service of the email sender", jsii.String(h.Sender.Name))
	out("api_log_group_name", "Log group of the notification API", jsii.String(h.API.LogGroup.Name))
	out("sender_log_group_name", "Log group of the email sender", jsii.String(h.Sender.LogGroup.Name))
	out("dashboard_name", "CloudWatch dashboard of the environment", jsii.String(h.Observability.DashboardName))
	out("alarm_topic_arn", "SNS topic the alarms notify", h.Observability.Topic.Arn())
	out("namespace_name", "Cloud Map namespace of the services", jsii.String(h.Discovery.Name))
	out("mesh_mode", "serviceconnect or appmesh", jsii.String(string(env.Mesh.Mode)))
	out("api_repository_url", "ECR repository of the notification-api image", jsii.String(h.Repositories.ByImage[apiService].URL))
	out("sender_repository_url", "ECR repository of the email-sender image", jsii.String(h.Repositories.ByImage[senderService].URL))
	out("api_keys_secret_arn", "Secret holding the API key hashes (set its value after deploy)", h.Secrets.Secrets[apiKeysSecret].Arn())
	out("smtp_secret_arn", "Secret holding the SMTP credentials (smtp transport)", h.Secrets.Secrets[smtpSecret].Arn())
	out("dashboard_url", "CloudWatch console address of the dashboard", jsii.String(dashboardURL(env.Region, h.Observability.DashboardName)))
	out("table_name", "DynamoDB table of idempotency keys and notification status", jsii.String(h.Table.Name))
	out("table_arn", "ARN of the state store's table", h.Table.Table.Arn())
	out("parameter_path", "SSM path of the parameters published for service teams", jsii.String(h.Published.Path))
	if f := h.Feedback; f != nil {
		out("feedback_queue_url", "Queue SES's events reach the sender on", f.Queue.Queue.Url())
		out("feedback_dlq_url", "Dead-letter queue of SES events that could not be applied", f.Queue.DeadLetter.Url())
		out("feedback_topic_arn", "SNS topic the configuration set publishes SES's events to", f.Topic.Arn())
	}
	if h.SES != nil && h.SES.ConfigurationSetName != "" {
		out("ses_configuration_set", "SES configuration set the sender uses", jsii.String(h.SES.ConfigurationSetName))
	}
	if h.CI != nil {
		out("ci_role_arn", "Role of the deployed-stack workflow (the repository variable "+contract.CIRoleARN+")", h.CI.Role.Arn())
	}
	if h.Mesh != nil {
		out("mesh_name", "App Mesh mesh of the services (cannot be deployed since AWS ended App Mesh on 2026-09-30)", h.Mesh.Mesh.Name())
		out("mesh_notice", "Why this stack cannot be deployed", jsii.String(AppMeshDeprecation))
	}
}

// published are the values service teams read from SSM (issue 15): where
// to call, what to watch, which secret holds their key's hash. Names are a
// contract like the outputs' (the README's snippets read them): never
// rename one.
func (h *HeraldStack) published() []PublishedParameter {
	ps := []PublishedParameter{
		{"api-url", "Base URL of the notification API", h.Ingress.URL},
		{"queue-url", "URL of the notification queue", h.Queue.Queue.Url()},
		{"queue-arn", "ARN of the notification queue", h.Queue.Queue.Arn()},
		{"dlq-url", "URL of the dead-letter queue", h.Queue.DeadLetter.Url()},
		{"dlq-arn", "ARN of the dead-letter queue", h.Queue.DeadLetter.Arn()},
		{"api-keys-secret-arn", "ARN of the secret holding the API key hashes (not a key)", h.Secrets.Secrets[apiKeysSecret].Arn()},
		{"api-log-group", "Log group of the notification API", jsii.String(h.API.LogGroup.Name)},
		{"sender-log-group", "Log group of the email sender", jsii.String(h.Sender.LogGroup.Name)},
		{"dashboard-url", "CloudWatch dashboard of the environment", jsii.String(dashboardURL(h.Environment.Region, h.Observability.DashboardName))},
		{"table-name", "DynamoDB table of idempotency keys and notification status", jsii.String(h.Table.Name)},
		{"table-arn", "ARN of the state store's table", h.Table.Table.Arn()},
	}
	if f := h.Feedback; f != nil {
		ps = append(ps,
			PublishedParameter{"feedback-queue-url", "Queue SES's events reach the sender on", f.Queue.Queue.Url()},
			PublishedParameter{"feedback-dlq-url", "Dead-letter queue of SES events that could not be applied", f.Queue.DeadLetter.Url()},
		)
	}
	return ps
}

// StackSpec is one stack main.go synthesizes.
type StackSpec struct {
	ID          string
	Environment Environment
	// Variant is true for a mesh-mode variant: the environment with the
	// other mesh mode, synthesized so both modes are always checked.
	Variant bool
}

// SynthPlan lists the stacks to synthesize: each environment in its
// configured mesh mode as "herald-<name>", and with variants also in the
// other mode as "herald-<name>-<mode>". A variant with remote state gets its
// own state key.
func SynthPlan(envs []Environment, variants bool) []StackSpec {
	var plan []StackSpec
	for _, e := range envs {
		plan = append(plan, StackSpec{ID: StackID(e.Name, ""), Environment: e})
		if !variants {
			continue
		}
		other := MeshAppMesh
		if e.WithDefaults().Mesh.Mode == MeshAppMesh {
			other = MeshServiceConnect
		}
		v := e
		v.Mesh = MeshConfig{Mode: other}
		id := StackID(e.Name, other)
		if v.State.Key != "" {
			v.State.Key = strings.TrimSuffix(v.State.Key, ".tfstate") + "-" + string(other) + ".tfstate"
		}
		plan = append(plan, StackSpec{ID: id, Environment: v, Variant: true})
	}
	return plan
}
