#!/usr/bin/env bash
# Runs libFuzzer harnesses for a bounded time.
#
#   tools/fuzz.sh BINARY [SECONDS]      one harness, TAP output (used by make check)
#   tools/fuzz.sh --all DIR [SECONDS]   every DIR/fuzz_* harness (make fuzz)
#
# Seeds come from tests/fuzz/corpus/<name>/ (read only); what the fuzzer finds
# goes to build/fuzz-corpus/<name>/, and crashes to build/fuzz-crashes/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

run_one() {
	local bin=$1 secs=$2 name out log rc
	name=$(basename "$bin")
	out="$root/build/fuzz-corpus/$name"
	mkdir -p "$out" "$root/build/fuzz-crashes" "$root/tests/fuzz/corpus/$name"
	log=$(mktemp)
	set +e
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
		-artifact_prefix="$root/build/fuzz-crashes/$name-" \
		"$out" "$root/tests/fuzz/corpus/$name" >"$log" 2>&1
	rc=$?
	set -e
	# no such line after a crash: the report below says what happened
	runs=$(grep -Eo 'DONE +cov: [0-9]+.*|Done [0-9]+ runs' "$log" | tail -1 || true)
	if ((rc == 0)); then
		echo "ok - $name ran ${secs}s clean ($runs)"
	else
		echo "not ok - $name found a failure (exit $rc)"
		sed 's/^/# /' "$log" | tail -60
	fi
	rm -f "$log"
	return $rc
}

if [[ ${1:-} == --all ]]; then
	dir=$2 secs=${3:-60} fail=0
	for bin in "$dir"/fuzz_*; do
		[[ -x $bin ]] || continue
		run_one "$bin" "$secs" || fail=1
	done
	exit $fail
fi

echo "1..1"
run_one "$1" "${2:-${HC_FUZZ_SECONDS:-10}}"
