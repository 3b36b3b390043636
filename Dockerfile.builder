# The BPF builder: Debian's clang/llvm/libbpf, the same toolchain CI uses, so objects built here
# are byte-identical to the committed ones.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang=1:14.0-55.7~deb12u1 llvm=1:14.0-55.7~deb12u1 \
      libbpf-dev=1:1.1.2-0+deb12u1 bpftool=7.1.0+6.1.* make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
CMD ["./builder/build-ebpf.sh"]
