package stacks

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/secretsmanagersecret"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/secretsmanagersecretversion"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ssmparameter"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// SecretSpec names a Secrets Manager secret. Its value is never part of the
// stack: an operator sets it after deploy (stacks/README.md shows how).
type SecretSpec struct {
	Name        string
	Description string
	// InitialValue, when set, is a placeholder that holds no secret (the
	// API key set "{}"): the secret's first version, so that its reader
	// starts before an operator sets the real value. Terraform never
	// touches it again: later values come from the operator.
	InitialValue string
}

// initialStage labels the placeholder version for good. Secrets Manager
// deletes versions left without a label; if the placeholder were deleted,
// Terraform would create it again as the current version and put the
// placeholder back over the operator's value.
const initialStage = "herald-initial"

// ParameterSpec is a non-secret SSM String parameter with its value.
type ParameterSpec struct {
	Name        string
	Description string
	Value       string
}

// SecretsProps describe Herald's secrets and parameters.
type SecretsProps struct {
	// Prefix of every name: secrets "<Prefix>/<Name>", parameters
	// "/<Prefix>/<Name>".
	Prefix  string
	Account string
	Region  string
	Secrets []SecretSpec
	// Parameters hold settings that are not secret but are changed without
	// a new task definition revision.
	Parameters []ParameterSpec
	// RecoveryWindowDays before a deleted secret is gone, 7 to 30.
	RecoveryWindowDays int
}

// Secrets are the KMS-encrypted secrets and the parameters, by Name.
type Secrets struct {
	constructs.Construct
	Key     *Key
	Secrets map[string]secretsmanagersecret.SecretsmanagerSecret
	// Initial are the placeholder versions, by secret Name.
	Initial    map[string]secretsmanagersecretversion.SecretsmanagerSecretVersion
	Parameters map[string]ssmparameter.SsmParameter
	// SecretNames and ParameterARNs are known at synth time.
	SecretNames   map[string]string
	ParameterARNs map[string]string
	region        string
}

// GrantRead lets a role read secrets by Name, decrypting them with the
// secrets' key through Secrets Manager only. The statements' Sids are
// "Read<what>" and "Decrypt<what>".
func (s *Secrets) GrantRead(what string, names ...string) []Statement {
	arns := make([]string, len(names))
	for i, n := range names {
		arns[i] = *s.Secrets[n].Arn()
	}
	return []Statement{
		{Sid: "Read" + what, Actions: []string{"secretsmanager:GetSecretValue"}, Resources: arns},
		{Sid: "Decrypt" + what, Actions: []string{"kms:Decrypt"}, Resources: []string{*s.Key.Key.Arn()}, Conditions: viaService("secretsmanager", s.region)},
	}
}

// GrantReadParameters lets a role read parameters by Name (ECS resolving a
// task's secrets from them); Sid "Read<what>".
func (s *Secrets) GrantReadParameters(what string, names ...string) Statement {
	arns := make([]string, len(names))
	for i, n := range names {
		arns[i] = *s.Parameters[n].Arn()
	}
	return Statement{Sid: "Read" + what, Actions: []string{"ssm:GetParameters"}, Resources: arns}
}

var secretNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (p *SecretsProps) validate() error {
	var errs []error
	if p.Prefix == "" {
		errs = append(errs, errors.New("Prefix is required"))
	}
	if p.RecoveryWindowDays < 7 || p.RecoveryWindowDays > 30 {
		errs = append(errs, fmt.Errorf("RecoveryWindowDays %d is outside 7..30", p.RecoveryWindowDays))
	}
	seen := map[string]bool{}
	for _, s := range p.Secrets {
		if !secretNamePattern.MatchString(s.Name) || seen[s.Name] {
			errs = append(errs, fmt.Errorf("Secrets: %q is not a unique plain name", s.Name))
		}
		if s.InitialValue != "" && !json.Valid([]byte(s.InitialValue)) {
			errs = append(errs, fmt.Errorf("Secrets: %q: InitialValue is not JSON", s.Name))
		}
		seen[s.Name] = true
	}
	for _, s := range p.Parameters {
		if !secretNamePattern.MatchString(s.Name) || seen[s.Name] {
			errs = append(errs, fmt.Errorf("Parameters: %q is not a unique plain name", s.Name))
		}
		if s.Value == "" {
			errs = append(errs, fmt.Errorf("Parameters: %q has no value", s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// NewSecrets creates the key, the secrets (without values, or with their
// placeholder) and parameters.
func NewSecrets(scope constructs.Construct, id string, props *SecretsProps) *Secrets {
	if props == nil {
		props = &SecretsProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: secrets %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	s := &Secrets{
		Construct:     c,
		Secrets:       map[string]secretsmanagersecret.SecretsmanagerSecret{},
		Initial:       map[string]secretsmanagersecretversion.SecretsmanagerSecretVersion{},
		Parameters:    map[string]ssmparameter.SsmParameter{},
		SecretNames:   map[string]string{},
		ParameterARNs: map[string]string{},
		region:        p.Region,
	}
	// Readers use the key through Secrets Manager with their own IAM
	// permissions.
	s.Key = NewKey(c, "key", &KeyProps{
		Alias:       p.Prefix + "-secrets",
		Description: "Encrypts the secrets of " + p.Prefix,
		Account:     p.Account,
		Region:      p.Region,
		// The secrets' own recovery window is the shorter one: a key
		// deleted first would leave them unreadable.
		DeletionWindowDays: keyDeletionWindowDays,
	})
	for _, spec := range p.Secrets {
		s.SecretNames[spec.Name] = p.Prefix + "/" + spec.Name
		s.Secrets[spec.Name] = secretsmanagersecret.NewSecretsmanagerSecret(c, jsii.String(spec.Name), &secretsmanagersecret.SecretsmanagerSecretConfig{
			Name:                 jsii.String(s.SecretNames[spec.Name]),
			Description:          jsii.String(spec.Description),
			KmsKeyId:             s.Key.Key.Arn(),
			RecoveryWindowInDays: jsii.Number(float64(p.RecoveryWindowDays)),
		})
		if spec.InitialValue == "" {
			continue
		}
		s.Initial[spec.Name] = secretsmanagersecretversion.NewSecretsmanagerSecretVersion(c, jsii.String(spec.Name+"-initial"), &secretsmanagersecretversion.SecretsmanagerSecretVersionConfig{
			SecretId:      s.Secrets[spec.Name].Id(),
			SecretString:  jsii.String(spec.InitialValue),
			VersionStages: jsii.Strings("AWSCURRENT", initialStage),
			// The operator's put-secret-value moves AWSCURRENT to a new
			// version; Terraform must neither move it back nor rewrite the
			// placeholder.
			Lifecycle: &cdktf.TerraformResourceLifecycle{IgnoreChanges: jsii.Strings("secret_string", "version_stages")},
		})
	}
	for _, spec := range p.Parameters {
		s.ParameterARNs[spec.Name] = fmt.Sprintf("arn:%s:ssm:%s:%s:parameter/%s/%s", partition(p.Region), p.Region, p.Account, p.Prefix, spec.Name)
		s.Parameters[spec.Name] = ssmparameter.NewSsmParameter(c, jsii.String(spec.Name), &ssmparameter.SsmParameterConfig{
			Name:        jsii.String("/" + p.Prefix + "/" + spec.Name),
			Description: jsii.String(spec.Description),
			Type:        jsii.String("String"),
			Value:       jsii.String(spec.Value),
		})
	}
	return s
}
