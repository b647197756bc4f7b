#!/usr/bin/env bash
# Runs a fuzz campaign: every fuzz target in turn, for the same time each,
# on the seed corpora plus whatever earlier campaigns added to them, then
# prints one Markdown table row per target: executions, executions per
# second, coverage (libFuzzer's `cov` edges and `ft` features at the end),
# corpus size (files and bytes) and the outcome.
#
# Usage: fuzz/campaign.sh [SECONDS] [TARGET...]
#   SECONDS   time per target (default 600)
#   TARGET    the targets to run (default: all of `cargo fuzz list`)
#
# Logs go to fuzz/campaign-logs/<target>.log. The script exits non-zero when
# a target crashed; the crashing input is in fuzz/artifacts/<target>/.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$fuzz_dir")
cd "$root"

seconds=${1:-600}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] || {
    echo "campaign.sh: SECONDS must be a whole number, not '$seconds'" >&2
    exit 2
}

cargo +nightly fuzz build
"$fuzz_dir/seed.sh"

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

logs=$fuzz_dir/campaign-logs
mkdir -p "$logs"
rows=()
failed=0
for target in "${targets[@]}"; do
    log=$logs/$target.log
    echo "campaign.sh: $target for ${seconds}s (log: $log)" >&2
    status=ok
    cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        </dev/null >"$log" 2>&1 || {
        status="FAILED: $(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 || echo "see $log")"
        failed=1
    }
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    last=$(grep -E '#[0-9]+.*cov: [0-9]+' "$log" | tail -n 1 || true)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    corpus=$fuzz_dir/corpus/$target
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    rows+=("| \`$target\` | $runs | $rate | $cov | $ft | $files | $bytes | $status |")
done

echo
echo "Fuzz campaign, ${seconds}s per target:"
echo
echo "| target | executions | per second | cov (edges) | ft (features) | corpus files | corpus bytes | outcome |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
