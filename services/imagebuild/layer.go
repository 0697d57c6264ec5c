package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerTar writes entries as a tar stream that depends on nothing but its
// input: entries sorted by path, every time set to mtime, owner root, no user
// or group names, one fixed header format.
func layerTar(entries []entry, mtime time.Time) ([]byte, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b entry) int { return strings.Compare(a.Path, b.Path) })
	seen := map[string]bool{}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range sorted {
		if e.Path == "" || path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || strings.HasPrefix(e.Path, "..") {
			return nil, fmt.Errorf("layer entry %q: want a clean path relative to the image root", e.Path)
		}
		if seen[e.Path] {
			return nil, fmt.Errorf("layer entry %q: listed twice", e.Path)
		}
		if parent := path.Dir(e.Path); parent != "." && !seen[parent] {
			return nil, fmt.Errorf("layer entry %q: its directory %q is not in the layer", e.Path, parent)
		}
		seen[e.Path] = true
		mode := int64(e.Mode.Perm())
		if e.Mode&fs.ModeSticky != 0 {
			mode |= 0o1000 // the tar (and stat) sticky bit
		}
		hdr := &tar.Header{
			Name:    e.Path,
			Mode:    mode,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if e.Mode.IsDir() {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", e.Path, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}

// newLayer is a gzip-compressed OCI layer of entries. Go's gzip writes no
// name and no time in its header, so the compressed bytes, and so the digest,
// are a function of the entries (for one Go toolchain).
func newLayer(entries []entry, mtime time.Time) (v1.Layer, error) {
	raw, err := layerTar(entries, mtime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
}
