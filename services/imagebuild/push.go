package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"herald/services/internal/herald"
)

// pushOptions says what to push where.
type pushOptions struct {
	// LayoutDir holds the layouts `build` wrote, LayoutDir/<service>.
	LayoutDir string
	Services  []service
	// Repos maps a service to its repository (an ECR repository URL).
	Repos map[string]string
	// Tag names the pushed index; empty means the images' revision label.
	Tag string
	// ECRRegion makes any registry log in through ECR; ECR hosts
	// (<account>.dkr.ecr.<region>.amazonaws.com) do so without it.
	ECRRegion string
	// EnvFile, when set, receives the HERALD_*_IMAGE lines too.
	EnvFile string
}

// pushed is one service's image as the registry now holds it.
type pushed struct {
	Service service
	Ref     name.Digest
	Tag     name.Tag
	// Existed is true when the tag already named this very index.
	Existed bool
}

var ecrHost = regexp.MustCompile(`^[0-9]{12}\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$`)

// ecrRegion is the region of an ECR registry host, or "" for other registries.
func ecrRegion(host string) string {
	if m := ecrHost.FindStringSubmatch(host); m != nil {
		return m[2]
	}
	return ""
}

// push sends each service's index to its repository under the tag, and
// returns the digest references that the stack pins.
//
// ECR repositories have immutable tags (and refuse even a re-push of the same
// image under an existing tag), and a revision tag must never move on any
// registry: so a tag that exists is checked first. Naming this very index, it
// is reported and left alone; naming another, the push fails.
func push(ctx context.Context, log *slog.Logger, getenv func(string) string, opts pushOptions) ([]pushed, error) {
	auths := map[string]remote.Option{}
	var out []pushed
	for _, svc := range opts.Services {
		repoName := opts.Repos[svc.Name]
		if repoName == "" {
			return nil, fmt.Errorf("%s: no repository: pass -%s, set %s, or pass -registry", svc.Name, svc.RepoFlag, svc.RepoEnv)
		}
		repo, err := name.NewRepository(repoName)
		if err != nil {
			return nil, fmt.Errorf("%s: repository %q: %w", svc.Name, repoName, err)
		}
		idx, err := readLayout(filepath.Join(opts.LayoutDir, svc.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w (run `imagebuild build` first)", svc.Name, err)
		}
		digest, err := idx.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", svc.Name, err)
		}
		tagName := opts.Tag
		if tagName == "" {
			if tagName, err = revisionTag(idx); err != nil {
				return nil, fmt.Errorf("%s: %w", svc.Name, err)
			}
		}
		tag, err := name.NewTag(repo.Name() + ":" + tagName)
		if err != nil {
			return nil, fmt.Errorf("%s: tag %q: %w", svc.Name, tagName, err)
		}

		host := repo.RegistryStr()
		auth, ok := auths[host]
		if !ok {
			if auth, err = registryAuth(ctx, log, getenv, host, opts.ECRRegion); err != nil {
				return nil, err
			}
			auths[host] = auth
		}
		ropts := []remote.Option{remote.WithContext(ctx), auth, remote.WithUserAgent("herald-imagebuild")}

		p := pushed{Service: svc, Ref: repo.Digest(digest.String()), Tag: tag}
		existing, err := remote.Head(tag, ropts...)
		switch {
		case err == nil && existing.Digest == digest:
			p.Existed = true
			log.Info("tag already holds this image", "image", svc.Name, "tag", tag.String(), "digest", digest.String())
		case err == nil:
			return nil, fmt.Errorf("%s: tag %s already names %s, not this build's %s; "+
				"a revision tag never moves (ECR tags are immutable): push a new commit, or rebuild this revision exactly", svc.Name, tag, existing.Digest, digest)
		case isStatus(err, http.StatusNotFound):
			log.Info("pushing", "image", svc.Name, "tag", tag.String(), "digest", digest.String())
			if err := remote.WriteIndex(tag, idx, ropts...); err != nil {
				if isCode(err, transport.TagInvalidErrorCode) {
					return nil, fmt.Errorf("%s: the registry refused tag %s (an immutable tag pushed meanwhile?): %w", svc.Name, tag, err)
				}
				return nil, fmt.Errorf("%s: push %s: %w", svc.Name, tag, err)
			}
		default:
			return nil, fmt.Errorf("%s: look up %s: %w", svc.Name, tag, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// revisionTag is the tag of a build: its git revision, read back from the
// images' labels so the tag always matches what was built. A build from a
// modified tree has no revision that names it: pushing it needs an explicit tag.
func revisionTag(idx v1.ImageIndex) (string, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}
	if len(m.Manifests) == 0 {
		return "", errors.New("image index is empty")
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return "", err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	rev, version := cfg.Config.Labels[labelRevision], cfg.Config.Labels[labelVersion]
	if strings.HasSuffix(version, "-dirty") {
		return "", fmt.Errorf("built from a working tree with uncommitted changes (version %s): commit and rebuild, or pass -tag", version)
	}
	if !revisionPattern.MatchString(rev) {
		return "", fmt.Errorf("image has no revision label (%q): pass -tag", rev)
	}
	return rev, nil
}

// registryAuth logs in to ECR through GetAuthorizationToken, or uses the
// Docker credential configuration (anonymous when there is none) elsewhere.
func registryAuth(ctx context.Context, log *slog.Logger, getenv func(string) string, host, forcedRegion string) (remote.Option, error) {
	region := forcedRegion
	if region == "" {
		region = ecrRegion(host)
	}
	if region == "" {
		return remote.WithAuthFromKeychain(authn.DefaultKeychain), nil
	}
	cfg, err := herald.LoadAWSConfig(ctx, region, herald.AWSOptions{})
	if err != nil {
		return nil, err
	}
	client := ecr.NewFromConfig(cfg, func(o *ecr.Options) {
		o.BaseEndpoint = herald.Endpoint(getenv("AWS_ENDPOINT_URL_ECR"))
	})
	out, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return nil, fmt.Errorf("ECR login for %s (region %s): %w", host, region, err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return nil, fmt.Errorf("ECR login for %s: no authorization data in the answer", host)
	}
	user, pass, err := decodeECRToken(*out.AuthorizationData[0].AuthorizationToken)
	if err != nil {
		return nil, fmt.Errorf("ECR login for %s: %w", host, err)
	}
	log.Info("logged in to ECR", "registry", host, "region", region, "user", user)
	return remote.WithAuth(&authn.Basic{Username: user, Password: pass}), nil
}

// decodeECRToken splits an ECR authorization token: base64 of "user:password".
func decodeECRToken(token string) (user, pass string, err error) {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return "", "", errors.New("authorization token is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return "", "", errors.New("authorization token is not user:password")
	}
	return user, pass, nil
}

func isStatus(err error, code int) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == code
}

func isCode(err error, code transport.ErrorCode) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// printPushed writes the digest references and the variables the stack's
// synth reads (to w, and to envFile when set).
func printPushed(w io.Writer, results []pushed, envFile string) error {
	var env strings.Builder
	for _, p := range results {
		state := "pushed"
		if p.Existed {
			state = "already present"
		}
		fmt.Fprintf(w, "%s (tag %s, %s)\n", p.Ref, p.Tag.TagStr(), state)
		fmt.Fprintf(&env, "%s=%s\n", p.Service.ImageEnv, p.Ref)
	}
	fmt.Fprint(w, env.String())
	if envFile != "" {
		if err := os.WriteFile(envFile, []byte(env.String()), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", envFile, err)
		}
	}
	return nil
}
