package stacks

import (
	"encoding/json"
	"strings"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// jsonDocument renders v as a JSON string attribute. A document that embeds
// a reference (a cdktf token) becomes Terraform's jsonencode(...) instead:
// cdktf's HCL output does not escape a JSON string around a reference.
func jsonDocument(v any) *string {
	text := mustJSON(v)
	if !strings.Contains(text, "${") {
		return jsii.String(text)
	}
	var generic any
	if err := json.Unmarshal([]byte(text), &generic); err != nil {
		panic(err)
	}
	return cdktf.Token_AsString(cdktf.Fn_Jsonencode(generic), nil)
}
