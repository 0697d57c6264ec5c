# Herald infrastructure (stacks/): synth, tfsec, tests. The root Makefile
# includes this file; targets run from the repository root. See
# stacks/README.md.

STACKS_TFSEC_VERSION := v1.28.14
STACKS_TFSEC         := $(CURDIR)/bin/tfsec-$(STACKS_TFSEC_VERSION)
STACKS_OUT           := cdktf.out
# tfsec reads the HCL rendering of the same stacks (stacks/README.md says why)
STACKS_HCL_OUT       := cdktf.out/hcl

# cdktf and jsii: no checkpoint calls, no Node support banners on Node 20.
export CHECKPOINT_DISABLE := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: synth synth-hcl tfsec test-stacks cdktf-cli

## synth: write every environment's stack, in both mesh modes, to cdktf.out/stacks
synth:
	rm -rf $(STACKS_OUT)/stacks $(STACKS_OUT)/manifest.json
	HERALD_SYNTH_MESH_VARIANTS=1 CDKTF_OUTDIR=$(STACKS_OUT) go run .

## synth-hcl: the same stacks rendered as HCL, into cdktf.out/hcl/stacks
synth-hcl:
	rm -rf $(STACKS_HCL_OUT)
	SYNTH_HCL_OUTPUT=true HERALD_SYNTH_MESH_VARIANTS=1 CDKTF_OUTDIR=$(STACKS_HCL_OUT) go run .

$(STACKS_TFSEC):
	mkdir -p $(CURDIR)/bin
	GOBIN=$(CURDIR)/bin go install github.com/aquasecurity/tfsec/cmd/tfsec@$(STACKS_TFSEC_VERSION)
	mv $(CURDIR)/bin/tfsec $@

## tfsec: scan every stack; fails on any HIGH or CRITICAL finding
tfsec: $(STACKS_TFSEC) synth-hcl
	@status=0; for stack in $(STACKS_HCL_OUT)/stacks/*/; do \
		echo "tfsec $$stack"; \
		$(STACKS_TFSEC) $$stack --no-color --concise-output --minimum-severity HIGH || status=1; \
	done; exit $$status

## test-stacks: config validation, synth and policy tests of stacks/
test-stacks:
	go test ./stacks/ .

## cdktf-cli: install the pinned cdktf CLI (package-lock.json) for diff, deploy and destroy
cdktf-cli: node_modules/.bin/cdktf

node_modules/.bin/cdktf: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@
