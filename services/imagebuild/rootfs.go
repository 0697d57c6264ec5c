package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// entry is one file or directory of an image layer. Paths are relative to the
// image root ("etc/passwd"); every entry is owned by root (uid and gid 0).
type entry struct {
	Path string
	Mode fs.FileMode // permission bits, plus fs.ModeDir and fs.ModeSticky
	Data []byte
}

func dir(path string, perm fs.FileMode) entry { return entry{Path: path, Mode: fs.ModeDir | perm} }

func file(path string, perm fs.FileMode, data []byte) entry {
	return entry{Path: path, Mode: perm, Data: data}
}

const (
	caBundlePath   = "/etc/ssl/certs/ca-certificates.crt"
	rootsModule    = "golang.org/x/crypto/x509roots/fallback"
	passwdContents = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n"
	groupContents = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// baseEntries is the image's system layer, the same for both services and
// every platform: the users, the CA bundle and an empty /tmp. Nothing else:
// no shell, no package database, no libc (the binaries are static).
func baseEntries() ([]entry, error) {
	pemBundle, err := caBundle()
	if err != nil {
		return nil, err
	}
	return []entry{
		dir("etc", 0o755),
		file("etc/group", 0o644, []byte(groupContents)),
		file("etc/passwd", 0o644, []byte(passwdContents)),
		dir("etc/ssl", 0o755),
		dir("etc/ssl/certs", 0o755),
		file(caBundlePath[1:], 0o644, pemBundle),
		dir("tmp", 0o777|fs.ModeSticky),
	}, nil
}

// appEntries is the service's layer: its static binary at /<service>.
func appEntries(svc service, binary []byte) []entry {
	return []entry{file(svc.Name, 0o755, binary)}
}

// caBundle renders the Mozilla NSS roots that golang.org/x/crypto/x509roots/
// fallback carries as a PEM file. Taking them from a module pinned in go.mod,
// not from the build host, makes the bundle (and the image digest) the same on
// every machine, and a bump of the module is a reviewed go.mod change.
//
// A root that NSS trusts only for certificates issued before a date cannot say
// so in a PEM file; such roots are left out, so a client never trusts what NSS
// would reject.
func caBundle() ([]byte, error) {
	version, err := moduleVersion(rootsModule)
	if err != nil {
		return nil, err
	}
	var certs bytes.Buffer
	var n, skipped int
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			skipped++
			continue
		}
		if _, err := x509.ParseCertificate(root.Certificate); err != nil {
			return nil, fmt.Errorf("CA bundle from %s: %w", rootsModule, err)
		}
		if err := pem.Encode(&certs, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA bundle: %s has no roots", rootsModule)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Mozilla NSS trusted roots from %s %s\n", rootsModule, version)
	fmt.Fprintf(&out, "# %d roots; %d with a distrust-after date left out (PEM cannot state it)\n", n, skipped)
	out.Write(certs.Bytes())
	return out.Bytes(), nil
}

// moduleVersion is the version of a dependency compiled into this program,
// which is the one go.mod pins.
func moduleVersion(path string) (string, error) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "", fmt.Errorf("no build information to find the version of %s", path)
	}
	for _, d := range info.Deps {
		if d.Path == path {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version, nil
		}
	}
	return "", fmt.Errorf("%s is not among this program's dependencies", path)
}

// writeTree lays entries out under root: the Dockerfile's builder stage writes
// the base layer this way and copies it into its scratch final stage, so both
// builds ship the same files. Ownership is left to the caller (Docker's COPY
// makes everything root's, as in the layer).
func writeTree(root string, entries []entry, mtime time.Time) error {
	for _, e := range entries {
		p := filepath.Join(root, filepath.FromSlash(e.Path))
		if e.Mode.IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("write %s: %w", e.Path, err)
			}
		} else if err := os.WriteFile(p, e.Data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", e.Path, err)
		}
		// Chmod after the fact: the umask would otherwise clear bits, and
		// MkdirAll leaves an existing directory's mode alone.
		if err := os.Chmod(p, e.Mode&(fs.ModePerm|fs.ModeSticky)); err != nil {
			return fmt.Errorf("write %s: %w", e.Path, err)
		}
	}
	// Times last, deepest first, so creating a child does not move its
	// directory's modification time again.
	for i := len(entries) - 1; i >= 0; i-- {
		p := filepath.Join(root, filepath.FromSlash(entries[i].Path))
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return fmt.Errorf("write %s: %w", entries[i].Path, err)
		}
	}
	return nil
}
