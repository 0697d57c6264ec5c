# Container images of the two services, built without a container engine
# (services/imagebuild/README.md). Included by the root Makefile.
#
#   make images                        both images, as OCI layouts in images/
#   make push API_REPO=<ecr url> SENDER_REPO=<ecr url>
#                                      (or API_REPOSITORY_URL / SENDER_REPOSITORY_URL
#                                      in the environment, or REGISTRY=<host>/<prefix>)

GO              ?= go
IMAGES_DIR      ?= images
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
REGISTRY        ?=
API_REPO        ?=
SENDER_REPO     ?=
IMAGE_TAG       ?=

IMAGEBUILD := $(GO) run ./services/imagebuild

.PHONY: images push test-images

images: ## build both service images into images/ and print their digests and compressed sizes
	$(IMAGEBUILD) build -out $(IMAGES_DIR) -platforms $(IMAGE_PLATFORMS)

push: images ## push both images (ECR login through AWS credentials), print digests and HERALD_*_IMAGE lines
	$(IMAGEBUILD) push -layout $(IMAGES_DIR) -env-file $(IMAGES_DIR)/images.env \
		$(if $(REGISTRY),-registry $(REGISTRY)) \
		$(if $(API_REPO),-api-repo $(API_REPO)) \
		$(if $(SENDER_REPO),-sender-repo $(SENDER_REPO)) \
		$(if $(IMAGE_TAG),-tag $(IMAGE_TAG))

test-images: ## the image tests alone, verbose (they also run in make test)
	$(GO) test -count=1 -v ./services/imagebuild/...
