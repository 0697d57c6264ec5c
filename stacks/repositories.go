package stacks

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ecrlifecyclepolicy"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/ecrrepository"
)

// RepositoriesProps describe the ECR repositories of the service images.
type RepositoriesProps struct {
	// Prefix of the repository names: "<Prefix>/<image>".
	Prefix  string
	Account string
	Region  string
	// Images are the repository names under Prefix, e.g. "notification-api".
	Images []string
	// KeepImages per repository; default 30.
	KeepImages int
	// ForceDelete lets a destroy remove repositories that hold images.
	ForceDelete bool
}

// Repository is one ECR repository.
type Repository struct {
	Repository ecrrepository.EcrRepository
	// Name and URL are known at synth time.
	Name string
	URL  string
	ARN  string
}

// Repositories are the image repositories, encrypted with their own key.
type Repositories struct {
	constructs.Construct
	Key *Key
	// ByImage maps an image name to its repository.
	ByImage map[string]*Repository
}

func (p *RepositoriesProps) validate() error {
	var errs []error
	if p.Prefix == "" {
		errs = append(errs, errors.New("Prefix is required"))
	}
	if len(p.Images) == 0 {
		errs = append(errs, errors.New("Images is empty"))
	}
	if p.KeepImages < 1 || p.KeepImages > 1000 {
		errs = append(errs, fmt.Errorf("KeepImages %d is outside 1..1000", p.KeepImages))
	}
	return errors.Join(errs...)
}

// lifecyclePolicy expires untagged layers after a week and keeps the newest
// keep images.
func lifecyclePolicy(keep int) string {
	type selection struct {
		TagStatus   string `json:"tagStatus"`
		CountType   string `json:"countType"`
		CountUnit   string `json:"countUnit,omitempty"`
		CountNumber int    `json:"countNumber"`
	}
	type rule struct {
		RulePriority int               `json:"rulePriority"`
		Description  string            `json:"description"`
		Selection    selection         `json:"selection"`
		Action       map[string]string `json:"action"`
	}
	doc := map[string][]rule{"rules": {
		{1, "expire untagged images after 7 days", selection{"untagged", "sinceImagePushed", "days", 7}, map[string]string{"type": "expire"}},
		{2, fmt.Sprintf("keep the newest %d images", keep), selection{"any", "imageCountMoreThan", "", keep}, map[string]string{"type": "expire"}},
	}}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// NewRepositories creates one repository per image.
func NewRepositories(scope constructs.Construct, id string, props *RepositoriesProps) *Repositories {
	if props == nil {
		props = &RepositoriesProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: repositories %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	r := &Repositories{Construct: c, ByImage: map[string]*Repository{}}
	r.Key = NewKey(c, "key", &KeyProps{
		Alias:              p.Prefix + "-images",
		Description:        "Encrypts the container images of " + p.Prefix,
		Account:            p.Account,
		Region:             p.Region,
		DeletionWindowDays: keyDeletionWindowDays,
	})
	for _, image := range p.Images {
		name := p.Prefix + "/" + image
		repo := ecrrepository.NewEcrRepository(c, jsii.String(image), &ecrrepository.EcrRepositoryConfig{
			Name:               jsii.String(name),
			ImageTagMutability: jsii.String("IMMUTABLE"),
			ForceDelete:        jsii.Bool(p.ForceDelete),
			ImageScanningConfiguration: &ecrrepository.EcrRepositoryImageScanningConfiguration{
				ScanOnPush: jsii.Bool(true),
			},
			EncryptionConfiguration: []*ecrrepository.EcrRepositoryEncryptionConfiguration{{
				EncryptionType: jsii.String("KMS"),
				KmsKey:         r.Key.Key.Arn(),
			}},
		})
		ecrlifecyclepolicy.NewEcrLifecyclePolicy(c, jsii.String(image+"-lifecycle"), &ecrlifecyclepolicy.EcrLifecyclePolicyConfig{
			Repository: repo.Name(),
			Policy:     jsii.String(lifecyclePolicy(p.KeepImages)),
		})
		r.ByImage[image] = &Repository{
			Repository: repo,
			Name:       name,
			URL:        fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com/%s", p.Account, p.Region, name),
			ARN:        fmt.Sprintf("arn:%s:ecr:%s:%s:repository/%s", partition(p.Region), p.Region, p.Account, name),
		}
	}
	return r
}
