package stacks

import (
	"fmt"
	"strings"

	"herald/services/contract"
)

// CopyVariable names the synth-time override that synthesizes only a
// throwaway copy of one environment (main.go reads it):
// "<environment>:<name>[:<mesh mode>]". The end-to-end suite in
// tests/deployed deploys such copies under a unique name per run.
const CopyVariable = contract.SynthCopy

// Copy is a throwaway copy of e named name, that can be deployed beside e in
// the same account and destroyed without leftovers: the stack is
// "herald-<name>" and every resource name follows from it; the SES identity
// is used but never managed (it belongs to e and must already be verified);
// state is local; the load balancer and the table have no deletion
// protection, the load balancer no alias
// record (the domain is e's); the repositories and the access log bucket
// are deleted with their contents; no address is subscribed to the alarms. mode, when set, replaces the mesh mode (its Envoy settings
// reset to the defaults when the mode changes). Construct ids do not depend
// on the name, only resource names do.
func (e Environment) Copy(name string, mode MeshMode) Environment {
	c := e
	c.Name = name
	c.Tags = mergeTags(e.Tags, map[string]string{CopyTag: e.Name})
	c.State = StateConfig{}
	c.Email.ManageIdentity = false
	c.Ingress.DeletionProtection = false
	c.Store.DeletionProtection = false
	// The original owns its domain's record; the copy is reached under
	// its load balancer's own name (with the original's certificate).
	c.Ingress.Domain, c.Ingress.HostedZoneID = "", ""
	c.Ingress.AccessLogs.ForceDestroy = c.Ingress.AccessLogs.Enabled
	c.Repositories.ForceDelete = true
	c.Observability.AlarmEmail = ""
	if mode != "" && mode != e.WithDefaults().Mesh.Mode {
		c.Mesh = MeshConfig{Mode: mode}
	}
	return c
}

// SelectCopy applies a CopyVariable value to envs: it returns the one copy
// the value asks for. The copy is validated with the other environments'
// rules by the caller.
func SelectCopy(envs []Environment, spec string) ([]Environment, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("%s=%q: want <environment>:<name>[:<mesh mode>]", CopyVariable, spec)
	}
	base, name := parts[0], parts[1]
	var mode MeshMode
	if len(parts) == 3 {
		mode = MeshMode(parts[2])
		if mode != MeshServiceConnect && mode != MeshAppMesh {
			return nil, fmt.Errorf("%s=%q: mesh mode %q: want %q or %q", CopyVariable, spec, mode, MeshServiceConnect, MeshAppMesh)
		}
	}
	var names []string
	for _, e := range envs {
		if e.Name == name {
			return nil, fmt.Errorf("%s=%q: %q is already an environment's name", CopyVariable, spec, name)
		}
		names = append(names, e.Name)
	}
	for _, e := range envs {
		if e.Name == base {
			return []Environment{e.Copy(name, mode)}, nil
		}
	}
	return nil, fmt.Errorf("%s=%q: no environment %q (have %s)", CopyVariable, spec, base, strings.Join(names, ", "))
}

// CopyTag is the tag every resource of a copy carries (a provider default
// tag), with the copied environment's name as its value. No other stack
// has it: the cleanup of copies (tests/deployed/cleanup) destroys only a
// state whose resources carry it.
const CopyTag = "HeraldCopyOf"

// EnvironmentTag is the default tag naming a stack's environment on every
// resource (a copy's own name, for a copy).
const EnvironmentTag = "Environment"

// CopyStateBucketVariable names an S3 bucket the copy of CopyVariable keeps
// its state in, instead of a local file: under StateKey, in the
// environment's region, locked with an S3 lock file (Terraform >= 1.10).
// Remote state outlives the machine that deployed the copy, so a later run
// can still destroy it (tests/deployed sets it from HERALD_E2E_STATE_BUCKET).
const CopyStateBucketVariable = contract.SynthCopyStateBucket

// CopyState is the remote state of a copy in bucket.
func CopyState(bucket string) StateConfig {
	return StateConfig{Bucket: bucket, UseLockfile: true}
}

// StateKey is a stack's default object key in a state bucket.
func StateKey(stack string) string {
	return "herald/" + stack + ".tfstate"
}

// AWSProviderVersion is the hashicorp/aws provider version of the pinned
// bindings (DEVELOPERS.md); a test holds it to the synthesized stacks. The
// cleanup of copies destroys with it.
const AWSProviderVersion = "5.88.0"
