package stacks

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/iamopenidconnectprovider"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/iamrole"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/iamrolepolicy"
)

// CICopyPrefix begins the name of every copy CI deploys: tests/deployed
// names its copies CICopyPrefix plus a unique id, so their stacks are
// "herald-<CICopyPrefix>*". The CI role may create and destroy only those,
// and the cleanup of copies (tests/deployed/cleanup) destroys only those.
const CICopyPrefix = "e2e"

// GitHub's OIDC issuer and the audience aws-actions/configure-aws-credentials
// asks tokens for.
const (
	githubOIDCHost     = "token.actions.githubusercontent.com"
	githubOIDCAudience = "sts.amazonaws.com"
)

// CIConfig turns on the role GitHub Actions assumes through OIDC to run the
// deployed-stack suite (.github/workflows/deployed.yml): push the images to
// this stack's repositories, deploy, check and destroy herald-e2e* copies.
// Off (empty Repository) by default. tests/README.md says how to set it up.
type CIConfig struct {
	// Repository is the GitHub repository, "owner/name", whose workflow may
	// assume the role.
	Repository string
	// Branch the workflow runs on; default "main". The schedule runs on the
	// default branch. Not with GitHubEnvironment.
	Branch string
	// GitHubEnvironment is a GitHub environment the job declares (the
	// workflow reads it from HERALD_CI_ENVIRONMENT); the token's subject
	// then names it instead of the branch, and the environment's
	// protection rules (reviewers, branches) apply. Not with Branch.
	GitHubEnvironment string
	// OIDCProviderARN is the account's existing IAM OIDC provider for
	// token.actions.githubusercontent.com (an account has at most one per
	// issuer); empty creates it in this stack.
	OIDCProviderARN string
	// StateBucket is the S3 bucket the copies keep their state in
	// (HERALD_E2E_STATE_BUCKET, default encryption SSE-S3): the role may
	// read and write the copies' keys only. Empty: local state.
	StateBucket string
}

// Enabled is true when the stack makes the CI role.
func (c CIConfig) Enabled() bool { return c.Repository != "" }

func (c CIConfig) withDefaults() CIConfig {
	if c.Enabled() && c.GitHubEnvironment == "" && c.Branch == "" {
		c.Branch = "main"
	}
	return c
}

// Subject is the token subject ("sub") the role trusts, exactly.
func (c CIConfig) Subject() string {
	if c.GitHubEnvironment != "" {
		return "repo:" + c.Repository + ":environment:" + c.GitHubEnvironment
	}
	return "repo:" + c.Repository + ":ref:refs/heads/" + c.Branch
}

var (
	githubRepository = regexp.MustCompile(`^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$`)
	// a subject names one branch or environment: no wildcard, no separator
	githubRefName   = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,255}$`)
	oidcProviderARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/` + regexp.QuoteMeta(githubOIDCHost) + `$`)
)

func (e Environment) validateCI(p *problems) {
	c := e.CI
	if !c.Enabled() {
		if c != (CIConfig{}) {
			p.add("CI.Repository", "required when any other CI field is set")
		}
		return
	}
	if !githubRepository.MatchString(c.Repository) {
		p.add("CI.Repository", "%q is not a GitHub repository owner/name", c.Repository)
	}
	if c.Branch != "" && c.GitHubEnvironment != "" {
		p.add("CI.Branch", "set Branch or GitHubEnvironment, not both: the role trusts one token subject")
	}
	for _, f := range []struct{ field, value string }{{"CI.Branch", c.Branch}, {"CI.GitHubEnvironment", c.GitHubEnvironment}} {
		if f.value != "" && (!githubRefName.MatchString(f.value) || strings.Contains(f.value, "..") || strings.Contains(f.value, ":")) {
			p.add(f.field, "%q is not a branch or environment name (no wildcards: the role trusts exactly one)", f.value)
		}
	}
	if c.OIDCProviderARN != "" && !oidcProviderARN.MatchString(c.OIDCProviderARN) {
		p.add("CI.OIDCProviderARN", "%q is not the ARN of an IAM OIDC provider for %s", c.OIDCProviderARN, githubOIDCHost)
	}
	if c.OIDCProviderARN != "" && !strings.Contains(c.OIDCProviderARN, "::"+e.Account+":") {
		p.add("CI.OIDCProviderARN", "%q is in another account than %s", c.OIDCProviderARN, e.Account)
	}
	if c.StateBucket != "" && !bucketPattern.MatchString(c.StateBucket) {
		p.add("CI.StateBucket", "%q is not an S3 bucket name", c.StateBucket)
	}
	if strings.HasPrefix(e.Name, CICopyPrefix) {
		p.add("CI", "the role deploys copies named %s*; environment %q would be one of them", CICopyPrefix, e.Name)
	}
}

// CIRoleProps describe the CI role of one stack.
type CIRoleProps struct {
	// Stack is the stack's id: the role is "<Stack>-ci".
	Stack           string
	Account, Region string
	CI              CIConfig // with defaults
	// PushRepositories are the ARNs of the repositories `make push` pushes
	// to (the stack's own).
	PushRepositories []string
	// SESIdentities are the identities the suite checks before deploying
	// (the environment's identity and its default sender).
	SESIdentities []string
}

// CIRole is the OIDC provider (unless an existing one is used) and the
// role GitHub Actions assumes.
type CIRole struct {
	constructs.Construct
	// Provider is nil when CI.OIDCProviderARN names an existing one.
	Provider iamopenidconnectprovider.IamOpenidConnectProvider
	Role     iamrole.IamRole
	Policy   iamrolepolicy.IamRolePolicy
}

// ciMaxSession is how long the workflow's credentials last (its
// role-duration-seconds): the suite's 100 minute timeout and the setup.
const ciMaxSession = 3 * 60 * 60

// NewCIRole creates the role with its trust and permissions.
func NewCIRole(scope constructs.Construct, id string, props *CIRoleProps) *CIRole {
	if props == nil {
		props = &CIRoleProps{}
	}
	p := *props
	if !p.CI.Enabled() || !accountPattern.MatchString(p.Account) || p.Stack == "" || len(p.PushRepositories) == 0 {
		panic(fmt.Errorf("herald: CI role %s: needs CI.Repository, Account, Stack and PushRepositories", id))
	}
	c := constructs.NewConstruct(scope, &id)
	r := &CIRole{Construct: c}
	providerARN := p.CI.OIDCProviderARN
	if providerARN == "" {
		r.Provider = iamopenidconnectprovider.NewIamOpenidConnectProvider(c, jsii.String("github"), &iamopenidconnectprovider.IamOpenidConnectProviderConfig{
			Url:          jsii.String("https://" + githubOIDCHost),
			ClientIdList: jsii.Strings(githubOIDCAudience),
			// No thumbprints: IAM trusts GitHub's certificate through its
			// own CA library (the field is optional since provider 5.81).
		})
		providerARN = *r.Provider.Arn()
	}
	trust := newPolicyDocument(c, "trust", []Statement{ciTrust(providerARN, p.CI.Subject())}, trustPolicy)
	r.Role = iamrole.NewIamRole(c, jsii.String("role"), &iamrole.IamRoleConfig{
		Name:               jsii.String(p.Stack + "-ci"),
		Description:        jsii.String("GitHub Actions of " + p.CI.Repository + " (" + p.CI.Subject() + "): push images, deploy and destroy " + StackID(CICopyPrefix, "") + "* copies"),
		AssumeRolePolicy:   trust.Json(),
		MaxSessionDuration: jsii.Number(ciMaxSession),
	})
	doc := newPolicyDocument(c, "policy-document", CIStatements(&p), ciPolicy)
	r.Policy = iamrolepolicy.NewIamRolePolicy(c, jsii.String("policy"), &iamrolepolicy.IamRolePolicyConfig{
		Name:   jsii.String(p.Stack + "-ci"),
		Role:   r.Role.Id(),
		Policy: doc.Json(),
	})
	return r
}

// ciTrust lets exactly one repository's branch or environment assume the
// role with a token issued for STS.
func ciTrust(providerARN, subject string) Statement {
	return Statement{
		Sid:        "GitHubActionsOfOneRepositoryBranchOrEnvironment",
		Actions:    []string{"sts:AssumeRoleWithWebIdentity"},
		Principals: []Principal{{Type: "Federated", Identifiers: []string{providerARN}}},
		Conditions: []Condition{
			{Test: "StringEquals", Variable: githubOIDCHost + ":aud", Values: []string{githubOIDCAudience}},
			{Test: "StringEquals", Variable: githubOIDCHost + ":sub", Values: []string{subject}},
		},
	}
}

// ciUnscoped are the actions the CI role has on Resource "*", by why no
// narrower resource can be named. Each statement granting them is limited
// to the stack's region (aws:RequestedRegion). tests/README.md repeats the
// reasons.
var ciUnscoped = map[string]string{
	// EC2 names resources by generated ids, so no ARN pattern scopes them;
	// tag conditions do not cover every call Terraform makes for a VPC (the
	// default security group AWS creates untagged with the VPC, security
	// group rules, route table associations). Real Herald stacks are
	// protected by the ProtectRealStacks deny instead.
	"ec2": "resources are named by generated ids",
	// Cloud Map namespaces and the private hosted zone behind one are
	// named by generated ids.
	"servicediscovery": "namespaces are named by generated ids",
	"route53":          "the namespace's private hosted zone is named by a generated id",
	// Scalable targets and policies have no ARN until created, and
	// RegisterScalableTarget takes none.
	"application-autoscaling": "scalable targets have no ARN a policy can name",
	// Task definitions are registered and deregistered without resource
	// types.
	"ecs": "RegisterTaskDefinition, DeregisterTaskDefinition and DescribeTaskDefinition have no resource types",
	// Reads only: Describe/List calls without resource types.
	"elasticloadbalancing": "Describe calls have no resource types",
	"logs":                 "DescribeLogGroups lists every group",
	"cloudwatch":           "metric reads have no resource types",
	"kms":                  "CreateKey and ListAliases have no resource; keys are scoped by tag",
	"ecr":                  "the registry login token is account-wide",
	"tag":                  "the tagging API lists the account's resources",
	"iam":                  "service-linked roles are AWS's own",
	"secretsmanager":       "GetRandomPassword (the generated id secret) has no resource type",
}

// ciNeverUnscoped actions must name their resource in the CI policy.
func ciUnscopedAction(action string) bool {
	service, verb, _ := strings.Cut(action, ":")
	if _, ok := ciUnscoped[service]; !ok || verb == "*" {
		return false
	}
	switch service {
	case "ec2", "servicediscovery", "application-autoscaling":
		return true
	}
	return slices.Contains([]string{
		"ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition",
		"elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeListeners",
		"elasticloadbalancing:DescribeListenerAttributes", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
		"elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetHealth",
		"logs:DescribeLogGroups",
		"cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
		"kms:CreateKey", "kms:ListAliases",
		"ecr:GetAuthorizationToken",
		"tag:GetResources",
		"secretsmanager:GetRandomPassword",
		"route53:CreateHostedZone", "route53:DeleteHostedZone", "route53:GetHostedZone", "route53:ListHostedZonesByName", "route53:GetChange", "route53:AssociateVPCWithHostedZone",
	}, action)
}

// checkCIStatements holds the CI policy to its rules: an action wildcard
// ("sqs:*") only on resources named with the copies' prefix; Resource "*"
// only for ciUnscopedAction actions, with the region condition; a
// resource wildcard only in a name of copies, under a copy-tag condition,
// or for service-linked roles.
func checkCIStatements(statements []Statement) error {
	var errs []error
	copies := StackID(CICopyPrefix, "")
	for i, s := range statements {
		name := s.Sid
		if name == "" {
			name = fmt.Sprintf("statement %d", i)
		}
		if len(s.Actions) == 0 || len(s.Resources) == 0 || len(s.Principals) > 0 {
			errs = append(errs, fmt.Errorf("%s: actions and resources, no principals", name))
			continue
		}
		star := slices.Contains(s.Resources, "*")
		if star && len(s.Resources) > 1 {
			errs = append(errs, fmt.Errorf("%s: \"*\" with other resources", name))
		}
		for _, a := range s.Actions {
			service, verb, ok := strings.Cut(a, ":")
			switch {
			case !ok || service == "" || verb == "" || a == "*":
				errs = append(errs, fmt.Errorf("%s: action %q is not service:Action", name, a))
			case s.Deny:
				// a deny may be as wide as it likes
			case strings.Contains(verb, "*") && verb != "*":
				errs = append(errs, fmt.Errorf("%s: partial wildcard %q: name the actions", name, a))
			case verb == "*" && star:
				errs = append(errs, fmt.Errorf("%s: %s only on resources named for copies", name, a))
			case star && !ciUnscopedAction(a):
				errs = append(errs, fmt.Errorf("%s: %s on \"*\": name its resources", name, a))
			}
		}
		if star && !s.Deny && !slices.ContainsFunc(s.Conditions, func(c Condition) bool { return c.Variable == "aws:RequestedRegion" }) {
			errs = append(errs, fmt.Errorf("%s: \"*\" without the aws:RequestedRegion condition", name))
		}
		for _, r := range s.Resources {
			if r == "*" || !strings.Contains(r, "*") {
				continue
			}
			taggedCopies := slices.ContainsFunc(s.Conditions, func(c Condition) bool {
				return c.Variable == "aws:ResourceTag/"+CopyTag || c.Variable == "aws:RequestTag/"+CopyTag
			})
			published := strings.HasSuffix(r, ":parameter"+ParameterPath(CICopyPrefix)+"*") // the copies' /herald/e2e... parameters
			if !strings.Contains(r, copies+"*") && !published && !taggedCopies && !strings.HasSuffix(r, ":role/aws-service-role/*") {
				errs = append(errs, fmt.Errorf("%s: wildcard resource %q names no copies (%s*) and has no %s condition", name, r, copies, CopyTag))
			}
		}
	}
	if len(errs) == 0 && !slices.ContainsFunc(statements, func(s Statement) bool { return s.Deny }) {
		errs = append(errs, errors.New("no deny protecting the real stacks"))
	}
	return errors.Join(errs...)
}

// CIStatements are the CI role's permissions: what `make push`, the
// deployed-stack suite (Terraform apply and destroy of a copy, and its
// checks) and the cleanup need. Everything a copy creates is named
// "herald-e2e*" where AWS lets a policy name it; the rest is listed in
// ciUnscoped.
func CIStatements(p *CIRoleProps) []Statement {
	part, a, r := partition(p.Region), p.Account, p.Region
	copies := StackID(CICopyPrefix, "") + "*"
	arn := func(service, region, resource string) string {
		return fmt.Sprintf("arn:%s:%s:%s:%s:%s", part, service, region, a, resource)
	}
	inRegion := []Condition{{Test: "StringEquals", Variable: "aws:RequestedRegion", Values: []string{r}}}
	s := []Statement{
		{Sid: "PushImages", Actions: []string{"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
			"ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"}, Resources: p.PushRepositories},
		{Sid: "RegistryLogin", Actions: []string{"ecr:GetAuthorizationToken"}, Resources: []string{"*"}, Conditions: inRegion},

		// Copies' own resources, named after the stack.
		{Sid: "CopiesQueues", Actions: []string{"sqs:*"}, Resources: []string{arn("sqs", r, copies)}},
		{Sid: "CopiesRepositories", Actions: []string{"ecr:*"}, Resources: []string{arn("ecr", r, "repository/"+copies)}},
		{Sid: "CopiesSecrets", Actions: []string{"secretsmanager:*"}, Resources: []string{arn("secretsmanager", r, "secret:"+copies)}},
		// The stack's own parameters, and those it publishes for service
		// teams under /herald/<environment> (a copy's environment is
		// named e2e...).
		{Sid: "CopiesParameters", Actions: []string{"ssm:*"}, Resources: []string{arn("ssm", r, "parameter/"+copies), arn("ssm", r, "parameter"+ParameterPath(CICopyPrefix)+"*")}},
		{Sid: "CopiesTables", Actions: []string{"dynamodb:*"}, Resources: []string{arn("dynamodb", r, "table/"+copies)}},
		{Sid: "CopiesLogGroups", Actions: []string{"logs:*"}, Resources: []string{arn("logs", r, "log-group:/herald/"+copies)}},
		{Sid: "CopiesTopics", Actions: []string{"sns:*"}, Resources: []string{arn("sns", r, copies)}},
		{Sid: "CopiesAlarmsAndDashboards", Actions: []string{"cloudwatch:*"}, Resources: []string{arn("cloudwatch", r, "alarm:"+copies), arn("cloudwatch", "", "dashboard/"+copies)}},
		{Sid: "CopiesClusterServicesTasks", Actions: []string{"ecs:*"}, Resources: []string{
			arn("ecs", r, "cluster/"+copies), arn("ecs", r, "service/"+copies), arn("ecs", r, "task/"+copies), arn("ecs", r, "task-definition/"+copies)}},
		{Sid: "CopiesLoadBalancer", Actions: []string{"elasticloadbalancing:*"}, Resources: []string{
			arn("elasticloadbalancing", r, "loadbalancer/app/"+copies), arn("elasticloadbalancing", r, "listener/app/"+copies), arn("elasticloadbalancing", r, "listener-rule/app/"+copies)}},
		{Sid: "CopiesConfigurationSet", Actions: []string{"ses:*"}, Resources: []string{arn("ses", r, "configuration-set/"+copies)}},
		{Sid: "CopiesKeyAliases", Actions: []string{"kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"}, Resources: []string{arn("kms", r, "alias/"+copies)}},
		{Sid: "CopiesLogBuckets", Actions: []string{"s3:*"}, Resources: []string{"arn:" + part + ":s3:::" + copies},
			Conditions: []Condition{{Test: "StringEquals", Variable: "aws:ResourceAccount", Values: []string{a}}}},
		{Sid: "CopiesRoles", Actions: []string{"iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:UpdateRoleDescription",
			"iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole", "iam:ListRoleTags", "iam:PutRolePolicy", "iam:GetRolePolicy",
			"iam:DeleteRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"},
			Resources: []string{"arn:" + part + ":iam::" + a + ":role/" + copies}},
		{Sid: "PassCopiesRolesToTheirServices", Actions: []string{"iam:PassRole"}, Resources: []string{"arn:" + part + ":iam::" + a + ":role/" + copies},
			Conditions: []Condition{{Test: "StringEquals", Variable: "iam:PassedToService", Values: []string{"ecs-tasks.amazonaws.com", "vpc-flow-logs.amazonaws.com"}}}},
		{Sid: "ServiceLinkedRoles", Actions: []string{"iam:CreateServiceLinkedRole"}, Resources: []string{"arn:" + part + ":iam::" + a + ":role/aws-service-role/*"},
			Conditions: []Condition{{Test: "StringEquals", Variable: "iam:AWSServiceName", Values: []string{
				"ecs.amazonaws.com", "ecs.application-autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"}}}},

		// Keys have no name: created with the copy tag, then used and
		// deleted only while they carry it.
		{Sid: "CreateTaggedKeys", Actions: []string{"kms:CreateKey", "kms:ListAliases"}, Resources: []string{"*"},
			Conditions: inRegion},
		{Sid: "CopiesKeys", Actions: []string{"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:EnableKeyRotation", "kms:Encrypt",
			"kms:GenerateDataKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags", "kms:PutKeyPolicy",
			"kms:RetireGrant", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource", "kms:UpdateKeyDescription",
			"kms:CreateAlias", "kms:DeleteAlias"},
			Resources:  []string{arn("kms", r, "key/*")},
			Conditions: []Condition{{Test: "StringLike", Variable: "aws:ResourceTag/" + CopyTag, Values: []string{"*"}}}},

		// No resource-level permissions (ciUnscoped says why).
		{Sid: "Network", Resources: []string{"*"}, Conditions: inRegion, Actions: []string{
			"ec2:AllocateAddress", "ec2:AssociateRouteTable", "ec2:AttachInternetGateway", "ec2:AuthorizeSecurityGroupEgress",
			"ec2:AuthorizeSecurityGroupIngress", "ec2:CreateFlowLogs", "ec2:CreateInternetGateway", "ec2:CreateNatGateway",
			"ec2:CreateRoute", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup", "ec2:CreateSubnet", "ec2:CreateTags",
			"ec2:CreateVpc", "ec2:CreateVpcEndpoint", "ec2:DeleteFlowLogs", "ec2:DeleteInternetGateway", "ec2:DeleteNatGateway",
			"ec2:DeleteRoute", "ec2:DeleteRouteTable", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteTags",
			"ec2:DeleteVpc", "ec2:DeleteVpcEndpoints", "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses",
			"ec2:DescribeAddressesAttribute", "ec2:DescribeAvailabilityZones", "ec2:DescribeFlowLogs", "ec2:DescribeInternetGateways",
			"ec2:DescribeNatGateways", "ec2:DescribeNetworkAcls", "ec2:DescribeNetworkInterfaces", "ec2:DescribePrefixLists",
			"ec2:DescribeRouteTables", "ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
			"ec2:DescribeTags", "ec2:DescribeVpcAttribute", "ec2:DescribeVpcEndpointServices", "ec2:DescribeVpcEndpoints",
			"ec2:DescribeVpcs", "ec2:DetachInternetGateway", "ec2:DisassociateAddress", "ec2:DisassociateRouteTable",
			"ec2:ModifySubnetAttribute", "ec2:ModifyVpcAttribute", "ec2:ModifyVpcEndpoint", "ec2:ReleaseAddress",
			"ec2:ReplaceRoute", "ec2:ReplaceRouteTableAssociation", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
			"ec2:UpdateSecurityGroupRuleDescriptionsEgress", "ec2:UpdateSecurityGroupRuleDescriptionsIngress"}},
		{Sid: "ServiceNamespace", Resources: []string{"*"}, Conditions: inRegion, Actions: []string{
			"servicediscovery:CreatePrivateDnsNamespace", "servicediscovery:CreateService", "servicediscovery:DeleteNamespace",
			"servicediscovery:DeleteService", "servicediscovery:GetNamespace", "servicediscovery:GetOperation", "servicediscovery:GetService",
			"servicediscovery:ListNamespaces", "servicediscovery:ListServices", "servicediscovery:ListTagsForResource",
			"servicediscovery:TagResource", "servicediscovery:UntagResource", "servicediscovery:UpdateService",
			"route53:AssociateVPCWithHostedZone", "route53:CreateHostedZone", "route53:DeleteHostedZone", "route53:GetChange",
			"route53:GetHostedZone", "route53:ListHostedZonesByName"}},
		{Sid: "Scaling", Resources: []string{"*"}, Conditions: inRegion, Actions: []string{
			"application-autoscaling:DeleteScalingPolicy", "application-autoscaling:DeregisterScalableTarget",
			"application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
			"application-autoscaling:ListTagsForResource", "application-autoscaling:PutScalingPolicy",
			"application-autoscaling:RegisterScalableTarget", "application-autoscaling:TagResource", "application-autoscaling:UntagResource"}},
		{Sid: "TaskDefinitionsAndReads", Resources: []string{"*"}, Conditions: inRegion, Actions: []string{
			"ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition",
			"elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeListeners",
			"elasticloadbalancing:DescribeListenerAttributes", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
			"elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetHealth",
			"logs:DescribeLogGroups", "cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
			"tag:GetResources", "secretsmanager:GetRandomPassword"}},
		// The target group is named with a short generated prefix: tagged
		// as a copy when created, changed and deleted only while it is.
		{Sid: "CreateTaggedTargetGroups", Actions: []string{"elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags"},
			Resources:  []string{arn("elasticloadbalancing", r, "targetgroup/*")},
			Conditions: []Condition{{Test: "StringLike", Variable: "aws:RequestTag/" + CopyTag, Values: []string{"*"}}}},
		{Sid: "CopiesTargetGroups", Actions: []string{"elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:ModifyTargetGroup",
			"elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"},
			Resources:  []string{arn("elasticloadbalancing", r, "targetgroup/*")},
			Conditions: []Condition{{Test: "StringLike", Variable: "aws:ResourceTag/" + CopyTag, Values: []string{"*"}}}},

		// The unscoped network actions cannot touch a real Herald stack:
		// its resources carry Project=herald and no copy tag (and the tag
		// cannot be added to them).
		{Sid: "ProtectRealStacks", Deny: true, Resources: []string{"*"}, Actions: []string{
			"ec2:Delete*", "ec2:Modify*", "ec2:Revoke*", "ec2:Authorize*", "ec2:Create*", "ec2:Replace*", "ec2:Detach*",
			"ec2:Disassociate*", "ec2:Associate*", "ec2:ReleaseAddress", "ec2:UpdateSecurityGroupRuleDescriptions*",
			"servicediscovery:Delete*", "servicediscovery:Update*", "elasticloadbalancing:Delete*", "elasticloadbalancing:Modify*",
			"elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags", "kms:*"},
			Conditions: []Condition{
				{Test: "StringEquals", Variable: "aws:ResourceTag/Project", Values: []string{"herald"}},
				{Test: "Null", Variable: "aws:ResourceTag/" + CopyTag, Values: []string{"true"}},
			}},
		// It may not become the roles it makes (they are for ECS tasks and
		// flow logs).
		{Sid: "NeverAssumeCopiesRoles", Deny: true, Actions: []string{"sts:AssumeRole"}, Resources: []string{"arn:" + part + ":iam::" + a + ":role/" + copies}},
	}
	if len(p.SESIdentities) > 0 {
		s = append(s, Statement{Sid: "CheckSESIdentity", Actions: []string{"ses:GetEmailIdentity"}, Resources: p.SESIdentities})
	}
	if b := p.CI.StateBucket; b != "" {
		keys := "arn:" + part + ":s3:::" + b + "/" + StateKey(copies)
		keys = strings.TrimSuffix(keys, ".tfstate") // the state and its .tflock
		s = append(s,
			Statement{Sid: "CopiesStates", Actions: []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, Resources: []string{keys}},
			// key names only; the backend lists the bucket, the cleanup the
			// copies' prefix
			Statement{Sid: "ListStateBucket", Actions: []string{"s3:ListBucket"}, Resources: []string{"arn:" + part + ":s3:::" + b}},
		)
	}
	for i := range s {
		s[i].WildcardReason = ciWildcardReason(s[i])
	}
	return s
}

// ciWildcardReason justifies a statement's wildcards (trivy's AWS-0057,
// stacks/trivy-ignore.rego); empty without one.
func ciWildcardReason(s Statement) string {
	wild := slices.ContainsFunc(s.Actions, func(a string) bool { return strings.Contains(a, "*") }) ||
		slices.ContainsFunc(s.Resources, func(r string) bool { return strings.Contains(r, "*") })
	switch {
	case !wild:
		return ""
	case s.Deny:
		return "a deny: the wider, the safer"
	case slices.Contains(s.Resources, "*"):
		service, _, _ := strings.Cut(s.Actions[0], ":")
		return "CI role, in its region only: " + ciUnscoped[service]
	default:
		return "CI role: only resources named for the " + StackID(CICopyPrefix, "") + " copies, or tagged as copies"
	}
}

// ciProps wires the CI role to the stack: push to its own repositories,
// check its SES identity.
func (h *HeraldStack) ciProps(id string, env Environment) *CIRoleProps {
	var identities []string
	for _, i := range []string{env.Email.Identity, env.Email.DefaultFrom} {
		if i != "" {
			identities = append(identities, fmt.Sprintf("arn:%s:ses:%s:%s:identity/%s", partition(env.Region), env.Region, env.Account, i))
		}
	}
	return &CIRoleProps{
		Stack:            id,
		Account:          env.Account,
		Region:           env.Region,
		CI:               env.CI,
		PushRepositories: []string{h.Repositories.ByImage[apiService].ARN, h.Repositories.ByImage[senderService].ARN},
		SESIdentities:    identities,
	}
}
