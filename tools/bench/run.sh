#!/usr/bin/env bash
# Runs every benchmark under tools/bench (executables named bench_*), each
# printing both sides and their ratio. `make bench` calls this.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
found=0
for b in "$dir"/bench_*; do
	[[ -x $b ]] || continue
	found=1
	echo "== $(basename "$b")"
	"$b"
done
((found)) || echo "no benchmarks under tools/bench yet"
