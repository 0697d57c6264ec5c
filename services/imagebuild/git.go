package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	revisionPattern = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	// versionPattern is a valid image tag, so a version can also tag an image.
	versionPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// git runs a git command in dir and returns its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// resolveBuildInfo fills what the flags left empty from the checkout:
// revision from HEAD, version from `git describe` (ending "-dirty" when
// tracked files are modified), source from the origin remote, and the epoch
// from SOURCE_DATE_EPOCH or else the commit time.
func resolveBuildInfo(ctx context.Context, root string, info buildInfo, sourceDateEpoch string) (buildInfo, error) {
	var err error
	if info.Revision == "" {
		if info.Revision, err = git(ctx, root, "rev-parse", "HEAD"); err != nil {
			return info, fmt.Errorf("revision (or pass -revision): %w", err)
		}
	}
	if !revisionPattern.MatchString(info.Revision) {
		return info, fmt.Errorf("revision %q: want a full commit hash", info.Revision)
	}
	if info.Version == "" {
		if info.Version, err = git(ctx, root, "describe", "--tags", "--always", "--dirty"); err != nil {
			return info, fmt.Errorf("version (or pass -version): %w", err)
		}
	}
	if !versionPattern.MatchString(info.Version) {
		return info, fmt.Errorf("version %q: want letters, digits, '.', '_' or '-' (an image tag)", info.Version)
	}
	if info.Source == "" {
		// No origin remote is fine: the source label is then left out.
		if remote, err := git(ctx, root, "remote", "get-url", "origin"); err == nil {
			info.Source = sourceURL(remote)
		}
	}
	switch {
	case sourceDateEpoch != "":
		if info.Epoch, err = parseEpoch(sourceDateEpoch); err != nil {
			return info, err
		}
	case info.Epoch.IsZero():
		ct, err := git(ctx, root, "log", "-1", "--format=%ct", info.Revision)
		if err != nil {
			return info, fmt.Errorf("commit time (or set SOURCE_DATE_EPOCH): %w", err)
		}
		sec, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return info, fmt.Errorf("commit time %q: %w", ct, err)
		}
		info.Epoch = time.Unix(sec, 0).UTC()
	}
	return info, nil
}

// sourceURL turns a git remote into the https URL a label should carry, and
// never keeps credentials that a remote URL may embed.
func sourceURL(remote string) string {
	remote = strings.TrimSuffix(remote, ".git")
	if u, err := url.Parse(remote); err == nil && u.Scheme != "" && u.Host != "" {
		u.User = nil
		if u.Scheme == "ssh" || u.Scheme == "git" {
			u.Scheme, u.Host = "https", u.Hostname()
		}
		return u.String()
	}
	// scp-like: git@github.com:org/repo
	if at := strings.Index(remote, "@"); at >= 0 {
		if host, path, ok := strings.Cut(remote[at+1:], ":"); ok {
			return "https://" + host + "/" + strings.TrimPrefix(path, "/")
		}
	}
	return ""
}

// parseEpoch reads SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/).
func parseEpoch(v string) (time.Time, error) {
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %q is not a Unix time in seconds", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}
