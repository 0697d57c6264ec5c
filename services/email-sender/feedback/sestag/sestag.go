// Package sestag sets the SES message tag that ties each send to its
// notification (contract.SESNotificationTag), for the transport and the
// tests that send as it does. It imports only the contract of Herald, so
// the transport can use it without a cycle (the feedback package imports
// the sender's consumer, which imports the transport).
package sestag

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/contract"
)

// WithNotificationTag returns tags with the notification id as
// contract.SESNotificationTag, replacing any tag of that name: a caller's metadata must
// not name another notification, and the send carries the name once. The
// transport's one-line change (FEEDBACK.md):
//
//	EmailTags: sestag.WithNotificationTag(EmailTags(e.Metadata), e.ID),
func WithNotificationTag(tags []types.MessageTag, id string) []types.MessageTag {
	out := make([]types.MessageTag, 0, len(tags)+1)
	for _, t := range tags {
		if aws.ToString(t.Name) != contract.SESNotificationTag {
			out = append(out, t)
		}
	}
	return append(out, types.MessageTag{Name: aws.String(contract.SESNotificationTag), Value: aws.String(id)})
}
