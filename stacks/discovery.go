package stacks

import (
	"errors"
	"fmt"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/servicediscoveryprivatednsnamespace"
)

// DiscoveryProps describe the Cloud Map namespace of the services.
type DiscoveryProps struct {
	// Name of the private DNS namespace, e.g. "herald-dev.internal".
	Name  string
	VPCID *string
}

// Discovery is the Cloud Map namespace both mesh modes register services in.
type Discovery struct {
	constructs.Construct
	Namespace servicediscoveryprivatednsnamespace.ServiceDiscoveryPrivateDnsNamespace
	// Name is known at synth time.
	Name string
}

func (p *DiscoveryProps) validate() error {
	var errs []error
	if !domainPattern.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("Name %q is not a DNS name", p.Name))
	}
	if p.VPCID == nil {
		errs = append(errs, errors.New("VPCID is required"))
	}
	return errors.Join(errs...)
}

// NewDiscovery creates the namespace.
func NewDiscovery(scope constructs.Construct, id string, props *DiscoveryProps) *Discovery {
	if props == nil {
		props = &DiscoveryProps{}
	}
	if err := props.validate(); err != nil {
		panic(fmt.Errorf("herald: discovery %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	ns := servicediscoveryprivatednsnamespace.NewServiceDiscoveryPrivateDnsNamespace(c, jsii.String("namespace"), &servicediscoveryprivatednsnamespace.ServiceDiscoveryPrivateDnsNamespaceConfig{
		Name:        jsii.String(props.Name),
		Description: jsii.String("Herald services"),
		Vpc:         props.VPCID,
	})
	return &Discovery{Construct: c, Namespace: ns, Name: props.Name}
}
