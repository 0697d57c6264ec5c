package stacks

import (
	"strings"
	"testing"
	"time"
)

const testCertificate = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"

// validEnv is the smallest environment that validates: HTTPS (no
// environment serves plain HTTP to the internet) and an SES identity.
func validEnv() Environment {
	return Environment{
		Name:    "test",
		Account: "123456789012",
		Region:  "eu-west-1",
		Ingress: IngressConfig{CertificateARN: testCertificate},
		Email: EmailConfig{
			Identity:    "example.com",
			DefaultFrom: "no-reply@example.com",
		},
	}
}

func TestDeclaredEnvironmentsAreValid(t *testing.T) {
	envs := Environments()
	if err := ValidateAll(envs); err != nil {
		t.Fatalf("stacks/environments.go: %v", err)
	}
	names := map[string]bool{}
	for _, e := range envs {
		names[e.Name] = true
	}
	if !names["dev"] || !names["prod"] {
		t.Fatalf("want dev and prod declared, have %v", keys(names))
	}
}

func TestDefaults(t *testing.T) {
	e := validEnv().WithDefaults()
	checks := []struct {
		name      string
		got, want any
	}{
		{"mesh mode", e.Mesh.Mode, MeshServiceConnect},
		{"AZs", e.Network.AZCount, 2},
		{"NAT gateways", e.Network.NATGateways, 1},
		{"CIDR", e.Network.CIDR, "10.0.0.0/16"},
		{"max receive count", e.Queue.MaxReceiveCount, 5},
		{"DLQ retention", e.Queue.DLQRetention, 14 * 24 * time.Hour},
		{"message size", e.Queue.MaxMessageBytes, 262144},
		{"retry window", e.Queue.RetryWindow, 12 * time.Hour},
		{"send timeout", e.Email.SendTimeout, 10 * time.Second},
		{"visibility timeout", e.Email.VisibilityTimeout(), 60 * time.Second},
		{"CPU target API", e.API.CPUTarget, 70},
		{"CPU target sender", e.Sender.CPUTarget, 70},
		{"backlog API", e.API.BacklogPerTask, 0},
		{"backlog sender", e.Sender.BacklogPerTask, 100},
		{"log retention", e.Observability.LogRetentionDays, 30},
		{"allowed from", strings.Join(e.Email.AllowedFrom, ","), "no-reply@example.com"},
		{"ingress CIDRs with a certificate", strings.Join(e.Ingress.AllowedCIDRs, ","), "0.0.0.0/0"},
		{"image tag", e.Repositories.DefaultTag, "initial"},
		{"tag", e.Tags["Environment"], "test"},
		{"status TTL", e.Store.StatusTTL, 30 * 24 * time.Hour},
		{"point-in-time recovery", e.Store.PointInTimeRecovery, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if again := e.WithDefaults(); again.Network != e.Network || again.Queue != e.Queue {
		t.Error("WithDefaults is not idempotent")
	}
	internal := validEnv()
	internal.Ingress = IngressConfig{Internal: true}
	if got := strings.Join(internal.WithDefaults().Ingress.AllowedCIDRs, ","); got != "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16" {
		t.Errorf("an internal load balancer admits %s by default, want the private ranges", got)
	}
	plainHTTP := validEnv()
	plainHTTP.Ingress = IngressConfig{}
	if got := plainHTTP.WithDefaults().Ingress.AllowedCIDRs; len(got) != 0 {
		t.Errorf("plain HTTP on a public load balancer defaults to %v; it must be set explicitly", got)
	}
	logs := validEnv()
	logs.Ingress.AccessLogs.Enabled = true
	if got := logs.WithDefaults().Ingress.AccessLogs.RetentionDays; got != 90 {
		t.Errorf("access logs kept %d days by default, want 90", got)
	}
	// SES feedback comes with the configuration set, over SES only.
	withSet := validEnv()
	withSet.Email.ConfigurationSet = true
	smtp := withSet
	smtp.Email.Transport = "smtp"
	if !withSet.WithDefaults().Email.FeedbackEnabled() || smtp.WithDefaults().Email.FeedbackEnabled() || e.Email.FeedbackEnabled() {
		t.Error("feedback is on exactly with the ses transport and a configuration set")
	}
	appmesh := validEnv()
	appmesh.Mesh.Mode = MeshAppMesh
	a := appmesh.WithDefaults()
	if a.Mesh.EgressFilter != "DROP_ALL" || !strings.Contains(a.Mesh.EnvoyImage, ".dkr.ecr.eu-west-1.amazonaws.com/aws-appmesh-envoy:v") {
		t.Errorf("appmesh defaults: %+v", a.Mesh)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(e *Environment)
		field  string // the message names this field
		detail string // and says this
	}{
		{"fargate memory not offered", func(e *Environment) { e.API.CPU, e.API.Memory = 256, 4096 }, "API.CPU/API.Memory", "not offered by Fargate"},
		{"fargate cpu not a size", func(e *Environment) { e.Sender.CPU, e.Sender.Memory = 300, 1024 }, "Sender.CPU/Sender.Memory", "not a Fargate size"},
		{"min above max", func(e *Environment) { e.API.MinTasks, e.API.MaxTasks = 4, 2 }, "API.MaxTasks", "below API.MinTasks"},
		{"no tasks", func(e *Environment) { e.Sender.MinTasks, e.Sender.MaxTasks = -1, 2 }, "Sender.MinTasks", "at least one task"},
		{"cpu target above 100", func(e *Environment) { e.API.CPUTarget = 101 }, "API.CPUTarget", "outside 1..100"},
		{"cpu target below 1", func(e *Environment) { e.Sender.CPUTarget = -5 }, "Sender.CPUTarget", "outside 1..100"},
		{"unknown mesh mode", func(e *Environment) { e.Mesh.Mode = "istio" }, "Mesh.Mode", `unknown mesh mode "istio"`},
		{"envoy settings without app mesh", func(e *Environment) { e.Mesh.EgressFilter = "DROP_ALL" }, "Mesh", `"appmesh" only`},
		{"bad egress filter", func(e *Environment) { e.Mesh.Mode, e.Mesh.EgressFilter = MeshAppMesh, "OPEN" }, "Mesh.EgressFilter", "DROP_ALL or ALLOW_ALL"},
		{"cidr does not parse", func(e *Environment) { e.Network.CIDR = "10.0.0.0/33" }, "Network.CIDR", "not a CIDR block"},
		{"cidr too small for subnets", func(e *Environment) { e.Network.CIDR, e.Network.AZCount = "10.0.0.0/26", 3 }, "Network.CIDR", "AWS subnets are at most /28"},
		{"subnets do not fit", func(e *Environment) { e.Network.AZCount, e.Network.SubnetNewBits = 3, 2 }, "Network.CIDR", "does not fit 6 subnets"},
		{"cidr too large", func(e *Environment) { e.Network.CIDR = "10.0.0.0/8" }, "Network.CIDR", "/16 to /28"},
		{"cidr with host bits", func(e *Environment) { e.Network.CIDR = "10.0.0.1/16" }, "Network.CIDR", "host bits"},
		{"ipv6 cidr", func(e *Environment) { e.Network.CIDR = "fd00::/56" }, "Network.CIDR", "IPv4"},
		{"too few AZs", func(e *Environment) { e.Network.AZCount = 1 }, "Network.AZCount", "at least 2"},
		{"NAT above AZs", func(e *Environment) { e.Network.NATGateways = 3 }, "Network.NATGateways", "1..AZCount"},
		{"existing VPC without subnets", func(e *Environment) {
			e.Network.Existing = &ExistingNetwork{VPCID: "vpc-0123456789abcdef0", PublicSubnetIDs: []string{"subnet-01234567"}}
		}, "Network.Existing.PrivateSubnetIDs", "at least 2"},
		{"existing VPC bad id", func(e *Environment) {
			e.Network.Existing = &ExistingNetwork{VPCID: "vpc-x", PublicSubnetIDs: []string{"subnet-01234567", "subnet-89abcdef"}, PrivateSubnetIDs: []string{"subnet-01234568", "subnet-89abcdee"}, PrivateRouteTableIDs: []string{"rtb-01234567"}}
		}, "Network.Existing.VPCID", "not a VPC ID"},
		{"existing VPC with new VPC fields", func(e *Environment) {
			e.Network.CIDR = "10.1.0.0/16"
			e.Network.Existing = &ExistingNetwork{VPCID: "vpc-01234567", PublicSubnetIDs: []string{"subnet-01234567", "subnet-89abcdef"}, PrivateSubnetIDs: []string{"subnet-01234568", "subnet-89abcdee"}, PrivateRouteTableIDs: []string{"rtb-01234567"}}
		}, "Network.Existing", "leave them unset"},
		{"status TTL under the queues' retention", func(e *Environment) { e.Store.StatusTTL = 10 * 24 * time.Hour }, "Store.StatusTTL", "shorter than Queue.Retention + Queue.DLQRetention (432h0m0s)"},
		{"status TTL over the setting's bound", func(e *Environment) { e.Store.StatusTTL = 400 * 24 * time.Hour }, "Store.StatusTTL", "HERALD_STATUS_TTL"},
		{"bad account", func(e *Environment) { e.Account = "12345" }, "Account", "12-digit"},
		{"bad region", func(e *Environment) { e.Region = "europe" }, "Region", "not an AWS region"},
		{"bad name", func(e *Environment) { e.Name = "Production-1" }, "Name", "lower-case"},
		{"long name", func(e *Environment) { e.Name = "development1" }, "Name", "at most 10"},
		{"remote state without lock", func(e *Environment) { e.State.Bucket = "my-state" }, "State.LockTable", "needs locking"},
		{"lock without bucket", func(e *Environment) { e.State.LockTable = "locks" }, "State.Bucket", "required when"},
		{"bad certificate", func(e *Environment) { e.Ingress.CertificateARN = "arn:aws:iam::123456789012:server-certificate/x" }, "Ingress.CertificateARN", "not an ACM certificate ARN"},
		{"bad ingress cidr", func(e *Environment) { e.Ingress.AllowedCIDRs = []string{"10.0.0.1/8"} }, "Ingress.AllowedCIDRs", "not a CIDR block"},
		{"ipv6 ingress cidr", func(e *Environment) { e.Ingress.AllowedCIDRs = []string{"2001:db8::/32"} }, "Ingress.AllowedCIDRs", "IPv4 blocks"},
		{"plain http to the internet", func(e *Environment) { e.Ingress = IngressConfig{} }, "Ingress", "no listener may serve plain HTTP to the whole internet"},
		{"plain http to 0.0.0.0/0 said out loud", func(e *Environment) { e.Ingress = IngressConfig{AllowedCIDRs: []string{"0.0.0.0/0"}} }, "Ingress.AllowedCIDRs", "clear text across the internet"},
		{"plain http to half the internet", func(e *Environment) {
			e.Ingress = IngressConfig{AllowedCIDRs: []string{"0.0.0.0/1", "128.0.0.0/1"}}
		}, "Ingress.AllowedCIDRs", "/8 or narrower"},
		{"domain without certificate", func(e *Environment) {
			e.Ingress = IngressConfig{Internal: true, Domain: "api.example.com", HostedZoneID: "Z0123456789ABC"}
		}, "Ingress.Domain", "needs Ingress.CertificateARN"},
		{"domain without zone", func(e *Environment) { e.Ingress.Domain = "api.example.com" }, "Ingress.HostedZoneID", "required with Ingress.Domain"},
		{"zone without domain", func(e *Environment) { e.Ingress.HostedZoneID = "Z0123456789ABC" }, "Ingress.HostedZoneID", "only with Ingress.Domain"},
		{"bad zone", func(e *Environment) { e.Ingress.Domain, e.Ingress.HostedZoneID = "api.example.com", "zone-1" }, "Ingress.HostedZoneID", "not a Route 53 hosted zone ID"},
		{"bad domain", func(e *Environment) { e.Ingress.Domain, e.Ingress.HostedZoneID = "api_example", "Z0123456789ABC" }, "Ingress.Domain", "not a DNS name"},
		{"access log retention", func(e *Environment) { e.Ingress.AccessLogs = AccessLogConfig{Enabled: true, RetentionDays: 5000} }, "Ingress.AccessLogs.RetentionDays", "outside 1..3650"},
		{"access log settings without logs", func(e *Environment) { e.Ingress.AccessLogs.ForceDestroy = true }, "Ingress.AccessLogs", "only with Ingress.AccessLogs.Enabled"},
		{"sandbox recipient", func(e *Environment) { e.Email.SandboxRecipients = []string{"not an address"} }, "Email.SandboxRecipients", "neither an address nor a domain"},
		{"max receive count", func(e *Environment) { e.Queue.MaxReceiveCount = -1 }, "Queue.MaxReceiveCount", "outside 1..1000"},
		// Given the retry design (retry.go): retention covers the retry
		// window with a day to spare; receives count releases too; a
		// crash-looping message reaches the DLQ well inside the retention;
		// the heartbeat has time to retry.
		{"retention within the retry window", func(e *Environment) { e.Queue.Retention, e.Queue.RetryWindow = 24*time.Hour, 12*time.Hour }, "Queue.Retention", "at least Queue.RetryWindow 12h0m0s + 24h0m0s"},
		{"retry window too short", func(e *Environment) { e.Queue.RetryWindow = 30 * time.Second }, "Queue.RetryWindow", "under 1m0s"},
		{"max receive count too low for releases", func(e *Environment) { e.Queue.MaxReceiveCount = 2 }, "Queue.MaxReceiveCount", "releases at shutdown count as receives"},
		{"crash loop outlives the retention", func(e *Environment) {
			e.Queue.MaxReceiveCount, e.Queue.Retention, e.Email.SendTimeout = 1000, 3*24*time.Hour, time.Minute
		}, "Queue.MaxReceiveCount", "could expire before it is dead-lettered"},
		{"visibility too short for the heartbeat", func(e *Environment) { e.Email.SendTimeout = time.Second }, "Email.SendTimeout", "the heartbeat at half of it has no time to retry"},
		{"dlq retention not longer", func(e *Environment) { e.Queue.Retention, e.Queue.DLQRetention = 4*24*time.Hour, 2*24*time.Hour }, "Queue.DLQRetention", "longer than Queue.Retention"},
		{"retention above SQS max", func(e *Environment) { e.Queue.Retention = 15 * 24 * time.Hour }, "Queue.Retention", "outside 1m..336h"},
		{"message size above the provider's", func(e *Environment) { e.Queue.MaxMessageBytes = 300000 }, "Queue.MaxMessageBytes", "the largest queue message the AWS provider takes"},
		{"message size below the API's", func(e *Environment) { e.Queue.MaxMessageBytes = 512 }, "Queue.MaxMessageBytes", "HERALD_MAX_MESSAGE_BYTES: 512 is outside 1024 to 1048576"},
		// Regression: 10 minutes passed synth (the visibility timeout allowed
		// up to 2 h) and the sender, which takes at most 5, crash-looped.
		{"send timeout the sender refuses", func(e *Environment) { e.Email.SendTimeout = 10 * time.Minute }, "Email.SendTimeout", "HERALD_SEND_TIMEOUT: 10m is outside 100ms to 5m"},
		{"send timeout fraction", func(e *Environment) { e.Email.SendTimeout = 1500 * time.Millisecond }, "Email.SendTimeout", "whole seconds"},
		{"default from missing", func(e *Environment) { e.Email.DefaultFrom = "" }, "Email.DefaultFrom", "not an email address"},
		{"from outside identity", func(e *Environment) { e.Email.AllowedFrom = []string{"@other.org"} }, "Email.AllowedFrom", "not covered by the SES identity"},
		{"unknown transport", func(e *Environment) { e.Email.Transport = "pigeon" }, "Email.Transport", "not ses or smtp"},
		{"smtp without address", func(e *Environment) { e.Email.Transport = "smtp" }, "Email.SMTPAddr", "not host:port"},
		{"ses without identity", func(e *Environment) { e.Email.Identity = "" }, "Email.Identity", "required with SES"},
		{"negative send rate", func(e *Environment) { e.Email.SendRate = -1 }, "Email.SendRate", "0 (the SES account's rate) or more"},
		{"bad image", func(e *Environment) { e.API.Image = "registry.example.com/api" }, "API.Image", "no tag or digest"},
		{"bad digest", func(e *Environment) { e.Sender.Image = "registry.example.com/sender@sha256:abc" }, "Sender.Image", "bad digest"},
		{"api backlog", func(e *Environment) { e.API.BacklogPerTask = 10 }, "API.BacklogPerTask", "only the sender"},
		{"log level", func(e *Environment) { e.API.LogLevel = "verbose" }, "API.LogLevel", "want debug, info, warn or error"},
		{"contract variable", func(e *Environment) { e.Sender.Tuning = map[string]string{"HERALD_QUEUE_URL": "x"} }, "Sender.Tuning[HERALD_QUEUE_URL]", "not a tuning variable"},
		{"secret as variable", func(e *Environment) { e.Sender.Tuning = map[string]string{"HERALD_SMTP_PASSWORD": "x"} }, "Sender.Tuning[HERALD_SMTP_PASSWORD]", "secrets come from Secrets Manager"},
		{"unknown variable", func(e *Environment) { e.API.Tuning = map[string]string{"HERALD_WORKERS": "8"} }, "API.Tuning[HERALD_WORKERS]", "not a tuning variable of notification-api"},
		{"tuning the service refuses", func(e *Environment) { e.Sender.Tuning = map[string]string{"HERALD_WORKERS": "0"} }, "Sender.Tuning[HERALD_WORKERS]", "HERALD_WORKERS: 0 is outside 1 to 4096"},
		// Each value alone is fine; together the sender refuses them.
		{"tuning against the stack's values", func(e *Environment) { e.Sender.Tuning = map[string]string{"HERALD_STALL_AFTER": "15s"} }, "Sender.Tuning",
			"email-sender would refuse its variables: configuration: HERALD_STALL_AFTER: 15s must be longer than HERALD_WAIT_TIME (20s)"},
		{"retry base over the tuned max", func(e *Environment) { e.Sender.Tuning = map[string]string{"HERALD_RETRY_MAX": "2s"} }, "Sender.Tuning", "HERALD_RETRY_BASE: 5s is above HERALD_RETRY_MAX"},
		{"allowed sender the API refuses", func(e *Environment) { e.Email.AllowedFrom = []string{"@localhost"} }, "Email.AllowedFrom", "HERALD_ALLOWED_FROM"},
		{"log retention", func(e *Environment) { e.Observability.LogRetentionDays = 31 }, "Observability.LogRetentionDays", "not a CloudWatch retention"},
		{"alarm email", func(e *Environment) { e.Observability.AlarmEmail = "oncall" }, "Observability.AlarmEmail", "not an email address"},
		{"5xx percent", func(e *Environment) { e.Observability.API5xxPercent = 150 }, "Observability.API5xxPercent", "outside (0, 100]"},
		{"repository tag", func(e *Environment) { e.Repositories.DefaultTag = "-bad" }, "Repositories.DefaultTag", "not an image tag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := validEnv()
			c.mutate(&e)
			err := e.Validate()
			if err == nil {
				t.Fatal("want an error, got none")
			}
			msg := err.Error()
			if !strings.Contains(msg, `environment "`+e.Name+`": `+c.field+": ") || !strings.Contains(msg, c.detail) {
				t.Errorf("want the field %s and %q named, got:\n%s", c.field, c.detail, msg)
			}
		})
	}
}

func TestValidEnvironmentsPass(t *testing.T) {
	cases := map[string]func(e *Environment){
		"minimal":         func(e *Environment) {},
		"app mesh":        func(e *Environment) { e.Mesh.Mode = MeshAppMesh },
		"fargate 16 vCPU": func(e *Environment) { e.API.CPU, e.API.Memory = 16384, 122880 },
		"smtp": func(e *Environment) {
			e.Email.Transport, e.Email.SMTPAddr, e.Email.Identity = "smtp", "smtp.example.com:587", ""
		},
		"existing network": func(e *Environment) {
			e.Network.Existing = &ExistingNetwork{VPCID: "vpc-01234567", PublicSubnetIDs: []string{"subnet-01234567", "subnet-89abcdef"}, PrivateSubnetIDs: []string{"subnet-01234568", "subnet-89abcdee"}, PrivateRouteTableIDs: []string{"rtb-01234567"}}
		},
		"remote state": func(e *Environment) { e.State.Bucket, e.State.UseLockfile = "my-state", true },
		"address identity": func(e *Environment) {
			e.Email.Identity, e.Email.DefaultFrom, e.Email.AllowedFrom = "alerts@example.com", "alerts@example.com", nil
		},
		"subdomain sender":    func(e *Environment) { e.Email.AllowedFrom = []string{"@mail.example.com"} },
		"internal plain http": func(e *Environment) { e.Ingress = IngressConfig{Internal: true} },
		"plain http to an allow-list": func(e *Environment) {
			e.Ingress = IngressConfig{AllowedCIDRs: []string{"203.0.113.0/24", "198.51.100.0/24"}}
		},
		"https with a domain and logs": func(e *Environment) {
			e.Ingress.Domain, e.Ingress.HostedZoneID = "api.example.com", "Z0123456789ABC"
			e.Ingress.AccessLogs = AccessLogConfig{Enabled: true, ForceDestroy: true}
		},
		"sandbox recipients": func(e *Environment) { e.Email.SandboxRecipients = []string{"tester@example.org", "example.net"} },
		"every tunable": func(e *Environment) {
			e.API.Tuning = map[string]string{"HERALD_MAX_CONNECTIONS": "4096", "HERALD_RATE_LIMIT": "0", "HERALD_BATCH_LINGER": "0"}
			e.Sender.Tuning = map[string]string{"HERALD_WORKERS": "64", "HERALD_STALL_AFTER": "2m", "HERALD_DELETE_BATCH": "1", "HERALD_METRICS_INTERVAL": "0"}
		},
		"send timeout at the sender's most": func(e *Environment) { e.Email.SendTimeout = 5 * time.Minute },
		"allowed domain in capitals":        func(e *Environment) { e.Email.AllowedFrom = []string{"@Example.COM"} },
		"image by digest": func(e *Environment) {
			e.API.Image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/herald/api@sha256:" + strings.Repeat("ab", 32)
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := validEnv()
			mutate(&e)
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDuplicateEnvironmentNames(t *testing.T) {
	err := ValidateAll([]Environment{validEnv(), validEnv()})
	if err == nil || !strings.Contains(err.Error(), `environments[1].Name: "test" is declared twice`) {
		t.Fatalf("got %v", err)
	}
}

func TestSubnetPlan(t *testing.T) {
	public, private, err := SubnetPlan("10.40.0.0/16", 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := "10.40.0.0/20 10.40.16.0/20 10.40.32.0/20 | 10.40.48.0/20 10.40.64.0/20 10.40.80.0/20"
	if got := strings.Join(public, " ") + " | " + strings.Join(private, " "); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// exactly full: 4 subnets of /26 in a /24
	if _, _, err := SubnetPlan("192.168.0.0/24", 2, 2); err != nil {
		t.Errorf("a full plan failed: %v", err)
	}
}

func TestParseImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0f", 32)
	good := map[string]string{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/herald-dev/notification-api@" + digest: "arn:aws:ecr:eu-west-1:123456789012:repository/herald-dev/notification-api",
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/herald-dev/email-sender:v1.2.3":        "arn:aws:ecr:eu-west-1:123456789012:repository/herald-dev/email-sender",
		"public.ecr.aws/nginx/nginx:1.27":                                                    "",
		"localhost:5000/herald/api:" + "dev":                                                 "",
	}
	for ref, arn := range good {
		r, err := ParseImage(ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if r.String() != ref {
			t.Errorf("%s: round trip gives %s", ref, r.String())
		}
		if got, _ := r.ECRRepositoryARN(); got != arn {
			t.Errorf("%s: repository ARN %q, want %q", ref, got, arn)
		}
	}
	for _, bad := range []string{"", "nginx", "localhost:5000/api", "api:", "api@" + digest[:20], "API:v1", "repo/:tag", "a/b:t/x"} {
		if _, err := ParseImage(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestImageOverrides(t *testing.T) {
	envs := []Environment{validEnv(), validEnv()}
	envs[1].Name = "prod"
	vars := map[string]string{
		"HERALD_API_IMAGE":         "registry.example.com/api:v2",
		"HERALD_PROD_API_IMAGE":    "registry.example.com/api:v3",
		"HERALD_PROD_SENDER_IMAGE": "registry.example.com/sender:v3",
	}
	out := ApplyImageOverrides(envs, func(k string) string { return vars[k] })
	got := []string{out[0].API.Image, out[0].Sender.Image, out[1].API.Image, out[1].Sender.Image}
	want := []string{"registry.example.com/api:v2", "", "registry.example.com/api:v3", "registry.example.com/sender:v3"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("image %d: got %q, want %q", i, got[i], want[i])
		}
	}
	if envs[0].API.Image != "" {
		t.Error("the input was modified")
	}
}

func TestSynthPlan(t *testing.T) {
	dev, prod := validEnv(), validEnv()
	dev.Name = "dev"
	prod.Name, prod.Mesh.Mode = "prod", MeshAppMesh
	prod.State = StateConfig{Bucket: "state", Key: "herald/prod.tfstate", LockTable: "locks"}
	plain := SynthPlan([]Environment{dev, prod}, false)
	if len(plain) != 2 || plain[0].ID != "herald-dev" || plain[1].ID != "herald-prod" {
		t.Fatalf("without variants: %+v", plain)
	}
	all := SynthPlan([]Environment{dev, prod}, true)
	var ids []string
	modes := map[string]MeshMode{}
	for _, s := range all {
		ids = append(ids, s.ID)
		modes[s.ID] = s.Environment.WithDefaults().Mesh.Mode
	}
	if got := strings.Join(ids, " "); got != "herald-dev herald-dev-appmesh herald-prod herald-prod-serviceconnect" {
		t.Fatalf("stacks: %s", got)
	}
	if modes["herald-dev-appmesh"] != MeshAppMesh || modes["herald-prod-serviceconnect"] != MeshServiceConnect || modes["herald-prod"] != MeshAppMesh {
		t.Errorf("modes: %v", modes)
	}
	if all[3].Environment.State.Key != "herald/prod-serviceconnect.tfstate" {
		t.Errorf("a variant shares remote state: key %q", all[3].Environment.State.Key)
	}
}

func TestCheckStatements(t *testing.T) {
	cases := []struct {
		name string
		s    Statement
		kind policyKind
		want string // "" = valid
	}{
		{"named resource", Statement{Actions: []string{"sqs:SendMessage"}, Resources: []string{"arn:aws:sqs:eu-west-1:123456789012:q"}}, identityPolicy, ""},
		{"wildcard action", Statement{Actions: []string{"sqs:*"}, Resources: []string{"arn:aws:sqs:eu-west-1:123456789012:q"}}, identityPolicy, "wildcard"},
		{"star action", Statement{Actions: []string{"*"}, Resources: []string{"arn:x"}}, identityPolicy, "wildcard"},
		{"star resource for scoped action", Statement{Actions: []string{"sqs:SendMessage"}, Resources: []string{"*"}}, identityPolicy, "has resource-level permissions"},
		{"star resource for token", Statement{Actions: []string{"ecr:GetAuthorizationToken"}, Resources: []string{"*"}}, identityPolicy, ""},
		{"star resource mixed", Statement{Actions: []string{"ecr:GetAuthorizationToken", "ecr:BatchGetImage"}, Resources: []string{"*"}}, identityPolicy, "ecr:BatchGetImage"},
		{"log streams without reason", Statement{Actions: []string{"logs:PutLogEvents"}, Resources: []string{"arn:aws:logs:eu-west-1:1:log-group:g:*"}}, identityPolicy, "WildcardReason"},
		{"log streams with reason", Statement{Actions: []string{"logs:PutLogEvents"}, Resources: []string{"arn:aws:logs:eu-west-1:1:log-group:g:*"}, WildcardReason: "streams"}, identityPolicy, ""},
		{"inner wildcard", Statement{Actions: []string{"logs:PutLogEvents"}, Resources: []string{"arn:aws:logs:*:1:log-group:g"}, WildcardReason: "x"}, identityPolicy, "trailing"},
		{"star in resource policy", Statement{Actions: []string{"sqs:SendMessage"}, Resources: []string{"*"}}, resourcePolicy, "name the resource"},
		{"key policy", Statement{Actions: []string{"kms:Decrypt"}, Resources: []string{"*"}}, keyPolicy, ""},
		{"key policy with arn", Statement{Actions: []string{"kms:Decrypt"}, Resources: []string{"arn:x"}}, keyPolicy, "single resource"},
		{"trust with resource", Statement{Actions: []string{"sts:AssumeRole"}, Resources: []string{"*"}}, trustPolicy, "no resources"},
		{"no actions", Statement{Resources: []string{"arn:x"}}, identityPolicy, "no actions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkStatements([]Statement{c.s}, c.kind)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
		})
	}
}

func TestPublicCIDR(t *testing.T) {
	for cidr, public := range map[string]bool{
		"0.0.0.0/0": true, "::/0": true, "10.0.0.0/8": false, "10.1.2.0/24": false,
		"172.16.0.0/12": false, "172.0.0.0/8": true, "192.168.1.0/24": false,
		"203.0.113.0/24": true, "fd00::/8": false,
	} {
		if got := isPublicCIDR(cidr); got != public {
			t.Errorf("%s: public %v, want %v", cidr, got, public)
		}
	}
}
