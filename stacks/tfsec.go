package stacks

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// tfsec (v1.28) reads an ignore from a line holding "tfsec:ignore:<rule>" as
// a word, and applies it to a finding that starts on that line or the next.
// cdktf writes sorted JSON, where no line before an attribute can be written
// freely, so Herald puts the ignore on the flagged attribute's own line: the
// value becomes a Terraform expression with an HCL comment,
//
//	"cidr_blocks": "${[\"0.0.0.0/0\"] /* tfsec:ignore:aws-ec2-no-public-ingress-sgr public listener */}"
//
// which Terraform evaluates to the plain value (the comment is skipped) and
// which tfsec evaluates and matches to its finding. Every use is listed, with
// its reason, in stacks/README.md; the policy tests read these values too.
func tfsecIgnored(hclValue, rule, reason string) string {
	checkIgnore(rule, reason)
	return fmt.Sprintf("${%s /* tfsec:ignore:%s %s */}", hclValue, rule, reason)
}

func checkIgnore(rule, reason string) {
	if reason == "" || strings.ContainsAny(reason, "*/{}$\"") || strings.ContainsAny(rule, " */") {
		panic(fmt.Sprintf("herald: tfsec ignore %q: reason %q must be plain words", rule, reason))
	}
}

// cidrList renders a cidr_blocks value. When a block is public, the value
// carries the tfsec ignore for rule with its reason: Herald opens to the
// internet only on purpose (the load balancer's listeners, the sender's
// HTTPS to SES) and says why.
func cidrList(cidrs []string, rule, reason string) *[]*string {
	public := false
	for _, c := range cidrs {
		if isPublicCIDR(c) {
			public = true
		}
	}
	if !public {
		return jsii.Strings(cidrs...)
	}
	return cdktf.Token_AsList(jsii.String(tfsecIgnored(`["`+strings.Join(cidrs, `", "`)+`"]`, rule, reason)), nil)
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
