package stacks

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/sesv2configurationset"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/sesv2emailidentity"

	"herald/services/contract"
)

// SESProps describe the SES sending identity and configuration set.
type SESProps struct {
	// Identity is a domain ("example.com") or an address.
	Identity string
	// Manage creates the identity here; false references an existing one.
	Manage bool
	// ConfigurationSet names a configuration set to create; empty: none.
	ConfigurationSet string
	Account          string
	Region           string
}

// SES is what the sender may send as.
type SES struct {
	constructs.Construct
	// Identity and ConfigurationSet are nil when not created here.
	Identity         sesv2emailidentity.Sesv2EmailIdentity
	ConfigurationSet sesv2configurationset.Sesv2ConfigurationSet
	// IdentityARN and ConfigurationSetARN scope ses:SendEmail; they are
	// known at synth time whether or not this stack creates them.
	IdentityARN          string
	ConfigurationSetARN  string
	ConfigurationSetName string
	account, region      string
}

// GrantSend lets a role send as the identity (through the configuration
// set), and only from the senders on from: its addresses compared ignoring
// case, as the API compares them, and its "@domain" entries as any address
// of that domain, which SES compares case-sensitively (StringLike has no
// IgnoreCase form): AllowList keeps them in lower case, and the API queues
// every sender's domain in lower case. In the SES sandbox a send may be
// authorized against the recipient's identity too, so the identities of
// sandboxRecipients join the resources.
func (s *SES) GrantSend(from contract.AllowList, sandboxRecipients []string) []Statement {
	sendAs := []string{s.IdentityARN}
	if s.ConfigurationSetName != "" {
		sendAs = append(sendAs, s.ConfigurationSetARN)
	}
	for _, r := range sandboxRecipients {
		sendAs = append(sendAs, s.IdentityARNOf(r))
	}
	var addresses, domains []string
	for _, e := range from.Entries() {
		if d, ok := strings.CutPrefix(e, "@"); ok {
			domains = append(domains, "*@"+d)
		} else {
			addresses = append(addresses, e)
		}
	}
	slices.Sort(addresses)
	slices.Sort(domains)
	var out []Statement
	if len(addresses) > 0 {
		out = append(out, Statement{
			Sid: "SendAsAllowedAddresses", Actions: []string{"ses:SendEmail"}, Resources: sendAs,
			Conditions: []Condition{{Test: "StringEqualsIgnoreCase", Variable: "ses:FromAddress", Values: addresses}},
		})
	}
	if len(domains) > 0 {
		out = append(out, Statement{
			Sid: "SendAsAllowedDomains", Actions: []string{"ses:SendEmail"}, Resources: sendAs,
			Conditions: []Condition{{Test: "StringLike", Variable: "ses:FromAddress", Values: domains}},
		})
	}
	return out
}

// GrantReadQuota lets a role read the account's sending quota, to pace
// itself; GetAccount has no resource type.
func (s *SES) GrantReadQuota() Statement {
	return Statement{Sid: "ReadSendingQuota", Actions: []string{"ses:GetAccount"}, Resources: []string{"*"}}
}

// IdentityARNOf is the ARN of another identity (an address or a domain) of
// the same account and region.
func (s *SES) IdentityARNOf(identity string) string {
	return fmt.Sprintf("arn:%s:ses:%s:%s:identity/%s", partition(s.region), s.region, s.account, identity)
}

func (p *SESProps) validate() error {
	var errs []error
	if !isAddress(p.Identity) && !domainPattern.MatchString(p.Identity) {
		errs = append(errs, fmt.Errorf("Identity %q is neither a domain nor an address", p.Identity))
	}
	if p.ConfigurationSet != "" && strings.ContainsAny(p.ConfigurationSet, " ./") {
		errs = append(errs, fmt.Errorf("ConfigurationSet %q: letters, digits, - and _ only", p.ConfigurationSet))
	}
	if !accountPattern.MatchString(p.Account) || !regionPattern.MatchString(p.Region) {
		errs = append(errs, errors.New("Account and Region are required"))
	}
	return errors.Join(errs...)
}

// NewSES creates the configuration set and, when managed, the identity.
func NewSES(scope constructs.Construct, id string, props *SESProps) *SES {
	if props == nil {
		props = &SESProps{}
	}
	if err := props.validate(); err != nil {
		panic(fmt.Errorf("herald: ses %s: %w", id, err))
	}
	p := props
	c := constructs.NewConstruct(scope, &id)
	arn := func(kind, name string) string {
		return fmt.Sprintf("arn:%s:ses:%s:%s:%s/%s", partition(p.Region), p.Region, p.Account, kind, name)
	}
	s := &SES{Construct: c, account: p.Account, region: p.Region}
	s.IdentityARN = s.IdentityARNOf(p.Identity)
	if p.ConfigurationSet != "" {
		s.ConfigurationSet = sesv2configurationset.NewSesv2ConfigurationSet(c, jsii.String("configuration-set"), &sesv2configurationset.Sesv2ConfigurationSetConfig{
			ConfigurationSetName: jsii.String(p.ConfigurationSet),
			// Mail leaves SES over TLS or not at all.
			DeliveryOptions:   &sesv2configurationset.Sesv2ConfigurationSetDeliveryOptions{TlsPolicy: jsii.String("REQUIRE")},
			ReputationOptions: &sesv2configurationset.Sesv2ConfigurationSetReputationOptions{ReputationMetricsEnabled: jsii.Bool(true)},
			SendingOptions:    &sesv2configurationset.Sesv2ConfigurationSetSendingOptions{SendingEnabled: jsii.Bool(true)},
			SuppressionOptions: &sesv2configurationset.Sesv2ConfigurationSetSuppressionOptions{
				SuppressedReasons: jsii.Strings("BOUNCE", "COMPLAINT"),
			},
		})
		s.ConfigurationSetName = p.ConfigurationSet
		s.ConfigurationSetARN = arn("configuration-set", p.ConfigurationSet)
	}
	if p.Manage {
		cfg := &sesv2emailidentity.Sesv2EmailIdentityConfig{EmailIdentity: jsii.String(p.Identity)}
		if s.ConfigurationSet != nil {
			cfg.ConfigurationSetName = s.ConfigurationSet.ConfigurationSetName()
		}
		s.Identity = sesv2emailidentity.NewSesv2EmailIdentity(c, jsii.String("identity"), cfg)
	}
	return s
}
