package stacks

import (
	"fmt"
	"regexp"
	"strings"

	"herald/services/contract"
)

// ImageRef is a parsed container image reference.
type ImageRef struct {
	// Repository is everything before the tag or digest, registry included.
	Repository string
	Tag        string // set when pinned by tag
	Digest     string // "sha256:<64 hex>" when pinned by digest
}

var (
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	// a registry host (with a dot or a port) and one or more path components
	repoPattern = regexp.MustCompile(`^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	ecrPattern  = regexp.MustCompile(`^([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(.+)$`)
)

// ParseImage accepts "<repository>@sha256:<digest>" or "<repository>:<tag>".
// A reference without either is refused: "latest" is not a release.
func ParseImage(s string) (ImageRef, error) {
	bad := func(why string) (ImageRef, error) {
		return ImageRef{}, fmt.Errorf("%q is not an image reference (%s): want <repository>@sha256:<64 hex digits> (preferred) or <repository>:<tag>", s, why)
	}
	if repo, digest, ok := strings.Cut(s, "@"); ok {
		if !digestPattern.MatchString(digest) {
			return bad("bad digest")
		}
		if !repoPattern.MatchString(repo) {
			return bad("bad repository")
		}
		return ImageRef{Repository: repo, Digest: digest}, nil
	}
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Contains(s[i:], "/") {
		return bad("no tag or digest")
	}
	repo, tag := s[:i], s[i+1:]
	if !tagPattern.MatchString(tag) {
		return bad("bad tag")
	}
	if !repoPattern.MatchString(repo) {
		return bad("bad repository")
	}
	return ImageRef{Repository: repo, Tag: tag}, nil
}

// String is the reference as ECS takes it.
func (r ImageRef) String() string {
	if r.Digest != "" {
		return r.Repository + "@" + r.Digest
	}
	return r.Repository + ":" + r.Tag
}

// ECRRepositoryARN is the ARN of the ECR repository the image lives in, and
// false for images outside ECR (which need no ECR pull permission).
func (r ImageRef) ECRRepositoryARN() (string, bool) {
	m := ecrPattern.FindStringSubmatch(r.Repository)
	if m == nil {
		return "", false
	}
	partition := "aws"
	if strings.HasPrefix(m[2], "cn-") {
		partition = "aws-cn"
	}
	return fmt.Sprintf("arn:%s:ecr:%s:%s:repository/%s", partition, m[2], m[1], m[3]), true
}

// Image override variables, read by main.go at synth time (`make push` sets
// them after it pushed an image). The per-environment form wins.
const (
	APIImageVariable    = contract.APIImage
	SenderImageVariable = contract.SenderImage
)

// ApplyImageOverrides sets API.Image and Sender.Image from
// HERALD_<ENV>_API_IMAGE / HERALD_<ENV>_SENDER_IMAGE, else HERALD_API_IMAGE /
// HERALD_SENDER_IMAGE, when set. The values are validated with the rest of
// the environment.
func ApplyImageOverrides(envs []Environment, getenv func(string) string) []Environment {
	out := make([]Environment, len(envs))
	for i, e := range envs {
		for _, o := range []struct {
			variable string
			image    *string
		}{
			{APIImageVariable, &e.API.Image},
			{SenderImageVariable, &e.Sender.Image},
		} {
			perEnv := contract.EnvironmentImage(o.variable, e.Name)
			if v := strings.TrimSpace(getenv(perEnv)); v != "" {
				*o.image = v
			} else if v := strings.TrimSpace(getenv(o.variable)); v != "" {
				*o.image = v
			}
		}
		out[i] = e
	}
	return out
}
