package stacks

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/dataawsavailabilityzones"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/dataawsiampolicydocument"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/defaultsecuritygroup"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/eip"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/flowlog"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/internetgateway"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/natgateway"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/route"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/routetable"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/routetableassociation"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/securitygroup"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/securitygrouprule"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/subnet"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/vpc"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/vpcendpoint"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// baseInterfaceEndpoints are the AWS services both tasks reach without the
// internet: queue, image pulls, logs, secrets, parameters and credentials.
var baseInterfaceEndpoints = []string{"sqs", "ecr.api", "ecr.dkr", "logs", "secretsmanager", "ssm", "sts"}

// NetworkProps describe the VPC the tasks run in.
type NetworkProps struct {
	// Name prefixes resource names and Name tags.
	Name    string
	Account string
	Region  string
	NetworkConfig
	// ExtraEndpoints are interface endpoint services the mesh needs beyond
	// baseInterfaceEndpoints (e.g. "appmesh-envoy-management").
	ExtraEndpoints []string
	// LogKeyARN encrypts the flow log group.
	LogKeyARN *string
	// LogRetentionDays of the flow log group (with flow logs).
	LogRetentionDays int
	// DynamoDBPolicy, when set, adds a DynamoDB gateway endpoint on the
	// private route tables with this policy (the state store's table).
	DynamoDBPolicy []Statement
}

// Network is a VPC (new or existing) with its subnets and endpoints.
type Network struct {
	constructs.Construct
	VPCID            *string
	PublicSubnetIDs  []*string
	PrivateSubnetIDs []*string
	// VPC is nil for an existing VPC.
	VPC vpc.Vpc
	// EndpointSecurityGroup guards the interface endpoints; nil when the
	// stack makes none. Let a task in with AllowEndpointAccess.
	EndpointSecurityGroup securitygroup.SecurityGroup
	// S3PrefixListID is the S3 gateway endpoint's prefix list (image
	// layers), nil without endpoints.
	S3PrefixListID *string
	// DynamoDBPrefixListID is the DynamoDB gateway endpoint's prefix list,
	// nil without it.
	DynamoDBPrefixListID *string
	// FlowLogs is nil when flow logs are off.
	FlowLogs *LogGroup
}

func (p *NetworkProps) validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("Name is required"))
	}
	env := Environment{Name: p.Name, Network: p.NetworkConfig}
	pr := &problems{env: p.Name}
	env.validateNetwork(pr)
	errs = append(errs, pr.errs...)
	if !p.SkipFlowLogs && p.LogKeyARN == nil {
		errs = append(errs, errors.New("LogKeyARN is required with flow logs"))
	}
	if !p.SkipFlowLogs && p.Existing != nil {
		errs = append(errs, errors.New("an existing VPC's flow logs are its owner's: set SkipFlowLogs"))
	}
	if !p.SkipFlowLogs && !slices.Contains(logRetentionDays, p.LogRetentionDays) {
		errs = append(errs, fmt.Errorf("LogRetentionDays %d is not a CloudWatch retention", p.LogRetentionDays))
	}
	return errors.Join(errs...)
}

// NewNetwork creates the VPC, or adopts an existing one, and its endpoints.
func NewNetwork(scope constructs.Construct, id string, props *NetworkProps) *Network {
	if props == nil {
		props = &NetworkProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: network %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	n := &Network{Construct: c}
	var privateRouteTables []*string
	if x := p.Existing; x != nil {
		n.VPCID = jsii.String(x.VPCID)
		n.PublicSubnetIDs = *jsii.Strings(x.PublicSubnetIDs...)
		n.PrivateSubnetIDs = *jsii.Strings(x.PrivateSubnetIDs...)
		privateRouteTables = *jsii.Strings(x.PrivateRouteTableIDs...)
	} else {
		privateRouteTables = n.newVPC(c, &p)
	}
	if !p.SkipEndpoints {
		n.newEndpoints(c, &p, privateRouteTables)
	}
	return n
}

func nameTag(name string) *map[string]*string {
	return &map[string]*string{"Name": jsii.String(name)}
}

// newVPC builds the VPC over AZCount zones and returns the private route
// tables.
func (n *Network) newVPC(c constructs.Construct, p *NetworkProps) []*string {
	publicCIDRs, privateCIDRs, err := SubnetPlan(p.CIDR, p.AZCount, p.SubnetNewBits)
	if err != nil {
		panic(fmt.Errorf("herald: network: %w", err))
	}
	v := vpc.NewVpc(c, jsii.String("vpc"), &vpc.VpcConfig{
		CidrBlock:          jsii.String(p.CIDR),
		EnableDnsSupport:   jsii.Bool(true),
		EnableDnsHostnames: jsii.Bool(true), // private DNS of interface endpoints
		Tags:               nameTag(p.Name),
	})
	n.VPC = v
	n.VPCID = v.Id()
	// The default security group of a new VPC allows all traffic between
	// its members; Herald never uses it, so it is emptied.
	defaultsecuritygroup.NewDefaultSecurityGroup(c, jsii.String("default-security-group"), &defaultsecuritygroup.DefaultSecurityGroupConfig{
		VpcId: v.Id(),
		Tags:  nameTag(p.Name + "-default-unused"),
	})
	azs := dataawsavailabilityzones.NewDataAwsAvailabilityZones(c, jsii.String("zones"), &dataawsavailabilityzones.DataAwsAvailabilityZonesConfig{
		State: jsii.String("available"),
		// regular zones only, not Local or Wavelength Zones
		Filter: []*dataawsavailabilityzones.DataAwsAvailabilityZonesFilter{{
			Name:   jsii.String("opt-in-status"),
			Values: jsii.Strings("opt-in-not-required"),
		}},
	})
	igw := internetgateway.NewInternetGateway(c, jsii.String("internet-gateway"), &internetgateway.InternetGatewayConfig{
		VpcId: v.Id(),
		Tags:  nameTag(p.Name),
	})
	publicRT := routetable.NewRouteTable(c, jsii.String("public-routes"), &routetable.RouteTableConfig{
		VpcId: v.Id(),
		Tags:  nameTag(p.Name + "-public"),
	})
	route.NewRoute(c, jsii.String("public-default-route"), &route.RouteConfig{
		RouteTableId:         publicRT.Id(),
		DestinationCidrBlock: jsii.String("0.0.0.0/0"),
		GatewayId:            igw.Id(),
	})
	// Subnet i of each tier is in zone i. Not even the public subnets map
	// public IPs: only the load balancer and the NAT gateways live there.
	newSubnet := func(tier string, i int, cidr string) subnet.Subnet {
		return subnet.NewSubnet(c, jsii.String(fmt.Sprintf("%s-%d", tier, i)), &subnet.SubnetConfig{
			VpcId:               v.Id(),
			CidrBlock:           jsii.String(cidr),
			AvailabilityZone:    cdktf.Token_AsString(cdktf.Fn_Element(azs.Names(), jsii.Number(float64(i))), nil),
			MapPublicIpOnLaunch: jsii.Bool(false),
			Tags:                nameTag(fmt.Sprintf("%s-%s-%d", p.Name, tier, i)),
		})
	}
	var natIDs []*string
	var privateRTs []*string
	for i := range p.AZCount {
		pub := newSubnet("public", i, publicCIDRs[i])
		n.PublicSubnetIDs = append(n.PublicSubnetIDs, pub.Id())
		routetableassociation.NewRouteTableAssociation(c, jsii.String(fmt.Sprintf("public-%d-routes", i)), &routetableassociation.RouteTableAssociationConfig{
			SubnetId:     pub.Id(),
			RouteTableId: publicRT.Id(),
		})
		if i < p.NATGateways {
			ip := eip.NewEip(c, jsii.String(fmt.Sprintf("nat-%d-address", i)), &eip.EipConfig{
				Domain: jsii.String("vpc"),
				Tags:   nameTag(fmt.Sprintf("%s-nat-%d", p.Name, i)),
			})
			nat := natgateway.NewNatGateway(c, jsii.String(fmt.Sprintf("nat-%d", i)), &natgateway.NatGatewayConfig{
				AllocationId: ip.AllocationId(),
				SubnetId:     pub.Id(),
				Tags:         nameTag(fmt.Sprintf("%s-nat-%d", p.Name, i)),
				DependsOn:    &[]cdktf.ITerraformDependable{igw},
			})
			natIDs = append(natIDs, nat.Id())
		}
	}
	for i := range p.AZCount {
		priv := newSubnet("private", i, privateCIDRs[i])
		n.PrivateSubnetIDs = append(n.PrivateSubnetIDs, priv.Id())
		rt := routetable.NewRouteTable(c, jsii.String(fmt.Sprintf("private-%d-routes", i)), &routetable.RouteTableConfig{
			VpcId: v.Id(),
			Tags:  nameTag(fmt.Sprintf("%s-private-%d", p.Name, i)),
		})
		privateRTs = append(privateRTs, rt.Id())
		// Zone i uses its own NAT gateway when there is one per zone, the
		// shared ones round-robin otherwise.
		route.NewRoute(c, jsii.String(fmt.Sprintf("private-%d-default-route", i)), &route.RouteConfig{
			RouteTableId:         rt.Id(),
			DestinationCidrBlock: jsii.String("0.0.0.0/0"),
			NatGatewayId:         natIDs[i%len(natIDs)],
		})
		routetableassociation.NewRouteTableAssociation(c, jsii.String(fmt.Sprintf("private-%d-routes-association", i)), &routetableassociation.RouteTableAssociationConfig{
			SubnetId:     priv.Id(),
			RouteTableId: rt.Id(),
		})
	}
	if !p.SkipFlowLogs {
		n.newFlowLogs(c, p, v)
	}
	return privateRTs
}

func (n *Network) newFlowLogs(c constructs.Construct, p *NetworkProps, v vpc.Vpc) {
	n.FlowLogs = NewLogGroup(c, "flow-logs", &LogGroupProps{
		Name:          "/herald/" + p.Name + "/vpc-flow-logs",
		RetentionDays: p.LogRetentionDays,
		KMSKeyARN:     p.LogKeyARN,
	})
	role := NewRole(c, "flow-logs-role", &RoleProps{
		Name:          p.Name + "-vpc-flow-logs",
		Description:   "VPC flow logs of " + p.Name + " deliver to their log group",
		Service:       "vpc-flow-logs.amazonaws.com",
		Account:       p.Account,
		SourceArnLike: fmt.Sprintf("arn:%s:ec2:%s:%s:vpc-flow-log/*", partition(p.Region), p.Region, p.Account),
		Statements: []Statement{{
			Sid:       "WriteFlowLogs",
			Actions:   []string{"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"},
			Resources: []string{*n.FlowLogs.Group.Arn() + ":*"},
			// the streams are named by the flow log service
			WildcardReason: "VPC flow logs name their log streams in their own group",
		}},
	})
	flowlog.NewFlowLog(c, jsii.String("flow-log"), &flowlog.FlowLogConfig{
		VpcId:              v.Id(),
		TrafficType:        jsii.String("ALL"),
		LogDestinationType: jsii.String("cloud-watch-logs"),
		LogDestination:     n.FlowLogs.Group.Arn(),
		IamRoleArn:         role.Role.Arn(),
		Tags:               nameTag(p.Name),
	})
}

func (n *Network) newEndpoints(c constructs.Construct, p *NetworkProps, privateRouteTables []*string) {
	n.EndpointSecurityGroup = securitygroup.NewSecurityGroup(c, jsii.String("endpoints"), &securitygroup.SecurityGroupConfig{
		Name:        jsii.String(p.Name + "-endpoints"),
		Description: jsii.String("Interface endpoints of " + p.Name + ": HTTPS from Herald's tasks only"),
		VpcId:       n.VPCID,
		Tags:        nameTag(p.Name + "-endpoints"),
	})
	services := append(slices.Clone(baseInterfaceEndpoints), p.ExtraEndpoints...)
	for _, svc := range services {
		vpcendpoint.NewVpcEndpoint(c, jsii.String("endpoint-"+svc), &vpcendpoint.VpcEndpointConfig{
			VpcId:             n.VPCID,
			ServiceName:       jsii.String(fmt.Sprintf("com.amazonaws.%s.%s", p.Region, svc)),
			VpcEndpointType:   jsii.String("Interface"),
			PrivateDnsEnabled: jsii.Bool(true),
			SubnetIds:         &n.PrivateSubnetIDs,
			SecurityGroupIds:  &[]*string{n.EndpointSecurityGroup.Id()},
			Tags:              nameTag(p.Name + "-" + svc),
		})
	}
	// Image layers come from ECR's S3 bucket through a gateway endpoint; its
	// policy admits that bucket only.
	layers := newPolicyDocument(c, "s3-endpoint-policy", []Statement{{
		Sid:            "EcrImageLayersOnly",
		Actions:        []string{"s3:GetObject"},
		Resources:      []string{fmt.Sprintf("arn:%s:s3:::prod-%s-starport-layer-bucket/*", partition(p.Region), p.Region)},
		Principals:     []Principal{{Type: "*", Identifiers: []string{"*"}}},
		WildcardReason: "image layers are objects of the ECR layer bucket",
	}}, resourcePolicy)
	n.S3PrefixListID = n.gatewayEndpoint(c, p, "s3", privateRouteTables, layers)
	if len(p.DynamoDBPolicy) == 0 {
		return
	}
	// The state store is reached through a gateway endpoint (free, no NAT
	// traffic); its policy admits the table's item actions only.
	table := newPolicyDocument(c, "dynamodb-endpoint-policy", p.DynamoDBPolicy, resourcePolicy)
	n.DynamoDBPrefixListID = n.gatewayEndpoint(c, p, "dynamodb", privateRouteTables, table)
}

// gatewayEndpoint puts a gateway endpoint of service on the private route
// tables, under policy, and returns its prefix list.
func (n *Network) gatewayEndpoint(c constructs.Construct, p *NetworkProps, service string, routeTables []*string, policy dataawsiampolicydocument.DataAwsIamPolicyDocument) *string {
	return vpcendpoint.NewVpcEndpoint(c, jsii.String("endpoint-"+service), &vpcendpoint.VpcEndpointConfig{
		VpcId:           n.VPCID,
		ServiceName:     jsii.String(fmt.Sprintf("com.amazonaws.%s.%s", p.Region, service)),
		VpcEndpointType: jsii.String("Gateway"),
		RouteTableIds:   &routeTables,
		Policy:          policy.Json(),
		Tags:            nameTag(p.Name + "-" + service),
	}).PrefixListId()
}

// AllowEndpointAccess lets members of securityGroupID reach the interface
// endpoints over HTTPS. id names the rule (one per caller).
func (n *Network) AllowEndpointAccess(id string, securityGroupID *string, description string) {
	if n.EndpointSecurityGroup == nil {
		return
	}
	securitygrouprule.NewSecurityGroupRule(n.Construct, jsii.String("endpoints-from-"+id), &securitygrouprule.SecurityGroupRuleConfig{
		SecurityGroupId:       n.EndpointSecurityGroup.Id(),
		Type:                  jsii.String("ingress"),
		Protocol:              jsii.String("tcp"),
		FromPort:              jsii.Number(443),
		ToPort:                jsii.Number(443),
		SourceSecurityGroupId: securityGroupID,
		Description:           jsii.String(description),
	})
}

// isPublicCIDR reports whether a block reaches beyond private address space.
func isPublicCIDR(cidr string) bool {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return true
	}
	first := p.Masked().Addr()
	if !first.IsPrivate() {
		return true
	}
	// the block is private only if its last address is private as well
	last := first.As16()
	hostBits := first.BitLen() - p.Bits()
	for i := 15; hostBits > 0; i-- {
		n := min(hostBits, 8)
		last[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	l := netip.AddrFrom16(last)
	if first.Is4() {
		l = l.Unmap()
	}
	return !l.IsPrivate()
}
