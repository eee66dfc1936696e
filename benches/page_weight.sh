#!/usr/bin/env bash
# What a first visit downloads (docs/page.md): each file under target/site/pkg with
# its brotli and gzip copies, as the release build (`--precompress`) left them.
#   bash benches/page_weight.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=target/site/pkg
[ -d "$pkg" ] || { echo "no $pkg: run bash .ci/release-build first" >&2; exit 1; }
printf '%-48s %10s %10s %10s\n' file bytes brotli gzip
for f in "$pkg"/*; do
  case $f in *.br|*.gz|*.d.ts) continue ;; esac
  size() { [ -f "$1" ] && stat -c %s "$1" || echo -; }
  printf '%-48s %10s %10s %10s\n' "$(basename "$f")" "$(size "$f")" "$(size "$f.br")" "$(size "$f.gz")"
done
