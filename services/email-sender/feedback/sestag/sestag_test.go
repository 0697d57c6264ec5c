package sestag

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/contract"
)

const id = "018f6a4c-2b1e-7c3d-9e4f-5a6b7c8d9e0f"

func TestWithNotificationTag(t *testing.T) {
	tag := func(n, v string) types.MessageTag { return types.MessageTag{Name: aws.String(n), Value: aws.String(v)} }
	// A caller's metadata naming the tag cannot point events at another
	// notification, and the name appears once.
	got := WithNotificationTag([]types.MessageTag{tag("team", "billing"), tag(contract.SESNotificationTag, "forged")}, id)
	var s []string
	for _, t := range got {
		s = append(s, aws.ToString(t.Name)+"="+aws.ToString(t.Value))
	}
	if want := "team=billing " + contract.SESNotificationTag + "=" + id; strings.Join(s, " ") != want {
		t.Fatalf("tags %v, want %s", s, want)
	}
	if got := WithNotificationTag(nil, id); len(got) != 1 {
		t.Fatalf("tags of a send without metadata: %v", got)
	}
}
