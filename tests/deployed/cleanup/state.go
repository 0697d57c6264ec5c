package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"herald/stacks"
)

// stateInfo is what the cleanup reads from a Terraform state (format 4).
type stateInfo struct {
	// resources counts the managed resource instances.
	resources int
	// providers are the provider source addresses the resources use.
	providers []string
	// copyOf is the value of stacks.CopyTag on the state's resources; empty
	// when none carries it.
	copyOf string
	// region and account of the resources, from the first regional ARN.
	region, account string
}

var (
	providerAddress = regexp.MustCompile(`^provider\["([^"]+)"\](\..+)?$`)
	regionalARN     = regexp.MustCompile(`arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-[0-9]+):([0-9]{12}):`)
)

func parseState(b []byte) (stateInfo, error) {
	var st struct {
		Version   int `json:"version"`
		Resources []struct {
			Mode      string `json:"mode"`
			Type      string `json:"type"`
			Name      string `json:"name"`
			Provider  string `json:"provider"`
			Instances []struct {
				Attributes json.RawMessage `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return stateInfo{}, fmt.Errorf("not a Terraform state: %w", err)
	}
	if st.Version != 4 {
		return stateInfo{}, fmt.Errorf("state format %d, want 4 (Terraform >= 0.12)", st.Version)
	}
	var info stateInfo
	for _, r := range st.Resources {
		if r.Mode != "managed" || len(r.Instances) == 0 {
			continue
		}
		m := providerAddress.FindStringSubmatch(r.Provider)
		if m == nil {
			return stateInfo{}, fmt.Errorf("%s.%s: provider %q is not a provider address", r.Type, r.Name, r.Provider)
		}
		if m[2] != "" {
			return stateInfo{}, fmt.Errorf("%s.%s: provider alias %q: a copy uses one provider configuration", r.Type, r.Name, m[2])
		}
		if !slices.Contains(info.providers, m[1]) {
			info.providers = append(info.providers, m[1])
		}
		info.resources += len(r.Instances)
		for _, in := range r.Instances {
			if info.copyOf == "" {
				info.copyOf = findTag(in.Attributes, stacks.CopyTag)
			}
			if info.region == "" {
				if m := regionalARN.FindSubmatch(in.Attributes); m != nil {
					info.region, info.account = string(m[1]), string(m[2])
				}
			}
		}
	}
	slices.Sort(info.providers)
	return info, nil
}

// findTag looks through a resource's attributes for a tags_all map (the
// provider's tags merged with its default tags) holding key, and returns
// its value.
func findTag(raw json.RawMessage, key string) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			if tags, ok := x["tags_all"].(map[string]any); ok {
				if s, ok := tags[key].(string); ok && s != "" {
					return s
				}
			}
			for _, k := range slices.Sorted(maps.Keys(x)) {
				if s := walk(x[k]); s != "" {
					return s
				}
			}
		case []any:
			for _, e := range x {
				if s := walk(e); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}

// Provider source addresses in a copy's state.
const (
	awsProvider       = "registry.terraform.io/hashicorp/aws"
	builtinTerraform  = "terraform.io/builtin/terraform"
	awsProviderSource = "hashicorp/aws"
)

// destroyConfig is the Terraform configuration (JSON syntax) that destroys
// everything in the state of ref: its backend, and the providers its
// resources use. With no resource in the configuration, every resource of
// the state is an orphan, which Terraform destroys in the reverse order of
// the dependencies it recorded in the state.
func destroyConfig(ref stateRef, info stateInfo, region string) ([]byte, error) {
	backend := map[string]any{}
	if ref.path != "" {
		abs, err := filepath.Abs(ref.path)
		if err != nil {
			return nil, err
		}
		backend["local"] = map[string]any{"path": abs}
	} else {
		// as stacks.CopyState configures it
		backend["s3"] = map[string]any{"bucket": ref.bucket, "key": ref.key, "region": region, "encrypt": true, "use_lockfile": true}
	}
	tf := map[string]any{"backend": backend}
	doc := map[string]any{"terraform": tf}
	var unknown []string
	for _, p := range info.providers {
		switch p {
		case awsProvider:
			stackRegion := info.region
			if stackRegion == "" {
				stackRegion = region
			}
			if stackRegion == "" {
				return nil, errors.New("the state names no region (no regional ARN) and none is set: set AWS_REGION or -region")
			}
			aws := map[string]any{"region": stackRegion}
			if info.account != "" {
				// refuse credentials of another account, as the stack does
				aws["allowed_account_ids"] = []string{info.account}
			}
			tf["required_providers"] = map[string]any{"aws": map[string]any{"source": awsProviderSource, "version": stacks.AWSProviderVersion}}
			doc["provider"] = map[string]any{"aws": []any{aws}}
		case builtinTerraform:
			// terraform_data needs no configuration
		default:
			unknown = append(unknown, p)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("providers %s: a copy uses only %s", strings.Join(unknown, ", "), awsProvider)
	}
	return json.MarshalIndent(doc, "", "  ")
}
