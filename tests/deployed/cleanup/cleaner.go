package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi"
	tagtypes "github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"herald/stacks"
)

// s3API is the part of the S3 client the cleanup uses.
type s3API interface {
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// taggingAPI is the part of the Resource Groups Tagging API client it uses.
type taggingAPI interface {
	GetResources(context.Context, *resourcegroupstaggingapi.GetResourcesInput, ...func(*resourcegroupstaggingapi.Options)) (*resourcegroupstaggingapi.GetResourcesOutput, error)
}

// terraformRunner runs terraform in a directory.
type terraformRunner interface {
	Run(ctx context.Context, dir string, args ...string) error
}

type execTerraform struct {
	bin string
	out io.Writer
}

func (e execTerraform) Run(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"-chdir=" + dir}, args...)...)
	cmd.Stdout, cmd.Stderr = e.out, e.out
	cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "TF_INPUT=0", "CHECKPOINT_DISABLE=1")
	// Interrupted, terraform gets the signal itself (same process group)
	// and stops cleanly; wait for it rather than killing it mid-call.
	cmd.Cancel = func() error { return nil }
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("terraform %s: %w", args[0], err)
	}
	return nil
}

type cleaner struct {
	out        io.Writer
	prefix     string // stack name prefix, "herald-e2e"
	dir        string // local state files
	bucket     string // remote states; empty for none
	region     string
	breakLocks bool
	dryRun     bool
	annotate   bool // print GitHub Actions annotations

	terraform terraformRunner
	s3        s3API      // nil without a bucket
	tagging   taggingAPI // nil: no report
}

// stackName is what a stack id can be (stacks.StackID of a valid name).
var stackName = regexp.MustCompile(`^herald-[a-z0-9]+(-[a-z]+)?$`)

// stateRef is where one copy's state is: a local file, or an object.
type stateRef struct {
	stack       string
	path        string // local state file
	bucket, key string // remote state
}

func (r stateRef) String() string {
	if r.path != "" {
		return r.path
	}
	return "s3://" + r.bucket + "/" + r.key
}

func (c *cleaner) run(ctx context.Context) error {
	refs, err := c.find(ctx)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		fmt.Fprintf(c.out, "no state of a %s* stack in %s%s\n", c.prefix, c.dir, c.bucketNote())
	}
	found := map[string]bool{}
	var errs []error
	for _, ref := range refs {
		found[ref.stack] = true
		if err := c.destroy(ctx, ref); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", ref.stack, ref, err))
			c.warn("%s left behind: %v", ref.stack, err)
		}
	}
	if c.tagging != nil {
		if err := c.reportTagged(ctx, found); err != nil {
			// The report is advice; the destroys above are the result.
			c.warn("listing resources tagged %s: %v", stacks.CopyTag, err)
		}
	}
	return errors.Join(errs...)
}

func (c *cleaner) bucketNote() string {
	if c.bucket == "" {
		return " (no state bucket set)"
	}
	return " or s3://" + c.bucket + "/" + stacks.StateKey(c.prefix+"*")
}

// find lists the states of stacks named with the prefix, local then remote.
func (c *cleaner) find(ctx context.Context) ([]stateRef, error) {
	var refs []stateRef
	// the local backend's file name, terraform.<stack>.tfstate
	paths, err := filepath.Glob(filepath.Join(c.dir, "terraform."+c.prefix+"*.tfstate"))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		stack := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "terraform."), ".tfstate")
		if !stackName.MatchString(stack) {
			continue
		}
		refs = append(refs, stateRef{stack: stack, path: p})
	}
	if c.bucket == "" {
		return refs, nil
	}
	keyPrefix := strings.TrimSuffix(stacks.StateKey(c.prefix), ".tfstate")
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: aws.String(c.bucket), Prefix: aws.String(keyPrefix)})
	for pages := 0; p.HasMorePages(); pages++ {
		if pages == 100 {
			return nil, fmt.Errorf("s3://%s/%s: more than 100 pages of objects", c.bucket, keyPrefix)
		}
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", c.bucket, keyPrefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			stack := strings.TrimSuffix(strings.TrimPrefix(key, strings.TrimSuffix(stacks.StateKey(""), ".tfstate")), ".tfstate")
			if stacks.StateKey(stack) != key || !strings.HasPrefix(stack, c.prefix) || !stackName.MatchString(stack) {
				continue // a lock file, a backup, anything else
			}
			refs = append(refs, stateRef{stack: stack, bucket: c.bucket, key: key})
		}
	}
	return refs, nil
}

func (c *cleaner) read(ctx context.Context, ref stateRef) ([]byte, error) {
	if ref.path != "" {
		return os.ReadFile(ref.path)
	}
	o, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(ref.bucket), Key: aws.String(ref.key)})
	if err != nil {
		return nil, err
	}
	defer o.Body.Close()
	return io.ReadAll(o.Body)
}

// remove deletes a state that holds no resource any more.
func (c *cleaner) remove(ctx context.Context, ref stateRef) error {
	if ref.path != "" {
		for _, p := range []string{ref.path, ref.path + ".backup"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	_, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(ref.bucket), Key: aws.String(ref.key)})
	return err
}

// unlock handles a remote state's lock file (use_lockfile): a run that
// was killed mid-apply leaves it behind. Broken only with -break-locks.
func (c *cleaner) unlock(ctx context.Context, ref stateRef) error {
	lock := ref.key + ".tflock"
	o, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(ref.bucket), Key: aws.String(lock)})
	var missing *s3types.NoSuchKey
	if errors.As(err, &missing) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the lock %s: %w", lock, err)
	}
	info, _ := io.ReadAll(io.LimitReader(o.Body, 4096))
	o.Body.Close()
	if !c.breakLocks {
		return fmt.Errorf("locked (%s); if no run is using it, run again with -break-locks", strings.TrimSpace(string(info)))
	}
	fmt.Fprintf(c.out, "breaking the lock of %s: %s\n", ref.stack, strings.TrimSpace(string(info)))
	if c.dryRun {
		return nil
	}
	_, err = c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(ref.bucket), Key: aws.String(lock)})
	return err
}

// destroy destroys everything in one state, then removes the state.
func (c *cleaner) destroy(ctx context.Context, ref stateRef) error {
	b, err := c.read(ctx, ref)
	if err != nil {
		return err
	}
	info, err := parseState(b)
	if err != nil {
		return err
	}
	if info.resources == 0 {
		fmt.Fprintf(c.out, "%s: no resources in %s; removing the state\n", ref.stack, ref)
		if c.dryRun {
			return nil
		}
		return c.remove(ctx, ref)
	}
	if info.copyOf == "" {
		return fmt.Errorf("%d resources, none tagged %s: not a copy the suite made; not destroyed (check it by hand)", info.resources, stacks.CopyTag)
	}
	fmt.Fprintf(c.out, "%s: a copy of %s with %d resources in %s: destroying\n", ref.stack, info.copyOf, info.resources, ref)
	if ref.path == "" {
		if err := c.unlock(ctx, ref); err != nil {
			return err
		}
	}
	if c.dryRun {
		return nil
	}
	config, err := destroyConfig(ref, info, c.region)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "herald-cleanup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.tf.json"), config, 0o644); err != nil {
		return err
	}
	if err := c.terraform.Run(ctx, dir, "init", "-input=false", "-no-color"); err != nil {
		return err
	}
	if err := c.terraform.Run(ctx, dir, "destroy", "-auto-approve", "-input=false", "-no-color"); err != nil {
		return err
	}
	// Believe the state, not the exit code.
	if b, err = c.read(ctx, ref); err != nil {
		return fmt.Errorf("read the state after the destroy: %w", err)
	}
	after, err := parseState(b)
	if err != nil {
		return fmt.Errorf("the state after the destroy: %w", err)
	}
	if after.resources > 0 {
		return fmt.Errorf("%d resources remain after the destroy; the state is kept", after.resources)
	}
	fmt.Fprintf(c.out, "%s: destroyed; removing the state\n", ref.stack)
	return c.remove(ctx, ref)
}

// reportTagged warns of resources tagged as copies of stacks no state was
// found for. Stacks found are noted only: the tagging API lists a deleted
// resource for a while after its deletion.
func (c *cleaner) reportTagged(ctx context.Context, found map[string]bool) error {
	byStack := map[string][]string{}
	p := resourcegroupstaggingapi.NewGetResourcesPaginator(c.tagging, &resourcegroupstaggingapi.GetResourcesInput{
		TagFilters:       []tagtypes.TagFilter{{Key: aws.String(stacks.CopyTag)}},
		ResourcesPerPage: aws.Int32(100),
	})
	for pages := 0; p.HasMorePages(); pages++ {
		if pages == 100 {
			return errors.New("more than 100 pages of tagged resources")
		}
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, m := range page.ResourceTagMappingList {
			arn := aws.ToString(m.ResourceARN)
			if outlivesDestroy(arn) {
				continue
			}
			for _, tag := range m.Tags {
				if aws.ToString(tag.Key) != stacks.EnvironmentTag {
					continue
				}
				if stack := stacks.StackID(aws.ToString(tag.Value), ""); strings.HasPrefix(stack, c.prefix) {
					byStack[stack] = append(byStack[stack], arn)
				}
			}
		}
	}
	for _, stack := range slices.Sorted(maps.Keys(byStack)) {
		arns := byStack[stack]
		slices.Sort(arns)
		shown := arns[:min(len(arns), 10)]
		if found[stack] {
			fmt.Fprintf(c.out, "%s: the tagging API still lists %d resources (it lags deletions by minutes): %s\n", stack, len(arns), strings.Join(shown, " "))
			continue
		}
		c.warn("%s: no state found, %d resources tagged %s remain; destroy them by hand (tests/README.md): %s", stack, len(arns), stacks.CopyTag, strings.Join(shown, " "))
	}
	return nil
}

// outlivesDestroy is true for resources that stay listed after a complete
// destroy: KMS keys in their deletion window, secrets in their recovery
// window.
func outlivesDestroy(arn string) bool {
	return strings.Contains(arn, ":kms:") && strings.Contains(arn, ":key/") || strings.Contains(arn, ":secretsmanager:")
}

func (c *cleaner) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.annotate {
		fmt.Fprintln(c.out, "::warning::"+msg)
		return
	}
	fmt.Fprintln(c.out, "WARNING "+msg)
}
