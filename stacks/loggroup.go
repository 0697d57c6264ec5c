package stacks

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/cloudwatchloggroup"
)

// LogGroupProps describe a CloudWatch log group.
type LogGroupProps struct {
	// Name of the group, e.g. "/herald/herald-dev/notification-api".
	Name string
	// RetentionDays is one of CloudWatch's retention values; default 30.
	RetentionDays int
	// KMSKeyARN encrypts the group; required. The key policy must let
	// logs.<region>.amazonaws.com use it for this group.
	KMSKeyARN *string
}

// LogGroup is an encrypted log group with retention.
type LogGroup struct {
	constructs.Construct
	Group cloudwatchloggroup.CloudwatchLogGroup
	// Name is known at synth time (for container log configuration and the
	// dashboard).
	Name string
}

func (p *LogGroupProps) validate() error {
	var errs []error
	if !strings.HasPrefix(p.Name, "/") || len(p.Name) > 512 {
		errs = append(errs, fmt.Errorf("Name %q must start with / and be at most 512 characters", p.Name))
	}
	if !slices.Contains(logRetentionDays, p.RetentionDays) {
		errs = append(errs, fmt.Errorf("RetentionDays %d is not a CloudWatch retention: want one of %v", p.RetentionDays, logRetentionDays))
	}
	if p.KMSKeyARN == nil {
		errs = append(errs, errors.New("KMSKeyARN is required: every Herald log group is encrypted"))
	}
	return errors.Join(errs...)
}

// NewLogGroup creates the log group.
func NewLogGroup(scope constructs.Construct, id string, props *LogGroupProps) *LogGroup {
	if props == nil {
		props = &LogGroupProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: log group %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	g := cloudwatchloggroup.NewCloudwatchLogGroup(c, jsii.String("group"), &cloudwatchloggroup.CloudwatchLogGroupConfig{
		Name:            jsii.String(p.Name),
		RetentionInDays: jsii.Number(float64(p.RetentionDays)),
		KmsKeyId:        p.KMSKeyARN,
	})
	return &LogGroup{Construct: c, Group: g, Name: p.Name}
}
