package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// buildOptions says what to build and where to put it.
type buildOptions struct {
	// ModuleRoot is the directory holding go.mod; services are built from
	// ModuleRoot/services/<name>.
	ModuleRoot string
	// OutDir receives one OCI image layout per service, OutDir/<name>.
	OutDir    string
	Services  []service
	Platforms []v1.Platform
	Info      buildInfo
}

// builtImage is one service's multi-platform image as written to its layout.
type builtImage struct {
	Service   service
	Dir       string
	Index     v1.ImageIndex
	Digest    v1.Hash
	Platforms []builtPlatform
}

type builtPlatform struct {
	Platform v1.Platform
	Image    v1.Image
	Digest   v1.Hash
	// Size is the compressed size: config plus gzip layers, what a registry
	// stores and a node downloads.
	Size int64
}

// build compiles every service for every platform and writes each service's
// image index, with one image per platform, to its own OCI layout.
func build(ctx context.Context, log *slog.Logger, opts buildOptions) ([]builtImage, error) {
	if len(opts.Services) == 0 || len(opts.Platforms) == 0 {
		return nil, errors.New("build: no services or no platforms")
	}
	baseFiles, err := baseEntries()
	if err != nil {
		return nil, err
	}
	// One base layer for all: a registry stores it once per repository.
	base, err := newLayer(baseFiles, opts.Info.Epoch)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}

	binDir, err := os.MkdirTemp("", "herald-imagebuild-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory for binaries: %w", err)
	}
	defer os.RemoveAll(binDir)

	images := make([][]builtPlatform, len(opts.Services))
	for _, p := range opts.Platforms {
		dir := filepath.Join(binDir, p.OS+"-"+p.Architecture+p.Variant)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := compile(ctx, log, opts.ModuleRoot, dir, p, opts.Services, opts.Info); err != nil {
			return nil, err
		}
		for i, svc := range opts.Services {
			binary, err := os.ReadFile(filepath.Join(dir, svc.Name))
			if err != nil {
				return nil, fmt.Errorf("read %s binary: %w", svc.Name, err)
			}
			img, err := assemble(svc, p, opts.Info, base, binary)
			if err != nil {
				return nil, fmt.Errorf("image %s %s: %w", svc.Name, p.String(), err)
			}
			bp, err := describePlatform(p, img)
			if err != nil {
				return nil, fmt.Errorf("image %s %s: %w", svc.Name, p.String(), err)
			}
			images[i] = append(images[i], bp)
		}
	}

	var out []builtImage
	for i, svc := range opts.Services {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for _, bp := range images[i] {
			p := bp.Platform
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
				Add:        imageNotArtifact{bp.Image},
				Descriptor: v1.Descriptor{Platform: &p},
			})
		}
		digest, err := idx.Digest()
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", svc.Name, err)
		}
		dir := filepath.Join(opts.OutDir, svc.Name)
		if err := writeLayout(dir, idx, opts.Info.Version); err != nil {
			return nil, fmt.Errorf("write %s: %w", svc.Name, err)
		}
		log.Info("image written", "image", svc.Name, "digest", digest.String(), "layout", dir)
		out = append(out, builtImage{Service: svc, Dir: dir, Index: idx, Digest: digest, Platforms: images[i]})
	}
	return out, nil
}

// imageNotArtifact keeps go-containerregistry from giving an image's index
// entry an artifactType (which it otherwise copies from the config media
// type): the OCI spec reserves that field for artifacts, and an index of plain
// images, as Docker writes it, has none.
type imageNotArtifact struct{ v1.Image }

func (imageNotArtifact) ArtifactType() (string, error) { return "", nil }

// compile builds the services' static binaries for one platform into dir,
// with the flags services/Dockerfile uses. -buildvcs=false and the pinned
// GOAMD64/GOARM64 levels keep the bytes independent of the checkout and the
// host; the revision comes in through -ldflags instead.
func compile(ctx context.Context, log *slog.Logger, root, dir string, p v1.Platform, svcs []service, info buildInfo) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", info.ldflags(), "-o", dir + string(filepath.Separator)}
	for _, s := range svcs {
		args = append(args, "./services/"+s.Name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOAMD64=v1", "GOARM64=v8.0")
	if p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	log.Info("compiling", "platform", p.String(), "services", len(svcs))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", p.String(), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// assemble makes one platform's image from nothing: the shared base layer,
// the binary's layer, and a config that runs the binary as the nonroot user.
func assemble(svc service, p v1.Platform, info buildInfo, base v1.Layer, binary []byte) (v1.Image, error) {
	app, err := newLayer(appEntries(svc, binary), info.Epoch)
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		RootFS:       v1.RootFS{Type: "layers"},
		Config:       containerConfig(svc, info),
	})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: info.Epoch}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "imagebuild: /etc/passwd, /etc/group, " + caBundlePath + ", /tmp",
			Comment: "CA roots from " + rootsModule,
		}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "imagebuild: /" + svc.Name + " (go build -trimpath -ldflags '" + info.ldflags() + "')",
		}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, created)
}

func describePlatform(p v1.Platform, img v1.Image) (builtPlatform, error) {
	digest, err := img.Digest()
	if err != nil {
		return builtPlatform{}, err
	}
	size, err := compressedSize(img)
	if err != nil {
		return builtPlatform{}, err
	}
	return builtPlatform{Platform: p, Image: img, Digest: digest, Size: size}, nil
}

// compressedSize is the image's config plus its compressed layers.
func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}

// writeLayout replaces dir with an OCI image layout holding idx. It refuses
// to delete a directory that is not a layout, so a mistyped -out cannot wipe
// anything else.
func writeLayout(dir string, idx v1.ImageIndex, version string) error {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("refusing to replace %s: it exists and is not an OCI image layout", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
	}))
}

// readLayout reads back the image index that writeLayout stored in dir.
func readLayout(dir string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read layout %s: %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read layout %s: %w", dir, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read layout %s: %w", dir, err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("layout %s: want exactly one image index, as `imagebuild build` writes", dir)
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}

// printBuilt reports each image's digest and, per platform, its compressed size.
func printBuilt(w io.Writer, imgs []builtImage) {
	for _, b := range imgs {
		fmt.Fprintf(w, "%s %s %s\n", b.Service.Name, b.Digest, b.Dir)
		for _, p := range b.Platforms {
			fmt.Fprintf(w, "  %-12s %s %.1f MB compressed (%d bytes)\n", p.Platform.String(), p.Digest, float64(p.Size)/1e6, p.Size)
		}
	}
}
