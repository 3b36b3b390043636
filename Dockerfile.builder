# The BPF builder: Debian bookworm's clang 14, llvm and libbpf headers, the same toolchain CI and
# the agent image (Dockerfile, stage `bpf`) use, so objects built here are byte-identical to the
# committed ones. `make build-ebpf-docker` runs builder/build-ebpf.sh in it with the work tree
# mounted at /src. bpftool is here to regenerate ebpf/include/vmlinux.h when that is wanted.
FROM debian:12.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang=1:14.0-55.7~deb12u1 llvm=1:14.0-55.7~deb12u1 libbpf-dev=1:1.1.2-0+deb12u1 \
      bpftool=7.1.0+6.1.* make=4.3-4.1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
CMD ["./builder/build-ebpf.sh"]
