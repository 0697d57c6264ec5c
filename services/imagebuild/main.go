// Command imagebuild builds Herald's container images without a container
// engine, and pushes them.
//
//	imagebuild build  [-out images] [-services a,b] [-platforms linux/amd64,linux/arm64]
//	                  [-version V] [-revision R] [-source URL]
//	imagebuild push   [-layout images] [-registry HOST/PREFIX | -api-repo URL -sender-repo URL]
//	                  [-tag T] [-ecr-region R] [-env-file F]
//	imagebuild rootfs -out DIR
//
// `build` compiles each service statically and assembles, from nothing (no
// base image is pulled), an image of two layers: the system files (users,
// CA certificates, /tmp) and the binary. It writes one OCI image layout per
// service, each holding an index with an image per platform, and prints the
// digests and compressed sizes. Timestamps come from SOURCE_DATE_EPOCH or the
// commit, so the same commit builds the same digests.
//
// `push` sends the layouts to a registry, logging in to ECR through
// GetAuthorizationToken, tags them with the git revision, and prints the
// digest references and the HERALD_*_IMAGE lines the stack reads.
//
// `rootfs` writes the system layer's files to a directory: services/Dockerfile
// copies them into its final stage, so both builds ship the same files.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"herald/services/internal/herald"

	"herald/services/contract"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

// run prints its results (digests, sizes, image references) on stdout for
// people and scripts, and logs its progress as JSON on stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: imagebuild build|push|rootfs [flags] (-h for each)")
	}
	log := herald.NewLogger(stderr, "info", "build", "imagebuild")
	switch args[0] {
	case "build":
		return runBuild(ctx, log, args[1:], getenv, stdout, stderr)
	case "push":
		return runPush(ctx, log, args[1:], getenv, stdout, stderr)
	case "rootfs":
		return runRootfs(args[1:], getenv, stderr)
	default:
		return fmt.Errorf("unknown command %q: want build, push or rootfs", args[0])
	}
}

func runBuild(ctx context.Context, log *slog.Logger, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "images", "directory for the OCI image layouts (one per service)")
	svcList := fs.String("services", allServiceNames(), "comma-separated services to build")
	platList := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms of each image index")
	var info buildInfo
	fs.StringVar(&info.Version, "version", "", "version label (default: git describe --tags --always --dirty)")
	fs.StringVar(&info.Revision, "revision", "", "revision label (default: git rev-parse HEAD)")
	fs.StringVar(&info.Source, "source", "", "source repository URL label (default: the origin remote's URL; none leaves it out)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("build: unexpected arguments %q", fs.Args())
	}
	svcs, err := parseServices(*svcList)
	if err != nil {
		return err
	}
	plats, err := parsePlatforms(*platList)
	if err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	if info, err = resolveBuildInfo(ctx, root, info, getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}
	outDir := *out
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	log.Info("building", "version", info.Version, "revision", info.Revision, "epoch", info.Epoch.Format(time.RFC3339), "platforms", *platList)
	built, err := build(ctx, log, buildOptions{ModuleRoot: root, OutDir: outDir, Services: svcs, Platforms: plats, Info: info})
	if err != nil {
		return err
	}
	for i := range built {
		// Report the layout as the caller named it, relative to the checkout.
		if rel, err := filepath.Rel(root, built[i].Dir); err == nil && !strings.HasPrefix(rel, "..") {
			built[i].Dir = rel
		}
	}
	printBuilt(stdout, built)
	return nil
}

func runPush(ctx context.Context, log *slog.Logger, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := pushOptions{Repos: map[string]string{}}
	fs.StringVar(&opts.LayoutDir, "layout", "images", "directory holding the layouts `build` wrote")
	svcList := fs.String("services", allServiceNames(), "comma-separated services to push")
	registry := fs.String("registry", "", "push each service to <registry>/<service> unless its own repository is given")
	repoFlags := map[string]*string{}
	for _, s := range services {
		repoFlags[s.Name] = fs.String(s.RepoFlag, "", fmt.Sprintf("%s repository URL (default $%s)", s.Name, s.RepoEnv))
	}
	fs.StringVar(&opts.Tag, "tag", "", "tag (default: the images' git revision)")
	fs.StringVar(&opts.ECRRegion, "ecr-region", "", "log in through ECR in this region even if the host is not *.dkr.ecr.<region>.amazonaws.com")
	fs.StringVar(&opts.EnvFile, "env-file", "", "also write the "+contract.APIImage+" and "+contract.SenderImage+" lines to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("push: unexpected arguments %q", fs.Args())
	}
	var err error
	if opts.Services, err = parseServices(*svcList); err != nil {
		return err
	}
	for _, s := range opts.Services {
		switch {
		case *repoFlags[s.Name] != "":
			opts.Repos[s.Name] = *repoFlags[s.Name]
		case getenv(s.RepoEnv) != "":
			opts.Repos[s.Name] = getenv(s.RepoEnv)
		case *registry != "":
			opts.Repos[s.Name] = strings.TrimSuffix(*registry, "/") + "/" + s.Name
		}
	}
	results, err := push(ctx, log, getenv, opts)
	if err != nil {
		return err
	}
	return printPushed(stdout, results, opts.EnvFile)
}

func runRootfs(args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rootfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write the image's system files into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("rootfs: want -out DIR and no arguments")
	}
	// Docker passes SOURCE_DATE_EPOCH as a build argument; without it the
	// files carry the Unix epoch, still the same on every build.
	mtime := time.Unix(0, 0).UTC()
	if v := getenv("SOURCE_DATE_EPOCH"); v != "" {
		var err error
		if mtime, err = parseEpoch(v); err != nil {
			return err
		}
	}
	entries, err := baseEntries()
	if err != nil {
		return err
	}
	return writeTree(*out, entries, mtime)
}

func allServiceNames() string {
	var names []string
	for _, s := range services {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func parseServices(list string) ([]service, error) {
	var out []service
	for _, n := range strings.Split(list, ",") {
		s, err := lookupService(strings.TrimSpace(n))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func parsePlatforms(list string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, s := range strings.Split(list, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", s, err)
		}
		if p.OS != "linux" {
			return nil, fmt.Errorf("platform %q: only linux images are built", s)
		}
		out = append(out, *p)
	}
	return out, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the herald module: run from the repository")
	}
	return filepath.Dir(mod), nil
}
