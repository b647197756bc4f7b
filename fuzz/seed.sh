#!/usr/bin/env bash
# Builds the seed corpora fuzz/corpus/<target>/ from the protocol's sample
# frames, which `cargo run -p hutch-protocol --example golden_corpus -- DIR`
# writes to DIR/request/<name> and DIR/reply/<name>.
#
#   decode_*, roundtrip_*   each sample frame as it is
#   validate_*              each sample frame behind one byte, the descriptor
#                           count, once for each of the counts in FD_COUNTS
#
# Seeds are named seed-<name>[-fds<N>]; inputs the fuzzer added to a corpus
# are kept unless --clean is given.
#
# Usage: fuzz/seed.sh [--clean] [--from DIR]
#   --clean     empty each corpus directory first
#   --from DIR  take the frames from DIR (same layout) instead of running
#               the example
set -euo pipefail

FD_COUNTS=(0 1 2 3)

usage() {
    sed -n 's/^# \{0,1\}//; 13,16p' "${BASH_SOURCE[0]}"
}

die() {
    echo "seed.sh: $*" >&2
    exit 1
}

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$fuzz_dir")
clean=0
from=

while (($#)); do
    case $1 in
    --clean) clean=1 ;;
    --from)
        (($# >= 2)) || die "--from needs a directory"
        from=$2
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
    shift
done

if [[ -z $from ]]; then
    from=$(mktemp -d)
    trap 'rm -rf "$from"' EXIT
    (cd "$root" && cargo run --quiet -p hutch-protocol --example golden_corpus -- "$from") ||
        die "the golden_corpus example failed"
fi

# Prepares and prints a target's corpus directory.
corpus_dir() {
    local dir=$fuzz_dir/corpus/$1
    if ((clean)); then
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    echo "$dir"
}

for kind in request reply; do
    frames=()
    for frame in "$from/$kind"/*; do
        [[ -f $frame ]] && frames+=("$frame")
    done
    ((${#frames[@]})) || die "no $kind frames in $from/$kind"

    for target in "decode_$kind" "roundtrip_$kind"; do
        dir=$(corpus_dir "$target")
        for frame in "${frames[@]}"; do
            cp "$frame" "$dir/seed-${frame##*/}"
        done
        echo "$target: ${#frames[@]} seeds in ${dir#"$root"/}"
    done

    target=validate_$kind
    dir=$(corpus_dir "$target")
    for frame in "${frames[@]}"; do
        for fds in "${FD_COUNTS[@]}"; do
            {
                # shellcheck disable=SC2059 # the format is the byte itself
                printf "\\$(printf '%03o' "$fds")"
                cat "$frame"
            } >"$dir/seed-${frame##*/}-fds$fds"
        done
    done
    echo "$target: $((${#frames[@]} * ${#FD_COUNTS[@]})) seeds in ${dir#"$root"/}"
done
