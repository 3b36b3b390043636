# `make build-ebpf` compiles the BPF objects with the local clang when there is one, else inside
# the builder image (Dockerfile.builder).
BUILDER_IMAGE ?= alaz-builder:latest

.PHONY: build-ebpf build-ebpf-docker check-ebpf
build-ebpf:
	@if command -v clang >/dev/null 2>&1 && command -v llvm-strip >/dev/null 2>&1; then \
		./builder/build-ebpf.sh; \
	else \
		$(MAKE) build-ebpf-docker; \
	fi

build-ebpf-docker:
	docker build -f Dockerfile.builder -t $(BUILDER_IMAGE) .
	docker run --rm -v "$(CURDIR)":/src -w /src $(BUILDER_IMAGE)

# Fails when the committed objects differ from what the sources compile to.
check-ebpf: build-ebpf
	git diff --exit-code --stat -- src/alaz/objects
