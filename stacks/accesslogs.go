package stacks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/s3bucket"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/s3bucketlifecycleconfiguration"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/s3bucketownershipcontrols"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/s3bucketpolicy"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/s3bucketpublicaccessblock"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/s3bucketserversideencryptionconfiguration"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// elbLogAccounts are the Elastic Load Balancing accounts that deliver access
// logs in the Regions that opened before August 2022 (AWS's "Enable access
// logs for your Application Load Balancer", step 2; the AWS provider's
// aws_elb_service_account holds the same table). Regions opened since
// deliver as the service principal logDeliveryPrincipal instead.
var elbLogAccounts = map[string]string{
	"af-south-1": "098369216593", "ap-east-1": "754344448648",
	"ap-northeast-1": "582318560864", "ap-northeast-2": "600734575887", "ap-northeast-3": "383597477331",
	"ap-south-1": "718504428378", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
	"ap-southeast-3": "589379963580", "ca-central-1": "985666609251",
	"cn-north-1": "638102146993", "cn-northwest-1": "037604701340",
	"eu-central-1": "054676820928", "eu-north-1": "897822967062", "eu-south-1": "635631232127",
	"eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-west-3": "009996457667",
	"me-south-1": "076674570225", "sa-east-1": "507241528517",
	"us-east-1": "127311923021", "us-east-2": "033677994240",
	"us-gov-east-1": "190560391635", "us-gov-west-1": "048591011584",
	"us-west-1": "027434742980", "us-west-2": "797873946194",
}

// logDeliveryPrincipal delivers load balancer access logs in the Regions
// opened since August 2022.
const logDeliveryPrincipal = "logdelivery.elasticloadbalancing.amazonaws.com"

// elbLogWriter is who writes a Region's load balancer access logs.
func elbLogWriter(region string) Principal {
	if account, ok := elbLogAccounts[region]; ok {
		return Principal{Type: "AWS", Identifiers: []string{fmt.Sprintf("arn:%s:iam::%s:root", partition(region), account)}}
	}
	return Principal{Type: "Service", Identifiers: []string{logDeliveryPrincipal}}
}

// AccessLogBucketProps describe the bucket a load balancer writes its
// access logs to.
type AccessLogBucketProps struct {
	// Name of the bucket (globally unique, 3..63 characters).
	Name    string
	Account string
	Region  string
	// RetentionDays before a log object expires; default 90.
	RetentionDays int
	// ForceDestroy lets destroy delete the bucket with its objects.
	ForceDestroy bool
}

// AccessLogBucket is an S3 bucket that only the Region's load balancer log
// delivery may write to, over TLS, encrypted with S3-managed keys (the only
// encryption ALB log delivery supports), private, expiring its objects.
type AccessLogBucket struct {
	constructs.Construct
	Bucket s3bucket.S3Bucket
	Policy s3bucketpolicy.S3BucketPolicy
	// Name is known at synth time.
	Name string
	// Ready are the resources a load balancer that logs here must wait for:
	// ELB checks that it may write when access logs are turned on.
	Ready []cdktf.ITerraformDependable
}

func (p *AccessLogBucketProps) validate() error {
	var errs []error
	if !bucketPattern.MatchString(p.Name) || strings.Contains(p.Name, "..") {
		errs = append(errs, fmt.Errorf("Name %q is not an S3 bucket name", p.Name))
	}
	if !accountPattern.MatchString(p.Account) || !regionPattern.MatchString(p.Region) {
		errs = append(errs, errors.New("Account and Region are required"))
	}
	if p.RetentionDays < 1 || p.RetentionDays > 3650 {
		errs = append(errs, fmt.Errorf("RetentionDays %d is outside 1..3650", p.RetentionDays))
	}
	return errors.Join(errs...)
}

// NewAccessLogBucket creates the bucket, its encryption, ownership, public
// access block, lifecycle rule and policy.
func NewAccessLogBucket(scope constructs.Construct, id string, props *AccessLogBucketProps) *AccessLogBucket {
	if props == nil {
		props = &AccessLogBucketProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: access log bucket %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	b := &AccessLogBucket{Construct: c, Name: p.Name}
	b.Bucket = s3bucket.NewS3Bucket(c, jsii.String("bucket"), &s3bucket.S3BucketConfig{
		Bucket:       jsii.String(p.Name),
		ForceDestroy: jsii.Bool(p.ForceDestroy),
	})
	encryption := s3bucketserversideencryptionconfiguration.NewS3BucketServerSideEncryptionConfigurationA(c, jsii.String("encryption"), &s3bucketserversideencryptionconfiguration.S3BucketServerSideEncryptionConfigurationAConfig{
		Bucket: b.Bucket.Id(),
		Rule: []*s3bucketserversideencryptionconfiguration.S3BucketServerSideEncryptionConfigurationRuleA{{
			ApplyServerSideEncryptionByDefault: &s3bucketserversideencryptionconfiguration.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA{
				SseAlgorithm: jsii.String("AES256"),
			},
		}},
	})
	ownership := s3bucketownershipcontrols.NewS3BucketOwnershipControls(c, jsii.String("ownership"), &s3bucketownershipcontrols.S3BucketOwnershipControlsConfig{
		Bucket: b.Bucket.Id(),
		Rule:   &s3bucketownershipcontrols.S3BucketOwnershipControlsRule{ObjectOwnership: jsii.String("BucketOwnerEnforced")},
	})
	private := s3bucketpublicaccessblock.NewS3BucketPublicAccessBlock(c, jsii.String("public-access-block"), &s3bucketpublicaccessblock.S3BucketPublicAccessBlockConfig{
		Bucket:                b.Bucket.Id(),
		BlockPublicAcls:       jsii.Bool(true),
		BlockPublicPolicy:     jsii.Bool(true),
		IgnorePublicAcls:      jsii.Bool(true),
		RestrictPublicBuckets: jsii.Bool(true),
	})
	s3bucketlifecycleconfiguration.NewS3BucketLifecycleConfiguration(c, jsii.String("lifecycle"), &s3bucketlifecycleconfiguration.S3BucketLifecycleConfigurationConfig{
		Bucket: b.Bucket.Id(),
		Rule: []*s3bucketlifecycleconfiguration.S3BucketLifecycleConfigurationRule{{
			Id:     jsii.String("expire-access-logs"),
			Status: jsii.String("Enabled"),
			Filter: []*s3bucketlifecycleconfiguration.S3BucketLifecycleConfigurationRuleFilter{{Prefix: jsii.String("")}},
			Expiration: []*s3bucketlifecycleconfiguration.S3BucketLifecycleConfigurationRuleExpiration{{
				Days: jsii.Number(float64(p.RetentionDays)),
			}},
			AbortIncompleteMultipartUpload: []*s3bucketlifecycleconfiguration.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload{{
				DaysAfterInitiation: jsii.Number(1),
			}},
		}},
	})
	bucketARN := fmt.Sprintf("arn:%s:s3:::%s", partition(p.Region), p.Name)
	doc := newPolicyDocument(c, "policy-document", []Statement{
		{
			Sid:            "LoadBalancerDeliversAccessLogs",
			Actions:        []string{"s3:PutObject"},
			Resources:      []string{bucketARN + "/AWSLogs/" + p.Account + "/*"},
			Principals:     []Principal{elbLogWriter(p.Region)},
			WildcardReason: "the load balancer names its log objects at run time under this account's prefix",
		},
		{
			Sid:            "RefuseUnencryptedTransport",
			Deny:           true,
			Actions:        []string{"s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"},
			Resources:      []string{bucketARN, bucketARN + "/*"},
			Principals:     []Principal{{Type: "*", Identifiers: []string{"*"}}},
			Conditions:     []Condition{{Test: "Bool", Variable: "aws:SecureTransport", Values: []string{"false"}}},
			WildcardReason: "every object of the bucket",
		},
	}, resourcePolicy)
	b.Policy = s3bucketpolicy.NewS3BucketPolicy(c, jsii.String("policy"), &s3bucketpolicy.S3BucketPolicyConfig{
		Bucket: b.Bucket.Id(),
		Policy: doc.Json(),
		// S3 refuses a policy change while the public access block is
		// being applied.
		DependsOn: &[]cdktf.ITerraformDependable{private},
	})
	b.Ready = []cdktf.ITerraformDependable{b.Policy, encryption, ownership}
	return b
}
