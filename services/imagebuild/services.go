package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"herald/services/contract"
)

// service is one image: a binary built from services/<Name>, run as the image's
// entrypoint. services/Dockerfile states the same facts for Docker builds; a
// test keeps the two in step.
type service struct {
	Name string
	// Port is the service's (services/contract).
	Port int
	// ImageEnv is the variable `push` prints for the stack's synth, which pins
	// the service's image by digest.
	ImageEnv string
	// RepoEnv and RepoFlag give the service's repository to `push`: the
	// upper-cased name of the stack output that holds the ECR repository URL.
	RepoEnv  string
	RepoFlag string
}

var services = []service{
	{Name: string(contract.API), Port: contract.APIPort, ImageEnv: contract.Image(contract.API), RepoEnv: "API_REPOSITORY_URL", RepoFlag: "api-repo"},
	{Name: string(contract.Sender), Port: contract.SenderPort, ImageEnv: contract.Image(contract.Sender), RepoEnv: "SENDER_REPOSITORY_URL", RepoFlag: "sender-repo"},
}

func lookupService(name string) (service, error) {
	var names []string
	for _, s := range services {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return service{}, fmt.Errorf("unknown service %q (known: %s)", name, strings.Join(names, ", "))
}

// The user every image runs as: distroless's "nonroot", listed in the image's
// /etc/passwd so that tools resolving names find it.
const (
	nonrootUID = 65532
	imageUser  = "65532:65532"
)

// The image's HEALTHCHECK: the binary's own `healthcheck` subcommand (the image
// has no shell and no curl). Its HTTP call gives up after 3 s, inside Timeout.
var healthTiming = struct {
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}{Interval: 30 * time.Second, Timeout: 5 * time.Second, StartPeriod: 10 * time.Second, Retries: 3}

// OCI annotation keys, used as image labels.
const (
	labelTitle    = "org.opencontainers.image.title"
	labelSource   = "org.opencontainers.image.source"
	labelRevision = "org.opencontainers.image.revision"
	labelVersion  = "org.opencontainers.image.version"
)

// buildInfo is what identifies one build: the same for every image of a run.
type buildInfo struct {
	Version  string
	Revision string
	// Source is the repository URL; empty leaves the label out.
	Source string
	// Epoch is every timestamp in the image: the commit time or SOURCE_DATE_EPOCH.
	Epoch time.Time
}

func (b buildInfo) labels(svc service) map[string]string {
	l := map[string]string{
		labelTitle:    svc.Name,
		labelRevision: b.Revision,
		labelVersion:  b.Version,
	}
	if b.Source != "" {
		l[labelSource] = b.Source
	}
	return l
}

// ldflags strips the binary and stamps the build into the shared package.
func (b buildInfo) ldflags() string {
	const pkg = "herald/services/internal/herald"
	return fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Revision=%s", pkg, b.Version, pkg, b.Revision)
}

// containerConfig is the run configuration of a service's image.
func containerConfig(svc service, b buildInfo) v1.Config {
	bin := "/" + svc.Name
	return v1.Config{
		User:         imageUser,
		Entrypoint:   []string{bin},
		Env:          []string{"SSL_CERT_FILE=" + caBundlePath},
		ExposedPorts: map[string]struct{}{strconv.Itoa(svc.Port) + "/tcp": {}},
		Labels:       b.labels(svc),
		Healthcheck: &v1.HealthConfig{
			Test:        []string{"CMD", bin, "healthcheck"},
			Interval:    healthTiming.Interval,
			Timeout:     healthTiming.Timeout,
			StartPeriod: healthTiming.StartPeriod,
			Retries:     healthTiming.Retries,
		},
	}
}
