package stacks

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/lb"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/lblistener"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/lbtargetgroup"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/route53record"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/securitygroup"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/securitygrouprule"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// tlsPolicy allows TLS 1.3 and 1.2 with forward secrecy only.
const tlsPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// IngressProps describe the Application Load Balancer in front of the API.
type IngressProps struct {
	// Name of the load balancer, at most 32 characters.
	Name      string
	VPCID     *string
	SubnetIDs []*string
	// TargetPort is the API's port; HealthPath its health check path.
	TargetPort int
	HealthPath string
	// CertificateARN: HTTPS on 443 with HTTP redirected; empty: HTTP only,
	// allowed only Internal or behind an AllowedCIDRs allow-list.
	CertificateARN string
	// Domain and HostedZoneID: the alias record clients call (with a
	// certificate only).
	Domain       string
	HostedZoneID string
	Internal     bool
	// AllowedCIDRs may reach the listeners; defaults as IngressConfig's.
	AllowedCIDRs       []string
	DeletionProtection bool
	// AccessLogs, when set, is the bucket the load balancer logs to.
	AccessLogs *AccessLogBucket
}

// Ingress is the load balancer, its listeners and the API's target group.
type Ingress struct {
	constructs.Construct
	LoadBalancer  lb.Lb
	SecurityGroup securitygroup.SecurityGroup
	TargetGroup   lbtargetgroup.LbTargetGroup
	// Alias is the Domain's record, nil without a domain.
	Alias route53record.Route53Record
	// Listeners must exist before the ECS service registers targets.
	Listeners []cdktf.ITerraformDependable
	// URL is the API's base URL (a token until apply without a domain).
	URL *string
	// ListenerPorts are open to AllowedCIDRs.
	ListenerPorts []int
	targetPort    int
}

// config is the props as the environment's ingress settings, so that the
// construct refuses exactly what Environment.Validate refuses.
func (p *IngressProps) config() IngressConfig {
	return IngressConfig{
		CertificateARN: p.CertificateARN, Domain: p.Domain, HostedZoneID: p.HostedZoneID,
		Internal: p.Internal, AllowedCIDRs: p.AllowedCIDRs,
	}
}

func (p *IngressProps) validate() error {
	var errs []error
	if p.Name == "" || len(p.Name) > 32 {
		errs = append(errs, fmt.Errorf("Name %q must be 1..32 characters", p.Name))
	}
	if p.VPCID == nil || len(p.SubnetIDs) < 2 {
		errs = append(errs, errors.New("VPCID and at least 2 SubnetIDs are required"))
	}
	if p.TargetPort < 1 || p.TargetPort > 65535 {
		errs = append(errs, fmt.Errorf("TargetPort %d is outside 1..65535", p.TargetPort))
	}
	if p.HealthPath == "" || p.HealthPath[0] != '/' {
		errs = append(errs, fmt.Errorf("HealthPath %q must start with /", p.HealthPath))
	}
	pr := &problems{env: p.Name}
	Environment{Ingress: p.config()}.validateIngress(pr)
	return errors.Join(append(errs, pr.errs...)...)
}

// NewIngress creates the load balancer, its security group, the target
// group, the listeners and, with a domain, its alias record.
func NewIngress(scope constructs.Construct, id string, props *IngressProps) *Ingress {
	if props == nil {
		props = &IngressProps{}
	}
	p := *props
	p.AllowedCIDRs = p.config().withDefaults().AllowedCIDRs
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: ingress %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	in := &Ingress{Construct: c, targetPort: p.TargetPort}
	in.SecurityGroup = securitygroup.NewSecurityGroup(c, jsii.String("security-group"), &securitygroup.SecurityGroupConfig{
		Name:        jsii.String(p.Name + "-load-balancer"),
		Description: jsii.String("Load balancer of " + p.Name + ": listeners in, API tasks out"),
		VpcId:       p.VPCID,
		Tags:        nameTag(p.Name + "-load-balancer"),
	})
	in.ListenerPorts = []int{80}
	if p.CertificateARN != "" {
		in.ListenerPorts = append(in.ListenerPorts, 443)
	}
	for _, port := range in.ListenerPorts {
		securitygrouprule.NewSecurityGroupRule(c, jsii.String("listener-"+strconv.Itoa(port)), &securitygrouprule.SecurityGroupRuleConfig{
			SecurityGroupId: in.SecurityGroup.Id(),
			Type:            jsii.String("ingress"),
			Protocol:        jsii.String("tcp"),
			FromPort:        jsii.Number(float64(port)),
			ToPort:          jsii.Number(float64(port)),
			CidrBlocks:      jsii.Strings(p.AllowedCIDRs...),
			Description:     jsii.String(fmt.Sprintf("Clients reach listener %d", port)),
		})
	}

	cfg := &lb.LbConfig{
		Name:                     jsii.String(p.Name),
		LoadBalancerType:         jsii.String("application"),
		Internal:                 jsii.Bool(p.Internal),
		SecurityGroups:           &[]*string{in.SecurityGroup.Id()},
		Subnets:                  &p.SubnetIDs,
		DropInvalidHeaderFields:  jsii.Bool(true),
		EnableDeletionProtection: jsii.Bool(p.DeletionProtection),
		IdleTimeout:              jsii.Number(60),
		Tags:                     nameTag(p.Name),
	}
	if logs := p.AccessLogs; logs != nil {
		cfg.AccessLogs = &lb.LbAccessLogs{Bucket: jsii.String(logs.Name), Enabled: jsii.Bool(true)}
		// ELB tries a write when access logs are turned on and fails the
		// change if the bucket policy does not allow it yet.
		cfg.DependsOn = &logs.Ready
	}
	in.LoadBalancer = lb.NewLb(c, jsii.String("load-balancer"), cfg)

	in.TargetGroup = lbtargetgroup.NewLbTargetGroup(c, jsii.String("api"), &lbtargetgroup.LbTargetGroupConfig{
		// A prefix, not a name: a changed target group is created before
		// the old one is destroyed, and names are unique per region.
		NamePrefix:          jsii.String("api-"),
		Port:                jsii.Number(float64(p.TargetPort)),
		Protocol:            jsii.String("HTTP"),
		TargetType:          jsii.String("ip"),
		VpcId:               p.VPCID,
		DeregistrationDelay: jsii.String(strconv.Itoa(int((20 * time.Second).Seconds()))),
		HealthCheck: &lbtargetgroup.LbTargetGroupHealthCheck{
			Enabled:            jsii.Bool(true),
			Path:               jsii.String(p.HealthPath),
			Protocol:           jsii.String("HTTP"),
			Port:               jsii.String("traffic-port"),
			Matcher:            jsii.String("200"),
			Interval:           jsii.Number(15),
			Timeout:            jsii.Number(5),
			HealthyThreshold:   jsii.Number(2),
			UnhealthyThreshold: jsii.Number(3),
		},
		Tags:      nameTag(p.Name + "-api"),
		Lifecycle: &cdktf.TerraformResourceLifecycle{CreateBeforeDestroy: jsii.Bool(true)},
	})
	forward := []*lblistener.LbListenerDefaultAction{{
		Type:           jsii.String("forward"),
		TargetGroupArn: in.TargetGroup.Arn(),
	}}
	if p.CertificateARN == "" {
		// Only inside the VPC or to the allow-list (validated above).
		in.Listeners = append(in.Listeners, lblistener.NewLbListener(c, jsii.String("http"), &lblistener.LbListenerConfig{
			LoadBalancerArn: in.LoadBalancer.Arn(),
			Port:            jsii.Number(80),
			Protocol:        jsii.String("HTTP"),
			DefaultAction:   forward,
		}))
		in.URL = jsii.String("http://" + *in.LoadBalancer.DnsName())
		return in
	}
	in.Listeners = append(in.Listeners,
		lblistener.NewLbListener(c, jsii.String("https"), &lblistener.LbListenerConfig{
			LoadBalancerArn: in.LoadBalancer.Arn(),
			Port:            jsii.Number(443),
			Protocol:        jsii.String("HTTPS"),
			SslPolicy:       jsii.String(tlsPolicy),
			CertificateArn:  jsii.String(p.CertificateARN),
			DefaultAction:   forward,
		}),
		lblistener.NewLbListener(c, jsii.String("http"), &lblistener.LbListenerConfig{
			LoadBalancerArn: in.LoadBalancer.Arn(),
			Port:            jsii.Number(80),
			Protocol:        jsii.String("HTTP"),
			DefaultAction: []*lblistener.LbListenerDefaultAction{{
				Type: jsii.String("redirect"),
				Redirect: &lblistener.LbListenerDefaultActionRedirect{
					Protocol:   jsii.String("HTTPS"),
					Port:       jsii.String("443"),
					StatusCode: jsii.String("HTTP_301"),
				},
			}},
		}),
	)
	if p.Domain == "" {
		in.URL = jsii.String("https://" + *in.LoadBalancer.DnsName())
		return in
	}
	// The certificate is for the domain: clients call the domain, which
	// this record points at the load balancer.
	in.Alias = route53record.NewRoute53Record(c, jsii.String("alias"), &route53record.Route53RecordConfig{
		ZoneId: jsii.String(p.HostedZoneID),
		Name:   jsii.String(p.Domain),
		Type:   jsii.String("A"),
		Alias: &route53record.Route53RecordAlias{
			Name:                 in.LoadBalancer.DnsName(),
			ZoneId:               in.LoadBalancer.ZoneId(),
			EvaluateTargetHealth: jsii.Bool(true),
		},
	})
	in.URL = jsii.String("https://" + p.Domain)
	return in
}

// AllowTargets lets the load balancer reach members of securityGroupID on
// the target port; nothing else leaves it.
func (in *Ingress) AllowTargets(id string, securityGroupID *string) {
	securitygrouprule.NewSecurityGroupRule(in.Construct, jsii.String("to-"+id), &securitygrouprule.SecurityGroupRuleConfig{
		SecurityGroupId:       in.SecurityGroup.Id(),
		Type:                  jsii.String("egress"),
		Protocol:              jsii.String("tcp"),
		FromPort:              jsii.Number(float64(in.targetPort)),
		ToPort:                jsii.Number(float64(in.targetPort)),
		SourceSecurityGroupId: securityGroupID,
		Description:           jsii.String("The load balancer reaches " + id),
	})
}
