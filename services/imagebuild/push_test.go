package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// newRegistry serves go-containerregistry's in-process registry on loopback.
// wrap, when set, stands in front of it (to ask for credentials).
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func runPushCmd(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"push"}, args...), getenv, &stdout, &stderr)
	if err != nil && stderr.Len() > 0 {
		t.Logf("push log:\n%s", stderr.String())
	}
	return stdout.String(), err
}

// envLines reads the NAME=value lines push prints.
func envLines(out string) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "HERALD_") {
			vars[k] = v
		}
	}
	return vars
}

// TestPushAndPullByDigest pushes both images to an in-process registry,
// pulls them back by the printed digest, and compares them blob by blob.
func TestPushAndPullByDigest(t *testing.T) {
	dir := built(t)
	host := newRegistry(t, nil)
	envFile := filepath.Join(t.TempDir(), "images.env")
	out, err := runPushCmd(t, testGetenv, "-layout", dir, "-registry", host+"/herald", "-env-file", envFile)
	if err != nil {
		t.Fatal(err)
	}
	vars := envLines(out)
	written, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(envLines(string(written))) != len(services) {
		t.Errorf("env file:\n%s\nwant a line per service", written)
	}
	for _, svc := range services {
		local, err := readLayout(filepath.Join(dir, svc.Name))
		if err != nil {
			t.Fatal(err)
		}
		localDigest, _ := local.Digest()
		want := host + "/herald/" + svc.Name + "@" + localDigest.String()
		if vars[svc.ImageEnv] != want {
			t.Errorf("%s=%q, want %q\n%s", svc.ImageEnv, vars[svc.ImageEnv], want, out)
			continue
		}
		ref, err := name.NewDigest(vars[svc.ImageEnv])
		if err != nil {
			t.Fatal(err)
		}
		remoteIdx, err := remote.Index(ref)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		if d, _ := remoteIdx.Digest(); d != localDigest {
			t.Errorf("%s: pulled index %s, pushed %s", svc.Name, d, localDigest)
		}
		compareImages(t, svc, local, remoteIdx)

		// The revision tag names the same index.
		tagged, err := remote.Head(ref.Context().Tag(testInfo.Revision))
		if err != nil || tagged.Digest != localDigest {
			t.Errorf("%s: tag %s: %v, %v; want %s", svc.Name, testInfo.Revision, tagged, err, localDigest)
		}
	}

	// Pushing the same build again changes nothing and says so.
	out, err = runPushCmd(t, testGetenv, "-layout", dir, "-registry", host+"/herald")
	if err != nil {
		t.Fatalf("second push of the same images: %v", err)
	}
	if strings.Count(out, "already present") != len(services) {
		t.Errorf("second push output:\n%s\nwant every image already present", out)
	}
}

// compareImages pulls every image of the remote index and compares its
// manifest, config and layers with the local one.
func compareImages(t *testing.T, svc service, local, pulled v1.ImageIndex) {
	t.Helper()
	lm, _ := local.IndexManifest()
	for _, d := range lm.Manifests {
		li, err := local.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		ri, err := pulled.Image(d.Digest)
		if err != nil {
			t.Fatalf("%s %s: pull image: %v", svc.Name, d.Platform, err)
		}
		lraw, _ := li.RawManifest()
		rraw, err := ri.RawManifest()
		if err != nil || !bytes.Equal(lraw, rraw) {
			t.Errorf("%s %s: pulled manifest differs (%v)", svc.Name, d.Platform, err)
		}
		lcfg, _ := li.RawConfigFile()
		rcfg, err := ri.RawConfigFile()
		if err != nil || !bytes.Equal(lcfg, rcfg) {
			t.Errorf("%s %s: pulled config differs (%v)", svc.Name, d.Platform, err)
		}
		rl, err := ri.Layers()
		if err != nil {
			t.Fatal(err)
		}
		ll, _ := li.Layers()
		if len(rl) != len(ll) {
			t.Fatalf("%s %s: %d layers pulled, %d pushed", svc.Name, d.Platform, len(rl), len(ll))
		}
		for i := range rl {
			// Read the whole blob: the registry must serve what was pushed.
			rc, err := rl[i].Compressed()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			lrc, _ := ll[i].Compressed()
			want, _ := io.ReadAll(lrc)
			lrc.Close()
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s: layer %d differs after the round trip", svc.Name, d.Platform, i)
			}
		}
	}
}

// TestPushRefusesToMoveATag: a tag that names another image is an error, as
// ECR's immutable tags would make it, whatever the registry.
func TestPushRefusesToMoveATag(t *testing.T) {
	dir := built(t)
	host := newRegistry(t, nil)
	svc := services[0]
	if _, err := runPushCmd(t, testGetenv, "-layout", dir, "-registry", host, "-services", svc.Name); err != nil {
		t.Fatal(err)
	}

	// Given another index (the same images, one more annotation) in a layout
	idx, err := readLayout(filepath.Join(dir, svc.Name))
	if err != nil {
		t.Fatal(err)
	}
	other := mutate.Annotations(idx, map[string]string{"test": "another build"}).(v1.ImageIndex)
	otherDir := filepath.Join(t.TempDir(), "images")
	if err := writeLayout(filepath.Join(otherDir, svc.Name), other, "other"); err != nil {
		t.Fatal(err)
	}
	// when it is pushed under the same revision tag
	out, err := runPushCmd(t, testGetenv, "-layout", otherDir, "-registry", host, "-services", svc.Name)
	// then the push fails, naming both digests, and the tag is unchanged.
	if err == nil || !strings.Contains(err.Error(), "never moves") {
		t.Fatalf("push over an existing tag: err %v, output %q; want a refusal", err, out)
	}
	want, _ := idx.Digest()
	tag, err := name.NewTag(host + "/" + svc.Name + ":" + testInfo.Revision)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Head(tag)
	if err != nil || got.Digest != want {
		t.Errorf("tag now names %v (%v), want %s", got, err, want)
	}
}

// TestPushLogsInThroughECR: with -ecr-region, push asks ECR's
// GetAuthorizationToken (a fake on loopback) and presents the decoded
// user:password to a registry that demands it.
func TestPushLogsInThroughECR(t *testing.T) {
	dir := built(t)
	const user, password = "AWS", "token-from-ecr"

	var tokenCalls atomic.Int32
	ecrAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" {
			http.Error(w, "unexpected call "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
			return
		}
		tokenCalls.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(map[string]any{"authorizationData": []map[string]any{{
			"authorizationToken": base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
			"expiresAt":          4102444800,
			"proxyEndpoint":      "https://000000000000.dkr.ecr.us-east-1.amazonaws.com",
		}}})
	}))
	t.Cleanup(ecrAPI.Close)

	var refused atomic.Int32
	host := newRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
				refused.Add(1)
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	})

	// The SDK reads credentials and the region from the process environment.
	home := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true", "DOCKER_CONFIG": home,
	} {
		t.Setenv(k, v)
	}
	getenv := func(k string) string {
		if k == "AWS_ENDPOINT_URL_ECR" {
			return ecrAPI.URL
		}
		return testGetenv(k)
	}
	svc := services[1]
	repo := host + "/herald/" + svc.Name

	// Without the ECR login the registry refuses the push.
	if _, err := runPushCmd(t, getenv, "-layout", dir, "-services", svc.Name, "-"+svc.RepoFlag, repo); err == nil {
		t.Fatal("push without credentials succeeded against a registry that demands them")
	}
	out, err := runPushCmd(t, getenv, "-layout", dir, "-services", svc.Name, "-"+svc.RepoFlag, repo, "-ecr-region", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if tokenCalls.Load() != 1 {
		t.Errorf("GetAuthorizationToken called %d times, want once", tokenCalls.Load())
	}
	idx, _ := readLayout(filepath.Join(dir, svc.Name))
	want, _ := idx.Digest()
	if got := envLines(out)[svc.ImageEnv]; got != repo+"@"+want.String() {
		t.Errorf("%s=%q, want %s@%s", svc.ImageEnv, got, repo, want)
	}
}

func TestPushNeedsARepository(t *testing.T) {
	dir := built(t)
	_, err := runPushCmd(t, func(string) string { return "" }, "-layout", dir)
	if err == nil || !strings.Contains(err.Error(), services[0].RepoEnv) {
		t.Fatalf("push with no repository: %v, want an error naming %s", err, services[0].RepoEnv)
	}
}

func TestECRRegion(t *testing.T) {
	for host, want := range map[string]string{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com":          "eu-west-1",
		"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com": "us-gov-west-1",
		"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn":      "cn-north-1",
		"127.0.0.1:5000":                        "",
		"ghcr.io":                               "",
		"12345.dkr.ecr.eu-west-1.amazonaws.com": "",
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example": "",
	} {
		if got := ecrRegion(host); got != want {
			t.Errorf("ecrRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestDecodeECRToken(t *testing.T) {
	user, pass, err := decodeECRToken(base64.StdEncoding.EncodeToString([]byte("AWS:a:b")))
	if err != nil || user != "AWS" || pass != "a:b" {
		t.Errorf("decode: %q %q %v, want AWS, a:b", user, pass, err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("nocolon")), base64.StdEncoding.EncodeToString([]byte("AWS:"))} {
		if _, _, err := decodeECRToken(bad); err == nil {
			t.Errorf("decode(%q) succeeded", bad)
		}
	}
}

func TestRevisionTagRefusesDirtyBuilds(t *testing.T) {
	dir := built(t)
	idx, err := readLayout(filepath.Join(dir, services[0].Name))
	if err != nil {
		t.Fatal(err)
	}
	if tag, err := revisionTag(idx); err != nil || tag != testInfo.Revision {
		t.Errorf("revisionTag = %q, %v; want %s", tag, err, testInfo.Revision)
	}
	// A build from a modified tree carries a "-dirty" version.
	m, _ := idx.IndexManifest()
	img, _ := idx.Image(m.Manifests[0].Digest)
	cf, _ := img.ConfigFile()
	cfg := cf.Config.DeepCopy()
	cfg.Labels[labelVersion] = "abc1234-dirty"
	dirty, err := mutate.Config(img, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	dirtyIdx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: dirty})
	if _, err := revisionTag(dirtyIdx); err == nil || !strings.Contains(err.Error(), "uncommitted") {
		t.Errorf("revisionTag of a dirty build: %v, want a refusal", err)
	}
}
