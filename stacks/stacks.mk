# Herald infrastructure (stacks/): synth, trivy, tests. The root Makefile
# includes this file; targets run from the repository root. See
# stacks/README.md.

STACKS_TRIVY_VERSION := v0.74.0
STACKS_TRIVY         := $(CURDIR)/bin/trivy-$(STACKS_TRIVY_VERSION)
# An empty cache of our own: trivy then finds no downloaded checks bundle and
# uses the checks built into the pinned binary, with no network (the same
# checks on every machine until the version changes).
STACKS_TRIVY_CACHE   := $(CURDIR)/bin/.trivy-cache-$(STACKS_TRIVY_VERSION)
# Findings that stay by design, each justified in stacks/README.md.
STACKS_TRIVY_IGNORE  := $(CURDIR)/stacks/trivy-ignore.rego
STACKS_OUT           := cdktf.out
# trivy reads the HCL rendering of the same stacks (stacks/README.md says why)
STACKS_HCL_OUT       := cdktf.out/hcl

# cdktf and jsii: no checkpoint calls, no Node support banners on Node 20.
export CHECKPOINT_DISABLE := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: synth synth-hcl trivy trivy-bin test-stacks cdktf-cli

## synth: write every environment's stack, in both mesh modes, to cdktf.out/stacks
synth:
	rm -rf $(STACKS_OUT)/stacks $(STACKS_OUT)/manifest.json
	HERALD_SYNTH_MESH_VARIANTS=1 CDKTF_OUTDIR=$(STACKS_OUT) go run .

## synth-hcl: the same stacks rendered as HCL, into cdktf.out/hcl/stacks
synth-hcl:
	rm -rf $(STACKS_HCL_OUT)
	SYNTH_HCL_OUTPUT=true HERALD_SYNTH_MESH_VARIANTS=1 CDKTF_OUTDIR=$(STACKS_HCL_OUT) go run .

# trivy is built from source (the Go proxy is the one registry reachable
# everywhere Herald builds) under a versioned name, so the ~10 minute build
# happens once per version. v0.74.0 needs encoding/json/v2.
$(STACKS_TRIVY):
	mkdir -p $(CURDIR)/bin/.trivy-build
	GOBIN=$(CURDIR)/bin/.trivy-build GOEXPERIMENT=jsonv2 go install github.com/aquasecurity/trivy/cmd/trivy@$(STACKS_TRIVY_VERSION)
	mv $(CURDIR)/bin/.trivy-build/trivy $@
	rmdir $(CURDIR)/bin/.trivy-build

## trivy-bin: build the pinned trivy into ./bin (once)
trivy-bin: $(STACKS_TRIVY)

## trivy: scan every stack's HCL; fails on any HIGH or CRITICAL finding not
## justified in stacks/trivy-ignore.rego (and stacks/README.md)
trivy: $(STACKS_TRIVY) synth-hcl
	@mkdir -p $(STACKS_TRIVY_CACHE)
	@status=0; for stack in $(STACKS_HCL_OUT)/stacks/*/; do \
		echo "trivy config $$stack"; \
		$(STACKS_TRIVY) config --skip-check-update --disable-telemetry --skip-version-check \
			--cache-dir $(STACKS_TRIVY_CACHE) --quiet \
			--severity HIGH,CRITICAL --exit-code 1 \
			--ignore-policy $(STACKS_TRIVY_IGNORE) \
			$$stack || status=1; \
	done; exit $$status

## test-stacks: config validation, synth and policy tests of stacks/
test-stacks:
	go test ./stacks/ .

## cdktf-cli: install the pinned cdktf CLI (package-lock.json) for diff, deploy and destroy
cdktf-cli: node_modules/.bin/cdktf

node_modules/.bin/cdktf: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@
