package stacks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ssmparameter"
)

// PublishedParameter is one value service teams read: never a secret,
// only names, URLs and ARNs (TestPublishedParametersHoldNoSecrets).
type PublishedParameter struct {
	Name        string
	Description string
	Value       *string
}

// PublishedProps describe the parameters a stack publishes for the teams
// that call Herald (issue 15), so they read them with a data source and
// need no access to Herald's Terraform state.
type PublishedProps struct {
	// Path is the parameters' common prefix, "/herald/<environment>".
	Path       string
	Parameters []PublishedParameter
}

// Published are the SSM String parameters under Path, by Name.
type Published struct {
	constructs.Construct
	Path       string
	Parameters map[string]ssmparameter.SsmParameter
}

func (p *PublishedProps) validate() error {
	var errs []error
	if !strings.HasPrefix(p.Path, "/") || strings.HasSuffix(p.Path, "/") {
		errs = append(errs, fmt.Errorf("Path %q: want /a/b, without a trailing slash", p.Path))
	}
	seen := map[string]bool{}
	for _, prm := range p.Parameters {
		if !secretNamePattern.MatchString(prm.Name) || seen[prm.Name] {
			errs = append(errs, fmt.Errorf("Parameters: %q is not a unique plain name", prm.Name))
		}
		if prm.Value == nil || prm.Description == "" {
			errs = append(errs, fmt.Errorf("Parameters: %q needs a value and a description", prm.Name))
		}
		seen[prm.Name] = true
	}
	if len(p.Parameters) == 0 {
		errs = append(errs, errors.New("Parameters: none"))
	}
	return errors.Join(errs...)
}

// NewPublished creates one String parameter per value.
func NewPublished(scope constructs.Construct, id string, props *PublishedProps) *Published {
	if props == nil {
		props = &PublishedProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: published %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	out := &Published{Construct: c, Path: p.Path, Parameters: map[string]ssmparameter.SsmParameter{}}
	for _, prm := range p.Parameters {
		out.Parameters[prm.Name] = ssmparameter.NewSsmParameter(c, jsii.String(prm.Name), &ssmparameter.SsmParameterConfig{
			Name:        jsii.String(p.Path + "/" + prm.Name),
			Description: jsii.String(prm.Description),
			// String, never SecureString: nothing here is a secret.
			Type:  jsii.String("String"),
			Value: prm.Value,
		})
	}
	return out
}

// ParameterPath is where a stack of the environment publishes its
// parameters.
func ParameterPath(environment string) string { return "/herald/" + environment }

// dashboardURL is the console address of a CloudWatch dashboard.
func dashboardURL(region, name string) string {
	return fmt.Sprintf("https://%s.console.aws.amazon.com/cloudwatch/home?region=%s#dashboards:name=%s", region, region, name)
}
