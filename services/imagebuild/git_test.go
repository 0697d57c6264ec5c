package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

func TestSourceURL(t *testing.T) {
	for remote, want := range map[string]string{
		"https://github.com/example/herald.git":              "https://github.com/example/herald",
		"https://x-access-token:secret@github.com/example/h": "https://github.com/example/h",
		"git@github.com:example/herald.git":                  "https://github.com/example/herald",
		"ssh://git@github.com:22/example/herald.git":         "https://github.com/example/herald",
		"/srv/git/herald":                                    "",
		"file:///srv/git/herald":                             "",
	} {
		if got := sourceURL(remote); got != want {
			t.Errorf("sourceURL(%q) = %q, want %q", remote, got, want)
		}
	}
}

// TestBuildInfoFromGit: with no flags, the revision is HEAD's, the version
// git describe's, and the epoch the commit time (SOURCE_DATE_EPOCH unset).
func TestBuildInfoFromGit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	info, err := resolveBuildInfo(context.Background(), root, buildInfo{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != strings.TrimSpace(string(head)) {
		t.Errorf("revision %q, want HEAD %s", info.Revision, head)
	}
	if !versionPattern.MatchString(info.Version) || info.Epoch.IsZero() {
		t.Errorf("version %q epoch %s: want a tag-safe version and the commit time", info.Version, info.Epoch)
	}
	if strings.Contains(info.Source, "@") {
		t.Errorf("source %q keeps credentials", info.Source)
	}

	for _, bad := range []buildInfo{{Revision: "HEAD"}, {Revision: strings.Repeat("a", 40), Version: "has space"}} {
		if _, err := resolveBuildInfo(context.Background(), root, bad, "1"); err == nil {
			t.Errorf("resolveBuildInfo(%+v) accepted it", bad)
		}
	}
	if _, err := resolveBuildInfo(context.Background(), root, buildInfo{}, "yesterday"); err == nil {
		t.Error("SOURCE_DATE_EPOCH=yesterday accepted")
	}
}
