package stacks

import (
	"errors"
	"fmt"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appmeshmesh"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appmeshroute"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appmeshvirtualnode"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appmeshvirtualrouter"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/appmeshvirtualservice"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/servicediscoveryservice"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// MeshService is one service placed in the mesh.
type MeshService struct {
	// Name of the service, its virtual node and its Cloud Map service.
	Name string
	// Port the application listens on (the Envoy listener).
	Port int
	// HealthPath is the HTTP path Envoy checks on Port.
	HealthPath string
	// Routed puts a virtual router and route in front of the virtual node
	// (the API); otherwise the virtual service points at the node.
	Routed bool
}

// AppMeshProps describe the App Mesh mesh of the services.
type AppMeshProps struct {
	// Name of the mesh.
	Name    string
	Account string
	Region  string
	// Namespace the services register in (Cloud Map discovery).
	NamespaceID   *string
	NamespaceName string
	// EgressFilter is DROP_ALL (default) or ALLOW_ALL.
	EgressFilter string
	Services     []MeshService
}

// MeshNode is what a Fargate service needs to join the mesh.
type MeshNode struct {
	VirtualNode    appmeshvirtualnode.AppmeshVirtualNode
	VirtualService appmeshvirtualservice.AppmeshVirtualService
	// Registry is the Cloud Map service the ECS service registers tasks in.
	Registry servicediscoveryservice.ServiceDiscoveryService
	// VirtualServiceName is the name clients in the mesh call.
	VirtualServiceName string
	// VirtualNodeARN is known at synth time.
	VirtualNodeARN string
}

// AppMesh is the mesh. AWS ended App Mesh on 2026-09-30: creating a mesh
// fails since, so the mode is synthesized and tested only (see
// AppMeshDeprecation).
type AppMesh struct {
	constructs.Construct
	Mesh  appmeshmesh.AppmeshMesh
	Nodes map[string]*MeshNode
}

func (p *AppMeshProps) validate() error {
	var errs []error
	if p.Name == "" || !accountPattern.MatchString(p.Account) || !regionPattern.MatchString(p.Region) {
		errs = append(errs, errors.New("Name, Account and Region are required"))
	}
	if p.NamespaceID == nil || p.NamespaceName == "" {
		errs = append(errs, errors.New("NamespaceID and NamespaceName are required"))
	}
	if p.EgressFilter != "DROP_ALL" && p.EgressFilter != "ALLOW_ALL" {
		errs = append(errs, fmt.Errorf("EgressFilter %q is not DROP_ALL or ALLOW_ALL", p.EgressFilter))
	}
	if len(p.Services) == 0 {
		errs = append(errs, errors.New("Services is empty"))
	}
	for _, s := range p.Services {
		if s.Name == "" || s.Port < 1 || s.Port > 65535 || s.HealthPath == "" || s.HealthPath[0] != '/' {
			errs = append(errs, fmt.Errorf("Services: %q needs a name, a port 1..65535 and a health path starting with /", s.Name))
		}
	}
	return errors.Join(errs...)
}

// NewAppMesh creates the mesh, and per service a Cloud Map service, a virtual
// node with listener, health check and Cloud Map discovery, a virtual service
// and, for routed services, a virtual router and route.
func NewAppMesh(scope constructs.Construct, id string, props *AppMeshProps) *AppMesh {
	if props == nil {
		props = &AppMeshProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: app mesh %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	m := &AppMesh{Construct: c, Nodes: map[string]*MeshNode{}}
	m.Mesh = appmeshmesh.NewAppmeshMesh(c, jsii.String("mesh"), &appmeshmesh.AppmeshMeshConfig{
		Name: jsii.String(p.Name),
		Spec: &appmeshmesh.AppmeshMeshSpec{
			EgressFilter: &appmeshmesh.AppmeshMeshSpecEgressFilter{Type: jsii.String(p.EgressFilter)},
		},
	})
	for _, s := range p.Services {
		registry := servicediscoveryservice.NewServiceDiscoveryService(c, jsii.String(s.Name+"-registry"), &servicediscoveryservice.ServiceDiscoveryServiceConfig{
			Name:        jsii.String(s.Name),
			Description: jsii.String("Tasks of " + s.Name + " (App Mesh discovery)"),
			DnsConfig: &servicediscoveryservice.ServiceDiscoveryServiceDnsConfig{
				NamespaceId:   p.NamespaceID,
				RoutingPolicy: jsii.String("MULTIVALUE"),
				DnsRecords: []*servicediscoveryservice.ServiceDiscoveryServiceDnsConfigDnsRecords{{
					Type: jsii.String("A"),
					Ttl:  jsii.Number(10),
				}},
			},
			// ECS reports task health to Cloud Map. The threshold is set
			// although AWS always uses 1: the provider does not send an
			// empty block, finds none in state and, the block forcing
			// replacement, replaces the service on every apply
			// (terraform-provider-aws issue 44285).
			HealthCheckCustomConfig: &servicediscoveryservice.ServiceDiscoveryServiceHealthCheckCustomConfig{FailureThreshold: jsii.Number(1)},
		})
		node := appmeshvirtualnode.NewAppmeshVirtualNode(c, jsii.String(s.Name+"-node"), &appmeshvirtualnode.AppmeshVirtualNodeConfig{
			Name:     jsii.String(s.Name),
			MeshName: m.Mesh.Name(),
			Spec: &appmeshvirtualnode.AppmeshVirtualNodeSpec{
				Listener: []*appmeshvirtualnode.AppmeshVirtualNodeSpecListener{{
					PortMapping: &appmeshvirtualnode.AppmeshVirtualNodeSpecListenerPortMapping{
						Port:     jsii.Number(float64(s.Port)),
						Protocol: jsii.String("http"),
					},
					HealthCheck: &appmeshvirtualnode.AppmeshVirtualNodeSpecListenerHealthCheck{
						Protocol:           jsii.String("http"),
						Path:               jsii.String(s.HealthPath),
						Port:               jsii.Number(float64(s.Port)),
						HealthyThreshold:   jsii.Number(2),
						UnhealthyThreshold: jsii.Number(3),
						IntervalMillis:     jsii.Number(10000),
						TimeoutMillis:      jsii.Number(3000),
					},
				}},
				ServiceDiscovery: &appmeshvirtualnode.AppmeshVirtualNodeSpecServiceDiscovery{
					AwsCloudMap: &appmeshvirtualnode.AppmeshVirtualNodeSpecServiceDiscoveryAwsCloudMap{
						NamespaceName: jsii.String(p.NamespaceName),
						ServiceName:   registry.Name(),
					},
				},
				Logging: &appmeshvirtualnode.AppmeshVirtualNodeSpecLogging{
					AccessLog: &appmeshvirtualnode.AppmeshVirtualNodeSpecLoggingAccessLog{
						File: &appmeshvirtualnode.AppmeshVirtualNodeSpecLoggingAccessLogFile{Path: jsii.String("/dev/stdout")},
					},
				},
			},
		})
		virtualName := s.Name + "." + p.NamespaceName
		provider := &appmeshvirtualservice.AppmeshVirtualServiceSpecProvider{
			VirtualNode: &appmeshvirtualservice.AppmeshVirtualServiceSpecProviderVirtualNode{VirtualNodeName: node.Name()},
		}
		var dependsOn []cdktf.ITerraformDependable
		if s.Routed {
			router := appmeshvirtualrouter.NewAppmeshVirtualRouter(c, jsii.String(s.Name+"-router"), &appmeshvirtualrouter.AppmeshVirtualRouterConfig{
				Name:     jsii.String(s.Name),
				MeshName: m.Mesh.Name(),
				Spec: &appmeshvirtualrouter.AppmeshVirtualRouterSpec{
					Listener: []*appmeshvirtualrouter.AppmeshVirtualRouterSpecListener{{
						PortMapping: &appmeshvirtualrouter.AppmeshVirtualRouterSpecListenerPortMapping{
							Port:     jsii.Number(float64(s.Port)),
							Protocol: jsii.String("http"),
						},
					}},
				},
			})
			rt := appmeshroute.NewAppmeshRoute(c, jsii.String(s.Name+"-route"), &appmeshroute.AppmeshRouteConfig{
				Name:              jsii.String(s.Name),
				MeshName:          m.Mesh.Name(),
				VirtualRouterName: router.Name(),
				Spec: &appmeshroute.AppmeshRouteSpec{
					HttpRoute: &appmeshroute.AppmeshRouteSpecHttpRoute{
						Match: &appmeshroute.AppmeshRouteSpecHttpRouteMatch{Prefix: jsii.String("/")},
						Action: &appmeshroute.AppmeshRouteSpecHttpRouteAction{
							WeightedTarget: []*appmeshroute.AppmeshRouteSpecHttpRouteActionWeightedTarget{{
								VirtualNode: node.Name(),
								Weight:      jsii.Number(100),
							}},
						},
					},
				},
			})
			provider = &appmeshvirtualservice.AppmeshVirtualServiceSpecProvider{
				VirtualRouter: &appmeshvirtualservice.AppmeshVirtualServiceSpecProviderVirtualRouter{VirtualRouterName: router.Name()},
			}
			dependsOn = append(dependsOn, rt)
		}
		vs := appmeshvirtualservice.NewAppmeshVirtualService(c, jsii.String(s.Name+"-service"), &appmeshvirtualservice.AppmeshVirtualServiceConfig{
			Name:      jsii.String(virtualName),
			MeshName:  m.Mesh.Name(),
			Spec:      &appmeshvirtualservice.AppmeshVirtualServiceSpec{Provider: provider},
			DependsOn: &dependsOn,
		})
		m.Nodes[s.Name] = &MeshNode{
			VirtualNode: node, VirtualService: vs, Registry: registry, VirtualServiceName: virtualName,
			VirtualNodeARN: fmt.Sprintf("arn:%s:appmesh:%s:%s:mesh/%s/virtualNode/%s", partition(p.Region), p.Region, p.Account, p.Name, s.Name),
		}
	}
	return m
}
