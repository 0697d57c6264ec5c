package stacks

import (
	"errors"
	"fmt"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ecscluster"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ecsclustercapacityproviders"
)

// ClusterProps describe the ECS cluster both services run in.
type ClusterProps struct {
	Name string
	// ServiceConnectNamespaceARN becomes the cluster's default Service
	// Connect namespace (serviceconnect mode); nil otherwise.
	ServiceConnectNamespaceARN *string
}

// Cluster is an ECS cluster on Fargate with Container Insights.
type Cluster struct {
	constructs.Construct
	Cluster ecscluster.EcsCluster
	// Name is known at synth time (dashboard, alarms, autoscaling IDs).
	Name string
}

func (p *ClusterProps) validate() error {
	if p.Name == "" || len(p.Name) > 255 {
		return errors.New("Name must be 1..255 characters")
	}
	return nil
}

// NewCluster creates the cluster and its Fargate capacity providers.
func NewCluster(scope constructs.Construct, id string, props *ClusterProps) *Cluster {
	if props == nil {
		props = &ClusterProps{}
	}
	if err := props.validate(); err != nil {
		panic(fmt.Errorf("herald: cluster %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	cfg := &ecscluster.EcsClusterConfig{
		Name: jsii.String(props.Name),
		Setting: []*ecscluster.EcsClusterSetting{{
			Name:  jsii.String("containerInsights"),
			Value: jsii.String("enabled"),
		}},
	}
	if props.ServiceConnectNamespaceARN != nil {
		cfg.ServiceConnectDefaults = &ecscluster.EcsClusterServiceConnectDefaults{Namespace: props.ServiceConnectNamespaceARN}
	}
	cl := ecscluster.NewEcsCluster(c, jsii.String("cluster"), cfg)
	ecsclustercapacityproviders.NewEcsClusterCapacityProviders(c, jsii.String("capacity-providers"), &ecsclustercapacityproviders.EcsClusterCapacityProvidersConfig{
		ClusterName:       cl.Name(),
		CapacityProviders: jsii.Strings("FARGATE"),
		DefaultCapacityProviderStrategy: []*ecsclustercapacityproviders.EcsClusterCapacityProvidersDefaultCapacityProviderStrategy{{
			CapacityProvider: jsii.String("FARGATE"),
			Weight:           jsii.Number(1),
		}},
	})
	return &Cluster{Construct: c, Cluster: cl, Name: props.Name}
}
