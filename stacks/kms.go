package stacks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/kmsalias"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/kmskey"
)

// keyAdministration is what the account (and through IAM, its
// administrators and the roles Herald grants) may do with a key. It is
// spelled out because Herald allows no wildcard action, and it keeps
// kms:PutKeyPolicy so the key can never become unmanageable.
var keyAdministration = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt",
	"kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation",
	"kms:EnableKey", "kms:EnableKeyRotation", "kms:Encrypt", "kms:GenerateDataKey",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
	"kms:ListGrants", "kms:ListKeyPolicies", "kms:ListKeyRotations", "kms:ListResourceTags",
	"kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RetireGrant",
	"kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion",
	"kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
}

// keyDeletionWindowDays is how long a deleted Herald key can still be
// restored: the longest KMS allows, as whatever it encrypted is lost with it.
const keyDeletionWindowDays = 30

// KeyProps describe a customer managed KMS key for one purpose.
type KeyProps struct {
	// Alias without the "alias/" prefix, e.g. "herald-dev-queue".
	Alias       string
	Description string
	Account     string
	Region      string
	// ServiceGrants are key-policy statements for AWS services that use the
	// key themselves (CloudWatch Logs, CloudWatch alarms publishing to SNS).
	// Their resource is always the key. Callers that use the key through
	// SQS or Secrets Manager get IAM permissions instead.
	ServiceGrants []Statement
	// DeletionWindowDays before a deleted key is gone, 7 to 30; Herald's
	// keys use keyDeletionWindowDays.
	DeletionWindowDays int
}

// keyFor are the props of a key for one resource of Herald's: its alias,
// what it encrypts, and the services that use it themselves, deleted after
// keyDeletionWindowDays.
func keyFor(alias, description, account, region string, serviceGrants ...Statement) *KeyProps {
	return &KeyProps{
		Alias: alias, Description: description, Account: account, Region: region,
		DeletionWindowDays: keyDeletionWindowDays, ServiceGrants: serviceGrants,
	}
}

// Key is a rotating customer managed key with an alias.
type Key struct {
	constructs.Construct
	Key   kmskey.KmsKey
	Alias kmsalias.KmsAlias
}

func (p *KeyProps) validate() error {
	var errs []error
	if p.Alias == "" || strings.HasPrefix(p.Alias, "alias/") {
		errs = append(errs, fmt.Errorf("Alias %q: required, without the alias/ prefix", p.Alias))
	}
	if !accountPattern.MatchString(p.Account) {
		errs = append(errs, fmt.Errorf("Account %q is not a 12-digit account", p.Account))
	}
	if !regionPattern.MatchString(p.Region) {
		errs = append(errs, fmt.Errorf("Region %q is not an AWS region", p.Region))
	}
	if p.DeletionWindowDays < 7 || p.DeletionWindowDays > 30 {
		errs = append(errs, fmt.Errorf("DeletionWindowDays %d is outside 7..30", p.DeletionWindowDays))
	}
	for _, g := range p.ServiceGrants {
		if len(g.Principals) == 0 {
			errs = append(errs, fmt.Errorf("ServiceGrants %s: needs a principal", g.Sid))
		}
	}
	return errors.Join(errs...)
}

// NewKey creates the key, its policy and its alias.
func NewKey(scope constructs.Construct, id string, props *KeyProps) *Key {
	if props == nil {
		props = &KeyProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: key %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	statements := []Statement{{
		Sid:        "AccountAdministersAndDelegatesThroughIAM",
		Actions:    keyAdministration,
		Resources:  []string{"*"},
		Principals: []Principal{{Type: "AWS", Identifiers: []string{fmt.Sprintf("arn:%s:iam::%s:root", partition(p.Region), p.Account)}}},
	}}
	for _, g := range p.ServiceGrants {
		g.Resources = []string{"*"}
		statements = append(statements, g)
	}
	doc := newPolicyDocument(c, "policy", statements, keyPolicy)
	k := &Key{Construct: c}
	k.Key = kmskey.NewKmsKey(c, jsii.String("key"), &kmskey.KmsKeyConfig{
		Description:          jsii.String(p.Description),
		EnableKeyRotation:    jsii.Bool(true),
		DeletionWindowInDays: jsii.Number(float64(p.DeletionWindowDays)),
		Policy:               doc.Json(),
	})
	k.Alias = kmsalias.NewKmsAlias(c, jsii.String("alias"), &kmsalias.KmsAliasConfig{
		Name:        jsii.String("alias/" + p.Alias),
		TargetKeyId: k.Key.KeyId(),
	})
	return k
}

// partition is the ARN partition of a region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	default:
		return "aws"
	}
}
