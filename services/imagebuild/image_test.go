package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The build every test inspects: fixed inputs, so the digests depend on the
// code alone.
var (
	testInfo = buildInfo{
		Version:  "1.2.3-test",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Source:   "https://example.com/herald",
		Epoch:    time.Unix(1700000000, 0).UTC(),
	}
	testPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
)

const sizeBudget = 20_000_000 // bytes, compressed, per image

var fixture struct {
	once   sync.Once
	tmp    string
	dir    string // the layouts
	stdout string
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.tmp != "" {
		os.RemoveAll(fixture.tmp)
	}
	os.Exit(code)
}

// testGetenv is the environment of the test's builds.
func testGetenv(k string) string {
	if k == "SOURCE_DATE_EPOCH" {
		return fmt.Sprint(testInfo.Epoch.Unix())
	}
	return ""
}

// buildImages runs `imagebuild build` into out with the test's inputs, as `make
// images` would, and returns its stdout.
func buildImages(t testing.TB, out string) (string, error) {
	var plats []string
	for _, p := range testPlatforms {
		plats = append(plats, p.String())
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"build",
		"-out", out, "-platforms", strings.Join(plats, ","),
		"-version", testInfo.Version, "-revision", testInfo.Revision, "-source", testInfo.Source,
	}, testGetenv, &stdout, &stderr)
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}

// built builds both services' images once for the whole package and returns
// the directory of their layouts.
func built(t *testing.T) string {
	t.Helper()
	fixture.once.Do(func() {
		fixture.tmp, fixture.err = os.MkdirTemp("", "imagebuild-test-")
		if fixture.err != nil {
			return
		}
		fixture.dir = filepath.Join(fixture.tmp, "images")
		fixture.stdout, fixture.err = buildImages(t, fixture.dir)
	})
	if fixture.err != nil {
		t.Fatalf("build: %v", fixture.err)
	}
	return fixture.dir
}

// platformImages reads a service's index back from its layout and returns
// its images by platform.
func platformImages(t *testing.T, svc service) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	idx, err := readLayout(filepath.Join(built(t), svc.Name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string]v1.Image{}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("%s: index entry %s has no platform", svc.Name, d.Digest)
		}
		if d.ArtifactType != "" {
			t.Errorf("%s: index entry %s has artifactType %q; images have none", svc.Name, d.Digest, d.ArtifactType)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		imgs[d.Platform.String()] = img
	}
	var want []string
	for _, p := range testPlatforms {
		want = append(want, p.String())
	}
	var got []string
	for p := range imgs {
		got = append(got, p)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: platforms %v, want %v", svc.Name, got, want)
	}
	return idx, imgs
}

func TestImageConfig(t *testing.T) {
	for _, svc := range services {
		idx, imgs := platformImages(t, svc)
		if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
			t.Errorf("%s: index media type %s, want %s", svc.Name, mt, types.OCIImageIndex)
		}
		for plat, img := range imgs {
			t.Run(svc.Name+"/"+plat, func(t *testing.T) {
				m, err := img.Manifest()
				if err != nil {
					t.Fatal(err)
				}
				if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
					t.Errorf("media types %s / %s, want OCI manifest and config", m.MediaType, m.Config.MediaType)
				}
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if got := cf.Platform().String(); got != plat {
					t.Errorf("config platform %s, want %s", got, plat)
				}
				c := cf.Config
				if c.User != "65532:65532" {
					t.Errorf("user %q, want the nonroot uid:gid 65532:65532", c.User)
				}
				if !slices.Equal(c.Entrypoint, []string{"/" + svc.Name}) || len(c.Cmd) != 0 {
					t.Errorf("entrypoint %q cmd %q, want [/%s] and none", c.Entrypoint, c.Cmd, svc.Name)
				}
				port := fmt.Sprintf("%d/tcp", svc.Port)
				if _, ok := c.ExposedPorts[port]; !ok || len(c.ExposedPorts) != 1 {
					t.Errorf("exposed ports %v, want only %s", c.ExposedPorts, port)
				}
				hc := c.Healthcheck
				if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/" + svc.Name, "healthcheck"}) ||
					hc.Interval != 30*time.Second || hc.Timeout != 5*time.Second || hc.Retries != 3 {
					t.Errorf("healthcheck %+v, want CMD /%s healthcheck every 30s, timeout 5s, 3 retries", hc, svc.Name)
				}
				wantLabels := map[string]string{
					labelTitle: svc.Name, labelSource: testInfo.Source,
					labelRevision: testInfo.Revision, labelVersion: testInfo.Version,
				}
				for k, v := range wantLabels {
					if c.Labels[k] != v {
						t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
					}
				}
				if !cf.Created.Equal(testInfo.Epoch) {
					t.Errorf("created %s, want the build epoch %s", cf.Created, testInfo.Epoch)
				}
				if len(m.Layers) != 2 || len(cf.History) != 2 {
					t.Errorf("%d layers and %d history entries, want 2 (system files, binary)", len(m.Layers), len(cf.History))
				}
			})
		}
	}
}

// imageFiles reads the image's flattened file system: every header, and the
// contents of regular files.
func imageFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		hdrs[name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[name] = b
		}
	}
	return hdrs, data
}

func TestImageFiles(t *testing.T) {
	for _, svc := range services {
		_, imgs := platformImages(t, svc)
		for plat, img := range imgs {
			t.Run(svc.Name+"/"+plat, func(t *testing.T) {
				hdrs, data := imageFiles(t, img)
				var names []string
				for n := range hdrs {
					names = append(names, n)
				}
				slices.Sort(names)
				// Exactly these: no shell, no /bin, nothing a base image would add.
				want := []string{"etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs",
					"etc/ssl/certs/ca-certificates.crt", "tmp", svc.Name}
				slices.Sort(want)
				if !slices.Equal(names, want) {
					t.Fatalf("files %q, want exactly %q", names, want)
				}
				for _, sh := range []string{"bin/sh", "bin/busybox", "usr/bin/env"} {
					if _, ok := hdrs[sh]; ok {
						t.Errorf("image has %s", sh)
					}
				}
				for n, h := range hdrs {
					if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
						t.Errorf("%s owned by %d:%d (%q:%q), want root 0:0 without names", n, h.Uid, h.Gid, h.Uname, h.Gname)
					}
					if !h.ModTime.Equal(testInfo.Epoch) {
						t.Errorf("%s mtime %s, want the build epoch", n, h.ModTime)
					}
				}
				if m := hdrs[svc.Name].Mode; m != 0o755 {
					t.Errorf("/%s mode %o, want 755", svc.Name, m)
				}
				if h := hdrs["tmp"]; h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
					t.Errorf("/tmp type %c mode %o, want a directory with mode 1777", h.Typeflag, h.Mode)
				}
				if !strings.Contains(string(data["etc/passwd"]), "nonroot:x:65532:65532:") ||
					!strings.Contains(string(data["etc/group"]), "nonroot:x:65532:") {
					t.Errorf("/etc/passwd or /etc/group lacks the nonroot user 65532:\n%s%s", data["etc/passwd"], data["etc/group"])
				}
				checkCABundle(t, data["etc/ssl/certs/ca-certificates.crt"])
				checkStaticBinary(t, data[svc.Name], plat)
			})
		}
	}
}

// checkCABundle parses every certificate of the bundle, as Go's crypto/x509
// does with SSL_CERT_FILE, and looks for the roots AWS endpoints chain to.
func checkCABundle(t *testing.T, bundle []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("CA bundle: no certificate parsed")
	}
	subjects := map[string]bool{}
	n := 0
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("CA bundle certificate %d: %v", n, err)
		}
		if !c.IsCA {
			t.Errorf("CA bundle certificate %q is not a CA", c.Subject)
		}
		subjects[c.Subject.CommonName] = true
		n++
	}
	if n < 100 {
		t.Errorf("CA bundle has %d certificates, want the NSS set (over 100)", n)
	}
	for _, cn := range []string{"Amazon Root CA 1", "Starfield Services Root Certificate Authority - G2"} {
		if !subjects[cn] {
			t.Errorf("CA bundle lacks %q", cn)
		}
	}
}

// checkStaticBinary asserts the binary is for the image's platform and needs
// no dynamic loader (the image has none).
func checkStaticBinary(t *testing.T, binary []byte, plat string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("binary: %v", err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}[plat]
	if f.Machine != want {
		t.Errorf("binary machine %s, want %s", f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary is dynamically linked (%s segment)", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table: not stripped (-s)")
	}
}

func TestImageSize(t *testing.T) {
	for _, svc := range services {
		_, imgs := platformImages(t, svc)
		for plat, img := range imgs {
			size, err := compressedSize(img)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s: %.1f MB compressed (%d bytes)", svc.Name, plat, float64(size)/1e6, size)
			if size > sizeBudget {
				t.Errorf("%s %s: %d bytes compressed, over the %d budget", svc.Name, plat, size, sizeBudget)
			}
			// The build's own report states the same size.
			if !strings.Contains(fixture.stdout, fmt.Sprintf("(%d bytes)", size)) {
				t.Errorf("build output does not report %d bytes for %s %s:\n%s", size, svc.Name, plat, fixture.stdout)
			}
		}
	}
}

// TestReproducible builds again, into another directory, and expects the
// very same digests.
func TestReproducible(t *testing.T) {
	first := built(t)
	second := filepath.Join(t.TempDir(), "images")
	if _, err := buildImages(t, second); err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		a, err := readLayout(filepath.Join(first, svc.Name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := readLayout(filepath.Join(second, svc.Name))
		if err != nil {
			t.Fatal(err)
		}
		da, _ := a.Digest()
		db, _ := b.Digest()
		if da != db {
			t.Errorf("%s: two builds of the same inputs gave %s and %s", svc.Name, da, db)
		}
	}
}

// healthEnv is the least each service needs to start and serve /healthz:
// every AWS endpoint is a closed loopback port, as no AWS call is needed for
// liveness.
func healthEnv(svc service, addr, closed string) []string {
	env := []string{
		"HERALD_HTTP_ADDR=" + addr,
		"HERALD_ENV=test",
		"HERALD_METRICS_INTERVAL=0",
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_SQS=http://" + closed,
		"AWS_ENDPOINT_URL_SESV2=http://" + closed,
		"AWS_ENDPOINT_URL_SECRETSMANAGER=http://" + closed,
		"HERALD_QUEUE_URL=http://" + closed + "/000000000000/herald",
	}
	switch svc.Name {
	case "notification-api":
		env = append(env,
			"HERALD_DEFAULT_FROM=noreply@example.com",
			"HERALD_API_KEY_HASHES=test:"+strings.Repeat("ab", 32))
	case "email-sender":
		env = append(env,
			"HERALD_DLQ_URL=http://"+closed+"/000000000000/herald-dlq",
			"HERALD_ALLOWED_FROM=@example.com",
			"HERALD_SEND_RATE=10") // a set rate: no SES account lookup at start
	}
	return env
}

// TestBinaryHealthcheck takes the binary out of the image for this machine's
// platform, runs it as the service, and asks it through its own healthcheck
// subcommand: exit 0 while it serves, 1 once it is stopped.
func TestBinaryHealthcheck(t *testing.T) {
	plat := "linux/" + runtime.GOARCH
	if runtime.GOOS != "linux" || !slices.ContainsFunc(testPlatforms, func(p v1.Platform) bool { return p.String() == plat }) {
		t.Skipf("no image for this machine's platform %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	for _, svc := range services {
		t.Run(svc.Name, func(t *testing.T) {
			_, imgs := platformImages(t, svc)
			_, data := imageFiles(t, imgs[plat])
			bin := filepath.Join(t.TempDir(), svc.Name)
			if err := os.WriteFile(bin, data[svc.Name], 0o755); err != nil {
				t.Fatal(err)
			}
			addr, closed := freeAddr(t), freeAddr(t)
			env := healthEnv(svc, addr, closed)

			var logs bytes.Buffer
			cmd := exec.Command(bin)
			cmd.Env = env
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					_ = cmd.Process.Kill()
					<-exited
				}
			}
			t.Cleanup(stop)

			healthcheck := func() (int, string) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				hc := exec.CommandContext(ctx, bin, "healthcheck")
				hc.Env = env
				out, err := hc.CombinedOutput()
				var exit *exec.ExitError
				switch {
				case err == nil:
					return 0, string(out)
				case errors.As(err, &exit):
					return exit.ExitCode(), string(out)
				default:
					t.Fatalf("healthcheck: %v", err)
					return -1, ""
				}
			}

			deadline := time.Now().Add(20 * time.Second)
			for {
				code, out := healthcheck()
				if code == 0 {
					break
				}
				select {
				case err := <-exited:
					stopped = true // nothing left to stop, nor to wait for
					t.Fatalf("%s exited before it was healthy: %v\n%s", svc.Name, err, logs.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("healthcheck still exit %d after 20s: %s\nservice output:\n%s", code, out, logs.String())
				}
				time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
			}

			stop()
			if code, out := healthcheck(); code != 1 {
				t.Errorf("healthcheck with the service stopped: exit %d, want 1 (%s)", code, out)
			}
		})
	}
}

// freeAddr is a loopback address nothing listens on once it returns.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestRootfsMatchesBaseLayer: the files `rootfs` writes for the Dockerfile are
// those of the daemonless image's system layer.
func TestRootfsMatchesBaseLayer(t *testing.T) {
	dir := t.TempDir()
	if err := run(context.Background(), []string{"rootfs", "-out", dir}, testGetenv, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	_, imgs := platformImages(t, services[0])
	layers, err := imgs[testPlatforms[0].String()].Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	count := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		count++
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(h.Name, "/")))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("layer has %s, rootfs does not: %v", h.Name, err)
			continue
		}
		if got := int64(fi.Mode().Perm()) | stickyBit(fi); got != h.Mode || fi.IsDir() != (h.Typeflag == tar.TypeDir) {
			t.Errorf("%s: rootfs mode %o dir=%v, layer %o dir=%v", h.Name, got, fi.IsDir(), h.Mode, h.Typeflag == tar.TypeDir)
		}
		if !fi.ModTime().Equal(h.ModTime) {
			t.Errorf("%s: rootfs mtime %s, layer %s", h.Name, fi.ModTime(), h.ModTime)
		}
		if h.Typeflag == tar.TypeReg {
			want, _ := io.ReadAll(tr)
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: rootfs content differs from the layer's (%v)", h.Name, err)
			}
		}
	}
	var onDisk int
	_ = filepath.WalkDir(dir, func(string, os.DirEntry, error) error { onDisk++; return nil })
	if onDisk-1 != count { // minus the root itself
		t.Errorf("rootfs has %d entries, the layer %d", onDisk-1, count)
	}
}

func stickyBit(fi os.FileInfo) int64 {
	if fi.Mode()&os.ModeSticky != 0 {
		return 0o1000
	}
	return 0
}
