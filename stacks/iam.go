package stacks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/dataawsiampolicydocument"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/iamrole"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/iamrolepolicy"
)

// Statement is one statement of a policy document (IAM, key, queue or topic
// policy). Every policy in Herald is built from these, through
// newPolicyDocument, so the checks below apply to all of them.
type Statement struct {
	Sid        string
	Deny       bool // Effect Deny; Allow otherwise
	Actions    []string
	Resources  []string
	Principals []Principal // resource policies only
	Conditions []Condition
	// WildcardReason justifies a resource pattern ending in ":*" or "/*"
	// (the log streams ECS creates in a service's own log group, the objects
	// of one bucket). Statements without one name exact resources.
	WildcardReason string
}

// Principal of a resource-policy statement ("Service", "AWS" or "*").
type Principal struct {
	Type        string
	Identifiers []string
}

// Condition of a statement, e.g. {"StringEquals", "aws:SourceAccount", [id]}.
type Condition struct {
	Test     string
	Variable string
	Values   []string
}

// wildcardResourceActions are the only actions Herald grants on Resource "*".
// Each has no resource-level permission in AWS's Service Authorization
// Reference, so no narrower resource exists.
var wildcardResourceActions = map[string]bool{
	// A registry login token (docker login to ECR) is account-wide: the
	// action has no resource type. Image pulls themselves are granted on
	// the one repository.
	"ecr:GetAuthorizationToken": true,
	// The sender reads the account's SES sending quota to pace itself when
	// HERALD_SEND_RATE is 0; GetAccount has no resource type.
	"ses:GetAccount": true,
}

// policyKind says what a policy document is attached to; the rules for its
// resources differ.
type policyKind int

const (
	// identityPolicy is attached to a role: resources are named, "*" only
	// for wildcardResourceActions.
	identityPolicy policyKind = iota
	// resourcePolicy is attached to a queue or topic: resources are named.
	resourcePolicy
	// keyPolicy is attached to a KMS key, where the resource "*" means
	// "this key" and is the only resource allowed.
	keyPolicy
	// trustPolicy is a role's trust policy, which IAM refuses with a
	// Resource element.
	trustPolicy
	// ciPolicy is the CI role's policy, under its own rules (ci.go).
	ciPolicy
)

// checkStatements enforces Herald's policy rules at synth time: no wildcard
// action anywhere, and resources as the policy kind demands.
func checkStatements(statements []Statement, kind policyKind) error {
	if kind == ciPolicy {
		return checkCIStatements(statements)
	}
	var errs []error
	for i, s := range statements {
		name := s.Sid
		if name == "" {
			name = fmt.Sprintf("statement %d", i)
		}
		if len(s.Actions) == 0 {
			errs = append(errs, fmt.Errorf("%s: no actions", name))
		}
		for _, a := range s.Actions {
			if strings.Contains(a, "*") || !strings.Contains(a, ":") {
				errs = append(errs, fmt.Errorf("%s: action %q is a wildcard or not service:Action", name, a))
			}
		}
		switch kind {
		case trustPolicy:
			if len(s.Resources) > 0 {
				errs = append(errs, fmt.Errorf("%s: a trust policy has no resources", name))
			}
		case keyPolicy:
			if len(s.Resources) != 1 || s.Resources[0] != "*" {
				errs = append(errs, fmt.Errorf("%s: a key policy statement has the single resource \"*\" (the key itself)", name))
			}
		case resourcePolicy, identityPolicy:
			if len(s.Resources) == 0 {
				errs = append(errs, fmt.Errorf("%s: no resources", name))
			}
			for _, r := range s.Resources {
				if r != "*" {
					trailing := strings.HasSuffix(r, ":*") || strings.HasSuffix(r, "/*")
					if strings.Contains(r, "*") && (s.WildcardReason == "" || !trailing || strings.Count(r, "*") != 1) {
						errs = append(errs, fmt.Errorf("%s: resource %q: only a trailing \":*\" or \"/*\" with a WildcardReason is allowed", name, r))
					}
					continue
				}
				if kind == resourcePolicy {
					errs = append(errs, fmt.Errorf("%s: resource \"*\" in a resource policy: name the resource", name))
					continue
				}
				for _, a := range s.Actions {
					if !wildcardResourceActions[a] {
						errs = append(errs, fmt.Errorf("%s: %s on resource \"*\": the action has resource-level permissions, name the resource", name, a))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// newPolicyDocument renders statements as an aws_iam_policy_document data
// source under scope, after checking them.
func newPolicyDocument(scope constructs.Construct, id string, statements []Statement, kind policyKind) dataawsiampolicydocument.DataAwsIamPolicyDocument {
	if err := checkStatements(statements, kind); err != nil {
		panic(fmt.Errorf("herald: policy %s: %w", id, err))
	}
	rendered := make([]*dataawsiampolicydocument.DataAwsIamPolicyDocumentStatement, 0, len(statements))
	for _, s := range statements {
		effect := "Allow"
		if s.Deny {
			effect = "Deny"
		}
		st := &dataawsiampolicydocument.DataAwsIamPolicyDocumentStatement{
			Effect:  jsii.String(effect),
			Actions: jsii.Strings(s.Actions...),
		}
		if len(s.Resources) > 0 {
			st.Resources = jsii.Strings(s.Resources...)
		}
		if s.Sid != "" {
			st.Sid = jsii.String(s.Sid)
		}
		if len(s.Principals) > 0 {
			ps := make([]*dataawsiampolicydocument.DataAwsIamPolicyDocumentStatementPrincipals, 0, len(s.Principals))
			for _, p := range s.Principals {
				ps = append(ps, &dataawsiampolicydocument.DataAwsIamPolicyDocumentStatementPrincipals{
					Type:        jsii.String(p.Type),
					Identifiers: jsii.Strings(p.Identifiers...),
				})
			}
			st.Principals = ps
		}
		if len(s.Conditions) > 0 {
			cs := make([]*dataawsiampolicydocument.DataAwsIamPolicyDocumentStatementCondition, 0, len(s.Conditions))
			for _, c := range s.Conditions {
				cs = append(cs, &dataawsiampolicydocument.DataAwsIamPolicyDocumentStatementCondition{
					Test:     jsii.String(c.Test),
					Variable: jsii.String(c.Variable),
					Values:   jsii.Strings(c.Values...),
				})
			}
			st.Condition = cs
		}
		rendered = append(rendered, st)
	}
	return dataawsiampolicydocument.NewDataAwsIamPolicyDocument(scope, jsii.String(id), &dataawsiampolicydocument.DataAwsIamPolicyDocumentConfig{
		Statement: rendered,
	})
}

// RoleProps describe a role assumed by one AWS service on behalf of this
// account only.
type RoleProps struct {
	// Name of the role, at most 64 characters.
	Name        string
	Description string
	// Service is the principal allowed to assume the role, e.g.
	// "ecs-tasks.amazonaws.com".
	Service string
	// Account goes into the trust policy's aws:SourceAccount condition, so
	// the service assumes the role only on behalf of this account (confused
	// deputy protection).
	Account string
	// SourceArnLike narrows the trust to the ARNs of the calling resources
	// (aws:SourceArn), when the service sets it.
	SourceArnLike string
	// Statements of the role's inline policy.
	Statements []Statement
}

// Role is an IAM role with an inline policy.
type Role struct {
	constructs.Construct
	Role iamrole.IamRole
	// Policy is nil when the role has no statements.
	Policy iamrolepolicy.IamRolePolicy
}

func (p *RoleProps) validate() error {
	var errs []error
	if p.Name == "" || len(p.Name) > 64 {
		errs = append(errs, fmt.Errorf("Name %q must be 1..64 characters", p.Name))
	}
	if p.Service == "" {
		errs = append(errs, errors.New("Service is required"))
	}
	if !accountPattern.MatchString(p.Account) {
		errs = append(errs, fmt.Errorf("Account %q is not a 12-digit account", p.Account))
	}
	if err := checkStatements(p.Statements, identityPolicy); err != nil {
		errs = append(errs, fmt.Errorf("Statements: %w", err))
	}
	return errors.Join(errs...)
}

// NewRole creates the role, its trust policy and its inline policy.
func NewRole(scope constructs.Construct, id string, props *RoleProps) *Role {
	if props == nil {
		props = &RoleProps{}
	}
	if err := props.validate(); err != nil {
		panic(fmt.Errorf("herald: role %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	trust := Statement{
		Sid:        "AssumedByServiceForThisAccount",
		Actions:    []string{"sts:AssumeRole"},
		Principals: []Principal{{Type: "Service", Identifiers: []string{props.Service}}},
		Conditions: []Condition{{Test: "StringEquals", Variable: "aws:SourceAccount", Values: []string{props.Account}}},
	}
	if props.SourceArnLike != "" {
		trust.Conditions = append(trust.Conditions, Condition{Test: "ArnLike", Variable: "aws:SourceArn", Values: []string{props.SourceArnLike}})
	}
	trustDoc := newPolicyDocument(c, "trust", []Statement{trust}, trustPolicy)
	r := &Role{Construct: c}
	r.Role = iamrole.NewIamRole(c, jsii.String("role"), &iamrole.IamRoleConfig{
		Name:             jsii.String(props.Name),
		Description:      jsii.String(props.Description),
		AssumeRolePolicy: trustDoc.Json(),
	})
	if len(props.Statements) > 0 {
		doc := newPolicyDocument(c, "policy-document", props.Statements, identityPolicy)
		r.Policy = iamrolepolicy.NewIamRolePolicy(c, jsii.String("policy"), &iamrolepolicy.IamRolePolicyConfig{
			Name:   jsii.String(props.Name),
			Role:   r.Role.Id(),
			Policy: doc.Json(),
		})
	}
	return r
}
