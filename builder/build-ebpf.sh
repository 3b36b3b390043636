#!/usr/bin/env bash
# Compile every ebpf/*.bpf.c into a CO-RE object shipped in the package (src/alaz/objects/).
# Reproducible: the build folder is mapped away in the debug info, so the same source and the
# same clang give byte-identical objects in any clone (CI rebuilds and compares).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
CLANG=${CLANG:-clang}
STRIP=${LLVM_STRIP:-llvm-strip}
arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
out=src/alaz/objects
mkdir -p "$out"
for src in ebpf/*.bpf.c; do
  name=$(basename "$src" .c)
  "$CLANG" -O2 -g -target bpf -D__TARGET_ARCH_"$arch" -Wall -Werror \
    -fdebug-prefix-map="$top"=. -Iebpf/include -c "$src" -o "$out/$name.o.tmp"
  "$STRIP" -g "$out/$name.o.tmp"   # drops DWARF, keeps .BTF/.BTF.ext that CO-RE needs
  mv "$out/$name.o.tmp" "$out/$name.o"
  echo "built $out/$name.o"
done
