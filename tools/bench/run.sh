#!/usr/bin/env bash
# Runs every benchmark: the executables named bench_* under tools/bench and
# the C benchmarks built into $HC_BUILD/bench (default build/), each printing
# both sides and their ratio. `make bench` calls this. A benchmark that
# cannot run here (not root, say) exits 77 after saying why; that is
# reported and the others still run.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
build=${HC_BUILD:-$dir/../../build}
# The soak's hour (bench_soak's own default) is for a run by hand; here a
# quarter of it: three node restarts, and slopes past the warm-up.
export HC_SOAK_MINUTES=${HC_SOAK_MINUTES:-15}
found=0
for b in "$dir"/bench_* "$build"/bench/bench_*; do
	[[ -f $b && -x $b ]] || continue
	found=1
	echo "== $(basename "$b")"
	rc=0
	"$b" || rc=$?
	if ((rc == 77)); then
		echo "   (skipped)"
	elif ((rc != 0)); then
		exit "$rc"
	fi
done
((found)) || echo "no benchmarks under tools/bench yet"
