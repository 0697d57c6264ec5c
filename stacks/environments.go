package stacks

import "time"

// Environments is the one place Herald's deployments are declared. Each entry
// becomes the stack "herald-<Name>". Edit the values marked "set for your
// organisation" before a first deploy; stacks/README.md describes every field
// and config.go documents its default.
func Environments() []Environment {
	return []Environment{
		{
			Name:    "dev",
			Account: "111111111111", // set for your organisation
			Region:  "eu-west-1",
			Network: NetworkConfig{
				CIDR:        "10.40.0.0/16",
				AZCount:     2,
				NATGateways: 1, // one shared NAT gateway keeps dev cheap
			},
			Mesh: MeshConfig{Mode: MeshServiceConnect},
			// API keys travel over HTTPS only, in dev too: a certificate for
			// the dev domain, whose alias record the stack creates. (An
			// internal load balancer or an allow-list of your networks are
			// the other choices; plain HTTP to the internet is refused.)
			Ingress: IngressConfig{
				CertificateARN: "arn:aws:acm:eu-west-1:111111111111:certificate/11111111-1111-1111-1111-111111111111", // set for your organisation
				Domain:         "api.dev.herald.example.com",                                                          // set for your organisation
				HostedZoneID:   "Z0000000000000000DEV",                                                                // set for your organisation
			},
			Email: EmailConfig{
				Transport:        "ses",
				Identity:         "dev.herald.example.com", // set for your organisation
				ManageIdentity:   true,
				ConfigurationSet: true,
				DefaultFrom:      "no-reply@dev.herald.example.com",
				AllowedFrom:      []string{"@dev.herald.example.com"},
				SendTimeout:      10 * time.Second,
			},
			Repositories: RepositoryConfig{ForceDelete: true},
			API: ServiceConfig{
				CPU: 256, Memory: 512,
				MinTasks: 1, MaxTasks: 2, CPUTarget: 70,
				LogLevel: "debug",
			},
			Sender: ServiceConfig{
				CPU: 256, Memory: 512,
				MinTasks: 1, MaxTasks: 2, CPUTarget: 70,
				BacklogPerTask: 100,
				LogLevel:       "debug",
			},
			Observability: ObservabilityConfig{LogRetentionDays: 14},
		},
		{
			Name:    "prod",
			Account: "222222222222", // set for your organisation
			Region:  "eu-west-1",
			State: StateConfig{
				Bucket:    "herald-terraform-state-222222222222", // set for your organisation
				LockTable: "herald-terraform-locks",
			},
			Network: NetworkConfig{
				CIDR:        "10.50.0.0/16",
				AZCount:     3,
				NATGateways: 3, // one per AZ: an AZ outage does not cut the others off
			},
			Mesh: MeshConfig{Mode: MeshServiceConnect},
			Ingress: IngressConfig{
				CertificateARN:     "arn:aws:acm:eu-west-1:222222222222:certificate/00000000-0000-0000-0000-000000000000", // set for your organisation
				Domain:             "api.herald.example.com",                                                              // set for your organisation
				HostedZoneID:       "Z0000000000000000PRD",                                                                // set for your organisation
				DeletionProtection: true,
				AccessLogs:         AccessLogConfig{Enabled: true, RetentionDays: 90},
			},
			Queue: QueueConfig{MaxReceiveCount: 5},
			// Idempotency records and statuses survive a careless destroy
			// and can be restored to any second of the last 35 days.
			Store: StoreConfig{PointInTimeRecovery: true, DeletionProtection: true},
			Email: EmailConfig{
				Transport:        "ses",
				Identity:         "herald.example.com", // set for your organisation
				ManageIdentity:   true,
				ConfigurationSet: true,
				DefaultFrom:      "no-reply@herald.example.com",
				AllowedFrom:      []string{"@herald.example.com"},
				SendTimeout:      10 * time.Second,
			},
			API: ServiceConfig{
				CPU: 512, Memory: 1024,
				MinTasks: 3, MaxTasks: 12, CPUTarget: 70,
			},
			Sender: ServiceConfig{
				CPU: 512, Memory: 1024,
				MinTasks: 3, MaxTasks: 20, CPUTarget: 70,
				BacklogPerTask: 200,
			},
			Observability: ObservabilityConfig{
				LogRetentionDays: 90,
				AlarmEmail:       "herald-oncall@example.com", // set for your organisation
			},
		},
	}
}
