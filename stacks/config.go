package stacks

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"herald/services/contract"
)

// MeshMode selects how the services are placed in the service namespace.
type MeshMode string

const (
	// MeshServiceConnect is ECS Service Connect, AWS's successor to App Mesh.
	MeshServiceConnect MeshMode = "serviceconnect"
	// MeshAppMesh is AWS App Mesh with an Envoy sidecar per task. AWS ended
	// App Mesh on 2026-09-30: the mode is synthesized and tested, and
	// cannot be deployed.
	MeshAppMesh MeshMode = "appmesh"
)

// AppMeshDeprecation is printed at synth time, attached to every stack that
// selects App Mesh, and is the value of its mesh_notice output.
const AppMeshDeprecation = "AWS ended App Mesh on 2026-09-30: a stack in the appmesh mesh mode " +
	"cannot be deployed any more (creating aws_appmesh_mesh fails); the mode is kept, synthesized " +
	"and tested for parity with the original design. Deploy Mesh.Mode \"serviceconnect\" (ECS Service Connect)"

// Environment is one deployment of Herald: its own stack, account, region and
// sizing. Environments are declared in environments.go. Zero values mean "the
// default"; WithDefaults shows every default and Validate names the field of
// every bad value.
type Environment struct {
	// Name is short (lower-case letters and digits, at most 10) because it
	// prefixes resource names with tight limits: the stack is "herald-<Name>".
	Name string
	// Account is the 12-digit AWS account the stack deploys into; the AWS
	// provider refuses credentials of any other account.
	Account string
	// Region is the AWS region, e.g. "eu-west-1".
	Region string
	// Tags are added to every resource that takes tags.
	Tags map[string]string

	State         StateConfig
	Network       NetworkConfig
	Mesh          MeshConfig
	Ingress       IngressConfig
	Queue         QueueConfig
	Store         StoreConfig
	Email         EmailConfig
	Repositories  RepositoryConfig
	API           ServiceConfig
	Sender        ServiceConfig
	Observability ObservabilityConfig
	// CI is the GitHub Actions role of the deployed-stack suite (ci.go);
	// off by default.
	CI CIConfig
}

// StateConfig says where Terraform keeps the stack's state.
type StateConfig struct {
	// Bucket is the S3 bucket for remote state; empty keeps state in a local
	// file terraform.<stack>.tfstate next to cdktf.json.
	Bucket string
	// Key is the object key; default "herald/<stack>.tfstate" (a mesh-mode
	// variant appends "-<mode>" to a key given here).
	Key string
	// Region of the bucket; default the environment's region.
	Region string
	// LockTable is a DynamoDB table (partition key "LockID") used for state
	// locking; works with Terraform >= 1.5.
	LockTable string
	// UseLockfile locks with an S3 lock file instead (Terraform >= 1.10).
	UseLockfile bool
}

// NetworkConfig describes the VPC the tasks run in.
type NetworkConfig struct {
	// CIDR of the new VPC; default "10.0.0.0/16". Ignored with Existing.
	CIDR string
	// AZCount is the number of availability zones; default 2, at least 2
	// because an Application Load Balancer needs two.
	AZCount int
	// SubnetNewBits is added to the VPC prefix length for each subnet;
	// default 4 (a /16 VPC gets /20 subnets). One public and one private
	// subnet per AZ must fit.
	SubnetNewBits int
	// NATGateways is the number of NAT gateways: 1 (shared) up to AZCount
	// (one per AZ); default 1. The sender reaches SES through NAT.
	NATGateways int
	// SkipEndpoints leaves out the VPC endpoints (for an existing VPC that
	// already has them: interface endpoints with private DNS cannot be
	// created twice).
	SkipEndpoints bool
	// SkipFlowLogs leaves out VPC flow logs (always off with Existing).
	SkipFlowLogs bool
	// Existing uses a VPC and subnets made elsewhere instead of a new VPC.
	Existing *ExistingNetwork
}

// ExistingNetwork names a VPC made outside this stack.
type ExistingNetwork struct {
	VPCID            string
	PublicSubnetIDs  []string // for the load balancer, at least 2 AZs
	PrivateSubnetIDs []string // for the tasks, with a route to a NAT gateway
	// PrivateRouteTableIDs get the S3 gateway endpoint (ECR image layers).
	PrivateRouteTableIDs []string
}

// MeshConfig selects and tunes the service mesh.
type MeshConfig struct {
	// Mode is "serviceconnect" (default) or "appmesh".
	Mode MeshMode
	// EnvoyImage is the App Mesh Envoy image (appmesh only); default AWS's
	// image for the region in account 840364872350 (opt-in regions publish it
	// from other accounts: set it here for those).
	EnvoyImage string
	// EgressFilter of the mesh (appmesh only): "DROP_ALL" (default) or
	// "ALLOW_ALL". AWS API traffic on 443 bypasses the proxy either way.
	EgressFilter string
}

// IngressConfig shapes the Application Load Balancer in front of the API.
// The API's clients send API keys, so no environment serves plain HTTP to
// the whole internet: an environment has a certificate (HTTPS, HTTP only
// redirects), or an internal load balancer, or an allow-list of the
// networks its clients are in. Validate refuses anything else.
type IngressConfig struct {
	// CertificateARN of an ACM certificate for Domain (or a name the
	// organisation points at the load balancer): HTTPS on 443, HTTP on 80
	// only redirects to it. Empty: plain HTTP on port 80, allowed only with
	// Internal or an AllowedCIDRs allow-list.
	CertificateARN string
	// Domain is the name clients call, e.g. "api.herald.example.com"
	// (needs CertificateARN and HostedZoneID): the stack creates its alias
	// record and api_url becomes https://<Domain>.
	Domain string
	// HostedZoneID is the Route 53 hosted zone that holds Domain.
	HostedZoneID string
	// Internal makes the load balancer reachable only from inside the VPC
	// (and networks routed to it).
	Internal bool
	// AllowedCIDRs may reach the listeners (IPv4). Default: 0.0.0.0/0 with
	// a certificate, the private ranges of RFC 1918 for an internal load
	// balancer; required otherwise, and then no block may be wider than /8.
	AllowedCIDRs []string
	// DeletionProtection on the load balancer.
	DeletionProtection bool
	// AccessLogs of the load balancer, to an S3 bucket of the stack.
	AccessLogs AccessLogConfig
}

// AccessLogConfig turns on the load balancer's access logs.
type AccessLogConfig struct {
	// Enabled creates the bucket "<stack>-lb-logs-<account>" (SSE-S3, the
	// only encryption ALB log delivery supports; public access blocked;
	// TLS only) and delivers the logs to it.
	Enabled bool
	// RetentionDays before a log object expires; default 90.
	RetentionDays int
	// ForceDestroy lets destroy delete the bucket with its logs.
	ForceDestroy bool
}

// QueueConfig shapes the notification queue and its dead-letter queue.
type QueueConfig struct {
	// MaxReceiveCount before SQS moves a message to the DLQ; default 5.
	MaxReceiveCount int
	// Retention of the queue; default 4 days.
	Retention time.Duration
	// DLQRetention must be longer than Retention; default 14 days (the SQS
	// maximum), so a message that arrives late in the DLQ still gets days.
	DLQRetention time.Duration
	// MaxMessageBytes is the queue's MaximumMessageSize and the API's
	// HERALD_MAX_MESSAGE_BYTES; default 262144.
	MaxMessageBytes int
	// RetryWindow is how long the sender retries a transiently failing
	// message after its first attempt (HERALD_RETRY_WINDOW); default 12h.
	// Retention must exceed it by a day (retry.go).
	RetryWindow time.Duration
}

// StoreConfig shapes the state store, one DynamoDB table of Idempotency-Key
// records and notification status (services/internal/store/DESIGN.md).
type StoreConfig struct {
	// StatusTTL is HERALD_STATUS_TTL: how long a notification's status is
	// kept, and a redelivered message recognised as sent. Default the
	// contract's (30 days); at least Queue.Retention + Queue.DLQRetention,
	// the longest a message can come back (redriven from the DLQ).
	StatusTTL time.Duration
	// PointInTimeRecovery keeps continuous backups (35 days).
	PointInTimeRecovery bool
	// DeletionProtection refuses to delete the table (a destroy) until it
	// is turned off and deployed.
	DeletionProtection bool
}

// EmailConfig is how mail leaves Herald.
type EmailConfig struct {
	// Transport is "ses" (default) or "smtp".
	Transport string
	// Identity is the SES sending identity, a domain ("example.com") or an
	// address; required with ses. The sender may send only as this identity.
	Identity string
	// ManageIdentity creates the identity in this stack (verify it through
	// DNS afterwards); false expects it to exist already.
	ManageIdentity bool
	// ConfigurationSet creates an SES configuration set "<stack>" and hands
	// its name to the sender.
	ConfigurationSet bool
	// DefaultFrom is the sender address used when a request has none
	// (HERALD_DEFAULT_FROM, from an SSM parameter). Required.
	DefaultFrom string
	// AllowedFrom lists addresses or "@domain" a request may use as from;
	// default only DefaultFrom.
	AllowedFrom []string
	// SMTPAddr is "host:port" of the SMTP relay (smtp only).
	SMTPAddr string
	// SendTimeout bounds one send (HERALD_SEND_TIMEOUT); the queue's
	// visibility timeout is derived from it. Default 10s.
	SendTimeout time.Duration
	// SendRate is the account's sends per second for all sender tasks
	// together (HERALD_SEND_RATE, from an SSM parameter); 0 uses the SES
	// account's maximum send rate. Each task starts at it divided by
	// Sender.MinTasks and adapts.
	SendRate float64
	// SandboxRecipients are verified SES identities (addresses or
	// domains) mail may go to while the account is in the SES sandbox,
	// where SES authorizes a send against the recipients' identities too;
	// the sender may send to them. Leave empty once the account has
	// production access.
	SandboxRecipients []string
}

// RepositoryConfig shapes the ECR repositories.
type RepositoryConfig struct {
	// DefaultTag is used when a service has no Image: the stack's own
	// repository at this tag; default "initial". Tags are immutable, so
	// publish each build under a new tag or, better, deploy by digest.
	DefaultTag string
	// KeepImages is how many images a repository keeps; default 30.
	KeepImages int
	// ForceDelete lets `cdktf destroy` delete repositories that hold images.
	ForceDelete bool
}

// ServiceConfig sizes one of the two services.
type ServiceConfig struct {
	// Image is "<repository>@sha256:<digest>" (preferred) or
	// "<repository>:<tag>". Empty: the stack's own ECR repository at
	// Repositories.DefaultTag. HERALD_API_IMAGE / HERALD_SENDER_IMAGE (or
	// HERALD_<ENV>_API_IMAGE ...) override it at synth time.
	Image string
	// CPU units and Memory MiB of the task: a Fargate pair (256/512 ...).
	// Default 256 and 512.
	CPU    int
	Memory int
	// MinTasks and MaxTasks bound autoscaling; default 1 and 2.
	MinTasks int
	MaxTasks int
	// CPUTarget is the target of the ECSServiceAverageCPUUtilization
	// tracking policy, 1..100; default 70.
	CPUTarget int
	// BacklogPerTask is the visible messages per running task the sender
	// scales to; default 100. Sender only.
	BacklogPerTask int
	// LogLevel is HERALD_LOG_LEVEL: debug, info (default), warn, error.
	LogLevel string
	// Tuning sets further variables of the service: only those
	// services/README.md marks tunable (contract.Tunables), each checked by
	// the service's own parser. Variables the stack sets itself and secrets
	// are refused.
	Tuning map[string]string
}

// ObservabilityConfig shapes logs, the dashboard and the alarms.
type ObservabilityConfig struct {
	// LogRetentionDays is one of CloudWatch's retention values; default 30.
	LogRetentionDays int
	// AlarmEmail is subscribed to the alarm topic when set (the address has
	// to confirm the subscription).
	AlarmEmail string
	// OldestMessageAge over which the queue alarm fires; default 10 minutes.
	OldestMessageAge time.Duration
	// API5xxPercent of requests answered 5xx over which the API alarm fires;
	// default 5.
	API5xxPercent float64
	// SenderFailurePercent of sends failed over which the sender alarm
	// fires; default 5.
	SenderFailurePercent float64
}

// Defaults not expressed as zero values.
const (
	defaultCIDR            = "10.0.0.0/16"
	defaultSubnetNewBits   = 4
	defaultMaxReceiveCount = 5
	defaultRetention       = 4 * 24 * time.Hour
	defaultDLQRetention    = 14 * 24 * time.Hour
	maxQueueRetention      = 14 * 24 * time.Hour
	minQueueRetention      = time.Minute
	// maxQueueMessageBytes is the largest MaximumMessageSize the AWS
	// provider (5.88) takes; the API takes up to 1 MiB.
	maxQueueMessageBytes    = 262144
	visibilityPerSend       = 6 // visibility timeout = 6 x send timeout
	defaultImageTag         = "initial"
	defaultKeepImages       = 30
	defaultCPU              = 256
	defaultMemory           = 512
	defaultCPUTarget        = 70
	defaultBacklogPerTask   = 100
	defaultLogRetentionDays = 30
	defaultOldestMessageAge = 10 * time.Minute
	defaultErrorPercent     = 5
	defaultAccessLogDays    = 90
	// minAllowListPrefix is the widest block an allow-list may hold in
	// front of plain HTTP: anything wider is the internet, not a network
	// of the organisation.
	minAllowListPrefix = 8
	envoyAccount       = "840364872350"
	envoyVersion       = "v1.29.6.0-prod"
	maxNameLength      = 10
)

// WithDefaults returns a copy of e with every unset field at its default.
func (e Environment) WithDefaults() Environment {
	e.Tags = mergeTags(map[string]string{
		"Project":      "herald",
		EnvironmentTag: e.Name,
		"ManagedBy":    "cdktf",
	}, e.Tags)

	if e.State.Bucket != "" {
		e.State.Region = orString(e.State.Region, e.Region)
	}

	e.Network = e.Network.withDefaults()

	m := &e.Mesh
	m.Mode = MeshMode(orString(string(m.Mode), string(MeshServiceConnect)))
	if m.Mode == MeshAppMesh {
		m.EnvoyImage = orString(m.EnvoyImage, fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com/aws-appmesh-envoy:%s", envoyAccount, e.Region, envoyVersion))
		m.EgressFilter = orString(m.EgressFilter, "DROP_ALL")
	}

	e.Ingress = e.Ingress.withDefaults()

	q := &e.Queue
	q.MaxReceiveCount = orInt(q.MaxReceiveCount, defaultMaxReceiveCount)
	q.Retention = orDuration(q.Retention, defaultRetention)
	q.DLQRetention = orDuration(q.DLQRetention, defaultDLQRetention)
	q.MaxMessageBytes = orInt(q.MaxMessageBytes, contract.MaxMessageBytes.Default)
	q.RetryWindow = orDuration(q.RetryWindow, contract.RetryWindow.Default)

	e.Store.StatusTTL = orDuration(e.Store.StatusTTL, contract.StatusTTL.Default)

	em := &e.Email
	em.Transport = orString(em.Transport, "ses")
	em.SendTimeout = orDuration(em.SendTimeout, contract.SendTimeout.Default)
	if len(em.AllowedFrom) == 0 && em.DefaultFrom != "" {
		em.AllowedFrom = []string{em.DefaultFrom}
	}

	r := &e.Repositories
	r.DefaultTag = orString(r.DefaultTag, defaultImageTag)
	r.KeepImages = orInt(r.KeepImages, defaultKeepImages)

	e.API = e.API.withDefaults(false)
	e.Sender = e.Sender.withDefaults(true)

	o := &e.Observability
	o.LogRetentionDays = orInt(o.LogRetentionDays, defaultLogRetentionDays)
	o.OldestMessageAge = orDuration(o.OldestMessageAge, defaultOldestMessageAge)
	if o.API5xxPercent == 0 {
		o.API5xxPercent = defaultErrorPercent
	}
	if o.SenderFailurePercent == 0 {
		o.SenderFailurePercent = defaultErrorPercent
	}
	e.CI = e.CI.withDefaults()
	return e
}

func (n NetworkConfig) withDefaults() NetworkConfig {
	if n.Existing != nil {
		n.SkipFlowLogs = true // the VPC's owner decides about its flow logs
		return n
	}
	n.CIDR = orString(n.CIDR, defaultCIDR)
	n.AZCount = orInt(n.AZCount, 2)
	n.SubnetNewBits = orInt(n.SubnetNewBits, defaultSubnetNewBits)
	n.NATGateways = orInt(n.NATGateways, 1)
	return n
}

// privateNetworks are the RFC 1918 ranges: who may reach an internal load
// balancer by default (the VPC, and networks peered or routed to it).
var privateNetworks = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}

func (in IngressConfig) withDefaults() IngressConfig {
	if len(in.AllowedCIDRs) == 0 {
		switch {
		case in.CertificateARN != "":
			in.AllowedCIDRs = []string{"0.0.0.0/0"}
		case in.Internal:
			in.AllowedCIDRs = slices.Clone(privateNetworks)
		}
	}
	if in.AccessLogs.Enabled {
		in.AccessLogs.RetentionDays = orInt(in.AccessLogs.RetentionDays, defaultAccessLogDays)
	}
	return in
}

func (s ServiceConfig) withDefaults(sender bool) ServiceConfig {
	s.CPU = orInt(s.CPU, defaultCPU)
	s.Memory = orInt(s.Memory, defaultMemory)
	s.MinTasks = orInt(s.MinTasks, 1)
	s.MaxTasks = orInt(s.MaxTasks, max(2, s.MinTasks))
	s.CPUTarget = orInt(s.CPUTarget, defaultCPUTarget)
	if sender {
		s.BacklogPerTask = orInt(s.BacklogPerTask, defaultBacklogPerTask)
	}
	s.LogLevel = orString(s.LogLevel, contract.LogLevel.Default)
	return s
}

// VisibilityTimeout is the queue's visibility timeout: a multiple of the
// sender's send timeout, so that a message being sent is not handed to a
// second worker (the sender also extends it while it works).
func (em EmailConfig) VisibilityTimeout() time.Duration {
	return visibilityPerSend * em.SendTimeout
}

// Validate checks the environment with its defaults applied and returns every
// problem, each naming its field.
func (e Environment) Validate() error {
	return e.WithDefaults().validate()
}

// ValidateAll validates every environment and that their names are unique.
func ValidateAll(envs []Environment) error {
	var errs []error
	seen := map[string]bool{}
	for i, e := range envs {
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("environments[%d].Name: %q is declared twice", i, e.Name))
		}
		seen[e.Name] = true
		if err := e.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type problems struct {
	env  string
	errs []error
}

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("environment %q: %s: %s", p.env, field, fmt.Sprintf(format, args...)))
}

func (p *problems) addErr(field string, err error) {
	if err != nil {
		p.add(field, "%v", err)
	}
}

var (
	namePattern       = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	accountPattern    = regexp.MustCompile(`^[0-9]{12}$`)
	regionPattern     = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$`)
	vpcIDPattern      = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	subnetPattern     = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	rtbPattern        = regexp.MustCompile(`^rtb-[0-9a-f]{8,17}$`)
	certPattern       = regexp.MustCompile(`^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$`)
	bucketPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	hostedZonePattern = regexp.MustCompile(`^Z[A-Z0-9]{1,32}$`)
	domainPattern     = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	hostPortRegexp    = regexp.MustCompile(`^[A-Za-z0-9.-]+:[0-9]{1,5}$`)
)

func (e Environment) validate() error {
	p := &problems{env: e.Name}
	if !namePattern.MatchString(e.Name) || len(e.Name) > maxNameLength {
		p.add("Name", "%q must be lower-case letters and digits, starting with a letter, at most %d long", e.Name, maxNameLength)
	}
	if !accountPattern.MatchString(e.Account) {
		p.add("Account", "%q is not a 12-digit AWS account ID", e.Account)
	}
	if !regionPattern.MatchString(e.Region) {
		p.add("Region", "%q is not an AWS region such as eu-west-1", e.Region)
	}
	e.validateState(p)
	e.validateNetwork(p)
	e.validateMesh(p)
	e.validateIngress(p)
	e.validateQueue(p)
	e.validateRetry(p)
	e.validateStore(p)
	e.validateEmail(p)
	e.validateRepositories(p)
	validateService(p, "API", e.API, false)
	validateService(p, "Sender", e.Sender, true)
	e.validateObservability(p)
	e.validateCI(p)
	if len(p.errs) == 0 {
		// Field by field all is well; now as the services read it all.
		e.checkVariables(p)
	}
	return errors.Join(p.errs...)
}

func (e Environment) validateState(p *problems) {
	s := e.State
	if s.Bucket == "" {
		if s.LockTable != "" || s.UseLockfile || s.Key != "" {
			p.add("State.Bucket", "required when State.Key, State.LockTable or State.UseLockfile is set")
		}
		return
	}
	if !bucketPattern.MatchString(s.Bucket) {
		p.add("State.Bucket", "%q is not an S3 bucket name", s.Bucket)
	}
	if s.LockTable == "" && !s.UseLockfile {
		p.add("State.LockTable", "remote state needs locking: set State.LockTable (DynamoDB) or State.UseLockfile")
	}
	if !regionPattern.MatchString(s.Region) {
		p.add("State.Region", "%q is not an AWS region", s.Region)
	}
}

func (e Environment) validateNetwork(p *problems) {
	n := e.Network
	if n.Existing != nil {
		x := n.Existing
		if !vpcIDPattern.MatchString(x.VPCID) {
			p.add("Network.Existing.VPCID", "%q is not a VPC ID such as vpc-0123456789abcdef0", x.VPCID)
		}
		checkIDs(p, "Network.Existing.PublicSubnetIDs", x.PublicSubnetIDs, subnetPattern, 2, "the load balancer needs subnets in at least 2 availability zones")
		checkIDs(p, "Network.Existing.PrivateSubnetIDs", x.PrivateSubnetIDs, subnetPattern, 2, "the tasks need subnets in at least 2 availability zones")
		if !n.SkipEndpoints {
			checkIDs(p, "Network.Existing.PrivateRouteTableIDs", x.PrivateRouteTableIDs, rtbPattern, 1, "the S3 gateway endpoint needs the private route tables (or set Network.SkipEndpoints)")
		}
		if n.CIDR != "" || n.AZCount != 0 || n.NATGateways != 0 {
			p.add("Network.Existing", "CIDR, AZCount and NATGateways describe a new VPC; leave them unset with an existing one")
		}
		return
	}
	if n.AZCount < 2 || n.AZCount > 6 {
		p.add("Network.AZCount", "%d availability zones: need 2..6 (an Application Load Balancer needs at least 2)", n.AZCount)
	}
	if n.NATGateways < 1 || n.NATGateways > max(n.AZCount, 1) {
		p.add("Network.NATGateways", "%d: need 1..AZCount (%d); the sender reaches SES through NAT", n.NATGateways, n.AZCount)
	}
	if _, _, err := SubnetPlan(n.CIDR, n.AZCount, n.SubnetNewBits); err != nil {
		p.addErr("Network.CIDR", err)
	}
}

func checkIDs(p *problems, field string, ids []string, pattern *regexp.Regexp, least int, why string) {
	if len(ids) < least {
		p.add(field, "%d given: %s", len(ids), why)
	}
	for _, id := range ids {
		if !pattern.MatchString(id) {
			p.add(field, "%q is not a valid ID", id)
		}
	}
}

// SubnetPlan carves one public and one private subnet per AZ out of the VPC
// CIDR: public subnets first, then private ones, each newBits longer than the
// VPC prefix. It fails when the CIDR is not an IPv4 network AWS accepts for a
// VPC (/16 to /28) or when the subnets do not fit.
func SubnetPlan(cidr string, azs, newBits int) (public, private []string, err error) {
	prefix, perr := netip.ParsePrefix(cidr)
	switch {
	case perr != nil:
		return nil, nil, fmt.Errorf("%q is not a CIDR block: %w", cidr, perr)
	case !prefix.Addr().Is4():
		return nil, nil, fmt.Errorf("%q: the VPC needs an IPv4 CIDR block", cidr)
	case prefix.Masked() != prefix:
		return nil, nil, fmt.Errorf("%q has host bits set; did you mean %s?", cidr, prefix.Masked())
	case prefix.Bits() < 16 || prefix.Bits() > 28:
		return nil, nil, fmt.Errorf("%q: AWS VPCs are /16 to /28", cidr)
	case newBits < 1:
		return nil, nil, fmt.Errorf("SubnetNewBits %d must be at least 1", newBits)
	}
	subnetBits := prefix.Bits() + newBits
	if subnetBits > 28 {
		return nil, nil, fmt.Errorf("%q with SubnetNewBits %d gives /%d subnets; AWS subnets are at most /28", cidr, newBits, subnetBits)
	}
	if need := 2 * azs; need > 1<<newBits {
		return nil, nil, fmt.Errorf("%q does not fit %d subnets (public and private in %d AZs) of /%d; use a larger CIDR or more SubnetNewBits", cidr, need, azs, subnetBits)
	}
	size := uint32(1) << (32 - subnetBits)
	base := prefix.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	subnet := func(i int) string {
		a := start + uint32(i)*size
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), subnetBits).String()
	}
	for i := range azs {
		public = append(public, subnet(i))
		private = append(private, subnet(azs+i))
	}
	return public, private, nil
}

func (e Environment) validateMesh(p *problems) {
	m := e.Mesh
	switch m.Mode {
	case MeshServiceConnect:
		if m.EnvoyImage != "" || m.EgressFilter != "" {
			p.add("Mesh", "EnvoyImage and EgressFilter apply to Mesh.Mode %q only", MeshAppMesh)
		}
	case MeshAppMesh:
		if _, err := ParseImage(m.EnvoyImage); err != nil {
			p.addErr("Mesh.EnvoyImage", err)
		}
		if m.EgressFilter != "DROP_ALL" && m.EgressFilter != "ALLOW_ALL" {
			p.add("Mesh.EgressFilter", "%q is not DROP_ALL or ALLOW_ALL", m.EgressFilter)
		}
	default:
		p.add("Mesh.Mode", "unknown mesh mode %q: want %q or %q", m.Mode, MeshServiceConnect, MeshAppMesh)
	}
}

func (e Environment) validateIngress(p *problems) {
	in := e.Ingress
	if in.CertificateARN != "" && !certPattern.MatchString(in.CertificateARN) {
		p.add("Ingress.CertificateARN", "%q is not an ACM certificate ARN", in.CertificateARN)
	}
	if in.Domain != "" {
		if !domainPattern.MatchString(in.Domain) {
			p.add("Ingress.Domain", "%q is not a DNS name", in.Domain)
		}
		if in.CertificateARN == "" {
			p.add("Ingress.Domain", "%q needs Ingress.CertificateARN: the API is served on it over HTTPS", in.Domain)
		}
		if in.HostedZoneID == "" {
			p.add("Ingress.HostedZoneID", "required with Ingress.Domain: the Route 53 zone that holds %q", in.Domain)
		}
	}
	if in.HostedZoneID != "" {
		if !hostedZonePattern.MatchString(in.HostedZoneID) {
			p.add("Ingress.HostedZoneID", "%q is not a Route 53 hosted zone ID such as Z0123456789ABCDEFGHIJ", in.HostedZoneID)
		}
		if in.Domain == "" {
			p.add("Ingress.HostedZoneID", "set only with Ingress.Domain")
		}
	}
	for _, c := range in.AllowedCIDRs {
		pr, err := netip.ParsePrefix(c)
		switch {
		case err != nil || pr.Masked() != pr:
			p.add("Ingress.AllowedCIDRs", "%q is not a CIDR block", c)
		case !pr.Addr().Is4():
			p.add("Ingress.AllowedCIDRs", "%q: the listeners' security group rules take IPv4 blocks", c)
		case in.CertificateARN == "" && !in.Internal && pr.Bits() < minAllowListPrefix:
			p.add("Ingress.AllowedCIDRs", "%q with plain HTTP would send API keys in clear text across the internet: list your clients' networks (/%d or narrower), or set Ingress.CertificateARN for HTTPS, or Ingress.Internal", c, minAllowListPrefix)
		}
	}
	if in.CertificateARN == "" && !in.Internal && len(in.AllowedCIDRs) == 0 {
		p.add("Ingress", "no listener may serve plain HTTP to the whole internet: set Ingress.CertificateARN (HTTPS; HTTP then redirects), Ingress.Internal (reachable from the VPC only), or Ingress.AllowedCIDRs (an allow-list of your clients' networks)")
	}
	if a := in.AccessLogs; a.Enabled && (a.RetentionDays < 1 || a.RetentionDays > 3650) {
		p.add("Ingress.AccessLogs.RetentionDays", "%d is outside 1..3650", a.RetentionDays)
	}
	if a := in.AccessLogs; !a.Enabled && (a.RetentionDays != 0 || a.ForceDestroy) {
		p.add("Ingress.AccessLogs", "RetentionDays and ForceDestroy apply only with Ingress.AccessLogs.Enabled")
	}
}

func (e Environment) validateQueue(p *problems) {
	q := e.Queue
	if q.MaxReceiveCount < 1 || q.MaxReceiveCount > 1000 {
		p.add("Queue.MaxReceiveCount", "%d is outside 1..1000", q.MaxReceiveCount)
	}
	checkRetention(p, "Queue.Retention", q.Retention)
	checkRetention(p, "Queue.DLQRetention", q.DLQRetention)
	if q.DLQRetention <= q.Retention {
		p.add("Queue.DLQRetention", "%s must be longer than Queue.Retention %s, or messages expire in the DLQ before anyone looks", q.DLQRetention, q.Retention)
	}
	if err := contract.MaxMessageBytes.Check(q.MaxMessageBytes); err != nil {
		p.addErr("Queue.MaxMessageBytes", err)
	} else if q.MaxMessageBytes > maxQueueMessageBytes {
		p.add("Queue.MaxMessageBytes", "%d is over %d, the largest queue message the AWS provider takes", q.MaxMessageBytes, maxQueueMessageBytes)
	}
}

// validateStore checks the status TTL with the setting's own bounds, and
// against the queues: a message can come back for as long as the queue and
// then the DLQ keep it (redriven after it was sent but not deleted), and
// the sender must still recognise it as sent.
func (e Environment) validateStore(p *problems) {
	ttl := e.Store.StatusTTL
	if err := contract.StatusTTL.Check(ttl); err != nil {
		p.addErr("Store.StatusTTL", err)
		return
	}
	if back := e.Queue.Retention + e.Queue.DLQRetention; ttl < back {
		p.add("Store.StatusTTL", "%s is shorter than Queue.Retention + Queue.DLQRetention (%s): a message redriven from the DLQ after its status expired would be sent again", ttl, back)
	}
}

// FeedbackEnabled reports whether SES's events reach the sender: with the
// SES transport and the stack's configuration set, whose events they are.
func (em EmailConfig) FeedbackEnabled() bool {
	return em.Transport == "ses" && em.ConfigurationSet
}

func checkRetention(p *problems, field string, d time.Duration) {
	if d < minQueueRetention || d > maxQueueRetention || d%time.Second != 0 {
		p.add(field, "%s is outside 1m..336h (14 days) in whole seconds", d)
	}
}

func (e Environment) validateEmail(p *problems) {
	em := e.Email
	switch {
	case !isAddress(em.DefaultFrom):
		// Bare: it is an SES condition value too.
		p.add("Email.DefaultFrom", "%q is not an email address", em.DefaultFrom)
	case contract.DefaultFrom.Validate(em.DefaultFrom) != nil:
		p.addErr("Email.DefaultFrom", contract.DefaultFrom.Validate(em.DefaultFrom))
	}
	if _, err := contract.AllowedFrom.Parse(strings.Join(em.AllowedFrom, ",")); err != nil {
		p.addErr("Email.AllowedFrom", err)
	}
	// The sender reads the send timeout by the contract's bounds, and the
	// visibility timeout derived from it; SQS counts the latter in seconds.
	if err := contract.SendTimeout.Check(em.SendTimeout); err != nil {
		p.addErr("Email.SendTimeout", err)
	} else if em.SendTimeout%time.Second != 0 {
		p.add("Email.SendTimeout", "%s is not whole seconds", em.SendTimeout)
	} else if err := contract.VisibilityTimeout.Check(em.VisibilityTimeout()); err != nil {
		p.add("Email.SendTimeout", "gives the visibility timeout %d times it: %v", visibilityPerSend, err)
	}
	if err := contract.SendRate.Check(em.SendRate); err != nil {
		p.add("Email.SendRate", "%v: 0 (the SES account's rate) or more", err)
	}
	switch em.Transport {
	case "ses":
		if em.SMTPAddr != "" {
			p.add("Email.SMTPAddr", "set only with Email.Transport \"smtp\"")
		}
	case "smtp":
		if !hostPortRegexp.MatchString(em.SMTPAddr) {
			p.add("Email.SMTPAddr", "%q is not host:port", em.SMTPAddr)
		}
	default:
		p.add("Email.Transport", "%q is not ses or smtp", em.Transport)
	}
	for _, r := range em.SandboxRecipients {
		if !isAddress(r) && !domainPattern.MatchString(r) {
			p.add("Email.SandboxRecipients", "%q is neither an address nor a domain", r)
		}
	}
	if len(em.SandboxRecipients) > 0 && em.Transport != "ses" {
		p.add("Email.SandboxRecipients", "apply to Email.Transport \"ses\" only")
	}
	if em.Identity == "" {
		if em.Transport == "ses" || em.ManageIdentity || em.ConfigurationSet {
			p.add("Email.Identity", "required with SES (a domain such as example.com or an address)")
		}
		return
	}
	if !isAddress(em.Identity) && !domainPattern.MatchString(em.Identity) {
		p.add("Email.Identity", "%q is neither a domain nor an address", em.Identity)
		return
	}
	if list, err := em.allowedFrom(); em.Transport == "ses" && err == nil {
		for _, a := range list.Entries() {
			if !identityCovers(em.Identity, a) {
				p.add("Email.AllowedFrom", "%q is not covered by the SES identity %q the sender may use", a, em.Identity)
			}
		}
	}
}

func isAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// identityCovers reports whether SES identity (a domain or an address) may
// send as from (an address or "@domain").
func identityCovers(identity, from string) bool {
	from = strings.ToLower(from)
	identity = strings.ToLower(identity)
	if strings.Contains(identity, "@") {
		return from == identity
	}
	_, domain, ok := strings.Cut(from, "@")
	return ok && (domain == identity || strings.HasSuffix(domain, "."+identity))
}

func (e Environment) validateRepositories(p *problems) {
	r := e.Repositories
	if !tagPattern.MatchString(r.DefaultTag) {
		p.add("Repositories.DefaultTag", "%q is not an image tag", r.DefaultTag)
	}
	if r.KeepImages < 1 || r.KeepImages > 1000 {
		p.add("Repositories.KeepImages", "%d is outside 1..1000", r.KeepImages)
	}
}

// fargateMemory lists the memory sizes (MiB) Fargate offers per CPU size.
var fargateMemory = map[int][]int{
	256:   {512, 1024, 2048},
	512:   steps(1024, 4096, 1024),
	1024:  steps(2048, 8192, 1024),
	2048:  steps(4096, 16384, 1024),
	4096:  steps(8192, 30720, 1024),
	8192:  steps(16384, 61440, 4096),
	16384: steps(32768, 122880, 8192),
}

func steps(from, to, step int) []int {
	var out []int
	for v := from; v <= to; v += step {
		out = append(out, v)
	}
	return out
}

// CheckFargateSize fails unless cpu/memory is a task size Fargate offers.
func CheckFargateSize(cpu, memory int) error {
	mems, ok := fargateMemory[cpu]
	if !ok {
		cpus := make([]int, 0, len(fargateMemory))
		for c := range fargateMemory {
			cpus = append(cpus, c)
		}
		sort.Ints(cpus)
		return fmt.Errorf("CPU %d is not a Fargate size: want one of %v", cpu, cpus)
	}
	if !slices.Contains(mems, memory) {
		return fmt.Errorf("Memory %d MiB is not offered by Fargate with CPU %d: want %d..%d MiB in the steps AWS lists", memory, cpu, mems[0], mems[len(mems)-1])
	}
	return nil
}

func validateService(p *problems, name string, s ServiceConfig, sender bool) {
	if s.Image != "" {
		if _, err := ParseImage(s.Image); err != nil {
			p.addErr(name+".Image", err)
		}
	}
	if err := CheckFargateSize(s.CPU, s.Memory); err != nil {
		p.addErr(name+".CPU/"+name+".Memory", err)
	}
	if s.MinTasks < 1 {
		p.add(name+".MinTasks", "%d: at least one task must run", s.MinTasks)
	}
	if s.MaxTasks < s.MinTasks {
		p.add(name+".MaxTasks", "%d is below %s.MinTasks %d", s.MaxTasks, name, s.MinTasks)
	}
	if s.MaxTasks > 1000 {
		p.add(name+".MaxTasks", "%d is above 1000", s.MaxTasks)
	}
	if s.CPUTarget < 1 || s.CPUTarget > 100 {
		p.add(name+".CPUTarget", "%d%% is outside 1..100", s.CPUTarget)
	}
	if sender && s.BacklogPerTask < 1 {
		p.add(name+".BacklogPerTask", "%d: need at least 1 message per task", s.BacklogPerTask)
	}
	if !sender && s.BacklogPerTask != 0 {
		p.add(name+".BacklogPerTask", "only the sender scales on queue backlog")
	}
	if err := contract.LogLevel.Check(s.LogLevel); err != nil {
		p.add(name+".LogLevel", "%v: want debug, info, warn or error", err)
	}
	if sender {
		// HERALD_SENDER_TASKS: the tasks that share the send rate at first.
		if err := contract.SenderTasks.Check(s.MinTasks); err != nil {
			p.addErr(name+".MinTasks", err)
		}
	} else if err := contract.RateTasks.Check(s.MaxTasks); err != nil {
		// HERALD_RATE_TASKS: the rate limit's divisor while the store fails.
		p.addErr(name+".MaxTasks", err)
	}
	service := contract.API
	if sender {
		service = contract.Sender
	}
	allowed := contract.Tunables(service)
	for _, k := range sortedKeys(s.Tuning) {
		field := name + ".Tuning[" + k + "]"
		setting, known := contract.Lookup(k)
		switch {
		case !slices.Contains(allowed, k) || !known:
			p.add(field, "not a tuning variable of %s (the stack sets the others, secrets come from Secrets Manager): want one of %s", service, strings.Join(allowed, ", "))
		case setting.Validate(s.Tuning[k]) != nil:
			p.addErr(field, setting.Validate(s.Tuning[k]))
		}
	}
}

// checkVariables reads both services' variables as the services will at
// start (with placeholders for the stack's resources): what no single field
// shows, such as a tuned HERALD_STALL_AFTER below the long-poll wait.
func (e Environment) checkVariables(p *problems) {
	vars, err := serviceVariables(e, placeholderSources(e))
	if err != nil {
		p.addErr("Email.AllowedFrom", err)
		return
	}
	for _, svc := range []struct {
		field   string
		service contract.Service
	}{{"API.Tuning", contract.API}, {"Sender.Tuning", contract.Sender}} {
		if err := vars[svc.service].check(svc.service); err != nil {
			p.add(svc.field, "%s would refuse its variables: %v", svc.service, err)
		}
	}
}

// logRetentionDays are the values CloudWatch Logs accepts.
var logRetentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

func (e Environment) validateObservability(p *problems) {
	o := e.Observability
	if !slices.Contains(logRetentionDays, o.LogRetentionDays) {
		p.add("Observability.LogRetentionDays", "%d is not a CloudWatch retention: want one of %v", o.LogRetentionDays, logRetentionDays)
	}
	if o.AlarmEmail != "" && !isAddress(o.AlarmEmail) {
		p.add("Observability.AlarmEmail", "%q is not an email address", o.AlarmEmail)
	}
	if o.OldestMessageAge < time.Minute || o.OldestMessageAge > e.Queue.Retention {
		p.add("Observability.OldestMessageAge", "%s is outside 1m..Queue.Retention (%s)", o.OldestMessageAge, e.Queue.Retention)
	}
	for _, t := range []struct {
		field string
		value float64
	}{{"Observability.API5xxPercent", o.API5xxPercent}, {"Observability.SenderFailurePercent", o.SenderFailurePercent}} {
		if !(t.value > 0 && t.value <= 100) {
			p.add(t.field, "%g%% is outside (0, 100]", t.value)
		}
	}
}

// StackID is the stack (and resource-name prefix) of an environment:
// "herald-<name>", or "herald-<name>-<mode>" for a mesh-mode variant.
func StackID(name string, variant MeshMode) string {
	if variant == "" {
		return "herald-" + name
	}
	return "herald-" + name + "-" + string(variant)
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func mergeTags(base, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
