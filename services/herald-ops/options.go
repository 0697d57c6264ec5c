package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"herald/services/contract"
)

// Stack output names (stacks/herald.go declares them) for what herald-ops
// works on.
const (
	outputQueueURL  = "queue_url"
	outputDLQURL    = "dlq_url"
	outputSecretARN = "api_keys_secret_arn"
	outputAPIURL    = "api_url"
)

// target is what a command works on: the stack's queues, secret and API,
// and the AWS region.
type target struct {
	outputs, stack                     string
	region                             string
	queueURL, dlqURL, secretID, apiURL string
}

// setting is one target field: its flag, variable and stack output.
type setting struct {
	flag, variable, output, usage string
	value                         *string
}

func (t *target) settings() []setting {
	return []setting{
		{"queue-url", contract.QueueURL.Name, outputQueueURL, "the notification queue's URL", &t.queueURL},
		{"dlq-url", contract.DLQURL.Name, outputDLQURL, "the dead-letter queue's URL", &t.dlqURL},
		{"secret-id", contract.APIKeysSecretID.Name, outputSecretARN, "the API-key hash secret (name or ARN)", &t.secretID},
		{"api-url", contract.OpsAPIURL, outputAPIURL, "the notification API's base URL, whose /readyz shows the key version in use", &t.apiURL},
	}
}

// register adds the target flags to a command's flag set: the outputs
// file, the region, and the settings the command uses.
func (t *target) register(fs *flag.FlagSet, uses []string) {
	fs.StringVar(&t.outputs, "outputs", "", "stack outputs `file`: cdktf's --outputs-file, `terraform output -json`, or a flat JSON object ["+contract.OpsOutputs+"]")
	fs.StringVar(&t.stack, "stack", "", "the `stack` to read in an outputs file that holds several ["+contract.OpsStack+"]")
	fs.StringVar(&t.region, "region", "", "AWS `region` (default: from the URLs, else the SDK's) ["+contract.Region.Name+"]")
	for _, s := range t.settings() {
		if slices.Contains(uses, s.flag) {
			fs.StringVar(s.value, s.flag, "", fmt.Sprintf("%s [%s; output %s]", s.usage, s.variable, s.output))
		}
	}
}

// resolve fills what no flag set from the environment, then from the
// outputs file.
func (t *target) resolve(getenv func(string) string) error {
	fill := func(v *string, variable string) {
		if *v == "" {
			*v = getenv(variable)
		}
	}
	fill(&t.outputs, contract.OpsOutputs)
	fill(&t.stack, contract.OpsStack)
	fill(&t.region, contract.Region.Name)
	for _, s := range t.settings() {
		fill(s.value, s.variable)
	}
	if t.outputs != "" {
		outs, err := readOutputs(t.outputs, t.stack)
		if err != nil {
			return err
		}
		for _, s := range t.settings() {
			if *s.value == "" {
				*s.value = outs[s.output]
			}
		}
	}
	if t.region == "" {
		t.region = regionOf(t.queueURL, t.dlqURL, t.secretID)
	}
	return nil
}

// need fails unless every named setting has a value, saying where each can
// come from.
func (t *target) need(flags ...string) error {
	var missing []string
	for _, f := range flags {
		for _, s := range t.settings() {
			if s.flag == f && *s.value == "" {
				missing = append(missing, fmt.Sprintf("-%s (or %s, or output %s with -outputs)", s.flag, s.variable, s.output))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, " and "))
	}
	return nil
}

// readOutputs reads stack outputs from any of the forms the tools write:
//
//	{"queue_url": "..."}                                flat
//	{"queue_url": {"value": "...", "type": "string"}}   terraform output -json
//	{"herald-dev": {"queue_url": "..."}}                cdktf --outputs-file, one object per stack
func readOutputs(path, stack string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stack outputs: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("stack outputs %s: not a JSON object: %w", path, err)
	}
	flat := map[string]string{}
	stacks := map[string]map[string]json.RawMessage{}
	for name, raw := range top {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			flat[name] = s
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			continue // numbers, lists: not what herald-ops reads
		}
		if v, ok := obj["value"]; ok {
			if json.Unmarshal(v, &s) == nil {
				flat[name] = s
			}
			continue
		}
		stacks[name] = obj
	}
	if len(flat) > 0 {
		return flat, nil
	}
	names := make([]string, 0, len(stacks))
	for name := range stacks {
		names = append(names, name)
	}
	sort.Strings(names)
	switch {
	case len(stacks) == 0:
		return nil, fmt.Errorf("stack outputs %s: no outputs found", path)
	case stack == "" && len(stacks) > 1:
		return nil, fmt.Errorf("stack outputs %s hold the stacks %s: choose one with -stack or %s", path, strings.Join(names, ", "), contract.OpsStack)
	case stack == "":
		stack = names[0]
	}
	obj, ok := stacks[stack]
	if !ok {
		return nil, fmt.Errorf("stack outputs %s: no stack %q (have %s)", path, stack, strings.Join(names, ", "))
	}
	for name, raw := range obj {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			flat[name] = s
		}
	}
	return flat, nil
}

// awsRegion finds the region in an SQS URL (https://sqs.<region>.amazonaws.com/...)
// or an ARN (arn:aws:secretsmanager:<region>:...).
var awsRegion = regexp.MustCompile(`^(?:https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/|arn:aws[a-z-]*:[a-z]+:([a-z0-9-]+):)`)

func regionOf(candidates ...string) string {
	for _, c := range candidates {
		if m := awsRegion.FindStringSubmatch(c); m != nil {
			return m[1] + m[2]
		}
	}
	return ""
}
