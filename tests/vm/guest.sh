#!/usr/bin/env bash
# The rig's test run inside the guest, as root, in the host's file system
# (read-only, with a scratch disk at /tmp) on a kernel with the unified
# cgroup hierarchy only. Started by tests/vm/init.sh from the scratch disk,
# where run.sh put it with the binaries it runs; $1 is the file of settings
# run.sh wrote (RIG_* variables).
#
# Each step prints "RIG-STEP <name>: PASS" or "RIG-STEP <name>: FAIL: why";
# the last line is "RIG-RESULT PASS" or "RIG-RESULT FAIL". run.sh reads them
# from the serial console.
set -uo pipefail

# shellcheck source=/dev/null
. "$1"

CG=/sys/fs/cgroup
# The test binaries and the CLI (run.sh made them readable by all).
BIN=$RIG_FILES
# The unprivileged user of the delegated-subtree steps.
RIG_UID=1000
WORK=/tmp/rig
# Logs and reports; the unprivileged mode writes to its home instead.
OUT=$WORK/out
FAILED=()

pass() { echo "RIG-STEP $1: PASS${2:+ ($2)}"; }
fail() {
    echo "RIG-STEP $1: FAIL: $2"
    FAILED+=("$1")
}

# Runs "$@" as step $name with its output in $OUT/$name.log, shown on
# the console, and says PASS or FAIL by its exit status.
step() {
    local name=$1
    shift
    local log=$OUT/$name.log start=$SECONDS
    echo "RIG-START $name: $*"
    if "$@" >"$log" 2>&1; then
        cat "$log"
        pass "$name" "$((SECONDS - start))s"
    else
        local status=$?
        cat "$log"
        fail "$name" "exit status $status after $((SECONDS - start))s"
    fi
}

# --- the cgroup tree of a systemd-like system -------------------------------
#
#   /                   cpu memory pids handed to the children
#   /rig                leaf: this shell and every test process (root's
#                       session, like a login scope)
#   /hutch              not made here: root's hutch makes it at its first
#                       build, as the default parent of container groups
#   /judge              empty, a parent root names with --cgroup-parent or
#                       HUTCH_CGROUP_PARENT
#   /deleg              owned by uid 1000 (a delegated subtree, like
#                       user@1000.service), cpu memory pids handed down
#   /deleg/shell        leaf: the unprivileged user's shell
#
# A v2 group with processes cannot hand controllers to children ("no
# internal processes"), so a container group can never go below the group
# its creator runs in; only the root group is exempt.

# --- hutch run, end to end --------------------------------------------------

# check_report REPORT WANT_STATUS CHECK
# Checks a JSON report of `hutch run`: the verdict, cgroup-v2 accounting,
# and the Python expression CHECK over the report `r`.
check_report() {
    python3 - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
want, check = sys.argv[2], sys.argv[3]
problems = []
if r["status"] != want:
    problems.append(f"status {r['status']!r}, wanted {want!r}")
if r["accounting"] != "cgroup-v2":
    problems.append(f"accounting {r['accounting']!r}, wanted 'cgroup-v2'")
if not eval(check, {}, {"r": r, "MiB": 1 << 20, "ms": 1_000_000}):
    problems.append(f"fails {check}")
for p in problems:
    print("report:", p)
sys.exit(1 if problems else 0)
EOF
}

# check_run NAME WANT_STATUS WANT_EXIT [CHECK] -- hutch run arguments...
# Runs `hutch run`, then checks its exit status and its report.
check_run() {
    local name=$1 want=$2 want_exit=$3 check=$4
    shift 5
    local report=$OUT/$name.json code=0
    "$BIN/hutch" run --report "$report" "$@" || code=$?
    echo "exit status $code; report: $(cat "$report" 2>/dev/null)"
    [[ $code == "$want_exit" ]] || {
        echo "wanted exit status $want_exit"
        return 1
    }
    check_report "$report" "$want" "$check"
}

# run_in PARENT NAME [hutch run options...]
# Runs `hutch run OPTIONS -- /bin/sleep 3` in the background and checks
# that, while the program runs, a group of that hutch process directly
# below PARENT holds it in its `programs` group and init in its `init`
# group, that the group is gone afterwards, and that the run was ok and
# measured by cgroup v2.
run_in() {
    local parent=$1 name=$2
    shift 2
    local report=$OUT/$name.json code=0 group= procs= init= comm= init_parent= i
    "$BIN/hutch" run --report "$report" "$@" -- /bin/sleep 3 &
    local pid=$!
    # Builds take a second or two under TCG; the program sleeps 3 s.
    for ((i = 0; i < 300; i++)); do
        for group in "$parent"/hutch-"$pid"-*; do
            if [[ -d $group ]]; then
                procs=$(cat "$group/programs/cgroup.procs" 2>/dev/null)
                if [[ -n $procs ]]; then
                    init=$(cat "$group/init/cgroup.procs")
                    comm=$(cat "/proc/$procs/comm")
                    init_parent=$(sed 's/.*) . \([0-9]*\) .*/\1/' "/proc/$init/stat")
                    break 2
                fi
            fi
        done
        sleep 0.05
    done
    wait "$pid" || code=$?
    echo "hutch run (pid $pid) exit status $code; report: $(cat "$report" 2>/dev/null)"
    if [[ -z $procs ]]; then
        echo "no group hutch-$pid-* under $parent held the program while it ran; groups of it:"
        find "$CG" -name "hutch-$pid-*"
        return 1
    fi
    echo "the program ran in $group/programs (cgroup.procs: $(echo $procs), $comm)"
    echo "init ran in $group/init (cgroup.procs: $(echo $init), child of $init_parent)"
    [[ $comm == sleep && $init_parent == "$pid" ]] || {
        echo "wanted the program (sleep) in programs and hutch's child $pid in init"
        return 1
    }
    [[ ! -e $group ]] || {
        echo "$group is still there after the run"
        return 1
    }
    [[ $code == 0 ]] || return 1
    check_report "$report" ok 'True'
}

# groups_of PID: the cgroups hutch process PID made, one per line.
groups_of() {
    find "$CG" -type d -name "hutch-$1-*" 2>/dev/null
}

# stopped_run SIGNAL: starts a `hutch run` of a program that says `ready`
# and sleeps, sends hutch SIGNAL once the program is ready, and checks
# that no group of that hutch is left: for TERM, that hutch ended by the
# signal having removed them itself; for KILL, once a later `hutch run`
# has run.
stopped_run() {
    local signal=$1 fifo=$OUT/ready-$1 line= code=0 before
    rm -f "$fifo"
    mkfifo "$fifo" || return
    "$BIN/hutch" run --wall-time 60s -- /bin/sh -c 'echo ready; exec sleep 1000' \
        >"$fifo" 2>"$OUT/stopped-$signal.err" &
    local pid=$!
    read -r line <"$fifo"
    [[ $line == ready ]] || {
        echo "the program did not start: $(cat "$OUT/stopped-$signal.err")"
        return 1
    }
    before=$(groups_of "$pid")
    echo "groups while it ran: $(echo $before)"
    [[ -n $before ]] || return 1
    kill "-$signal" "$pid"
    wait "$pid" || code=$?
    echo "hutch exit status $code after SIG$signal: $(cat "$OUT/stopped-$signal.err")"
    case $signal in
    TERM) [[ $code == 143 ]] || return 1 ;;
    KILL)
        [[ $code == 137 ]] || return 1
        "$BIN/hutch" run --quiet -- /bin/true || return 1
        ;;
    esac
    local left
    left=$(groups_of "$pid")
    [[ -z $left ]] || {
        echo "left: $(echo $left)"
        return 1
    }
}

# The `hutch run` checks, as whoever runs this function.
cli_checks() {
    local who=$1
    step "$who-run-echo" check_run echo ok 0 'r["memory_bytes"] > 0' -- \
        --time 1s --memory 64M -- /bin/echo hello
    step "$who-run-memory-hog" check_run hog memory-limit 1 'True' -- \
        --time 5s --memory 64M -- /usr/bin/python3 -c "b = b'x' * (256 << 20)"
    step "$who-run-peak" check_run peak ok 0 '32 * MiB <= r["memory_bytes"] < 56 * MiB' -- \
        --time 5s --memory 128M -- /usr/bin/python3 -c "b = b'x' * (32 << 20)"
    step "$who-run-cpu-spin" check_run spin time-limit 1 \
        '1000 * ms <= r["cpu_time_ns"] <= 1100 * ms' -- \
        --time 1s --memory 64M -- /bin/sh -c 'while :; do :; done'
    step "$who-run-processes" check_run pids nonzero-exit 1 'True' -- \
        --time 5s --processes 4 -- /bin/sh -c \
        'for i in 1 2 3 4 5 6; do sleep 3 & done; wait'
    step "$who-run-stopped-by-sigterm" stopped_run TERM
    step "$who-run-killed-then-cleaned" stopped_run KILL
}

if [[ ${2:-} == user-cli ]]; then
    # Started by as_user below: uid $RIG_UID in /deleg/shell.
    OUT=$HOME
    cli_checks user
    exit $((${#FAILED[@]} > 0))
fi

setup_cgroups() {
    echo "+cpu +memory +pids" >"$CG/cgroup.subtree_control" || return
    mkdir "$CG/rig" "$CG/judge" "$CG/deleg" || return
    echo $$ >"$CG/rig/cgroup.procs" || return
    echo "+cpu +memory +pids" >"$CG/deleg/cgroup.subtree_control" || return
    mkdir "$CG/deleg/shell" || return
    # What systemd chowns when it delegates a subtree.
    chown "$RIG_UID:$RIG_UID" "$CG/deleg" "$CG/deleg/cgroup.procs" \
        "$CG/deleg/cgroup.subtree_control" "$CG/deleg/cgroup.threads" \
        "$CG/deleg/shell" "$CG/deleg/shell/cgroup.procs" \
        "$CG/deleg/shell/cgroup.subtree_control" "$CG/deleg/shell/cgroup.threads" || return
    echo "/proc/self/cgroup: $(cat /proc/self/cgroup)"
    echo "root controllers: $(cat $CG/cgroup.controllers)"
    echo "root subtree_control: $(cat $CG/cgroup.subtree_control)"
    echo "/deleg subtree_control: $(cat $CG/deleg/cgroup.subtree_control)"
    grep cgroup2 /proc/self/mountinfo
    [[ $(cat /proc/self/cgroup) == "0::/rig" ]]
}
mkdir -p "$OUT"
step cgroups setup_cgroups

# As root, from a leaf, with no parent named: the groups go to
# /sys/fs/cgroup/hutch, which the first build makes, with the memory and
# pids controllers handed down from the root and by itself.
default_parent() {
    [[ ! -e $CG/hutch ]] || {
        echo "$CG/hutch exists before hutch ran"
        return 1
    }
    run_in "$CG/hutch" default || return
    local control
    control=$(cat "$CG/hutch/cgroup.subtree_control") || return
    echo "$CG/hutch/cgroup.subtree_control: $control"
    [[ " $control " == *" memory "* && " $control " == *" pids "* ]]
}
step root-run-default-parent default_parent

# A parent named on the command line or in the environment comes first.
step root-run-cgroup-parent-option run_in "$CG/judge" option --cgroup-parent "$CG/judge"
HUTCH_CGROUP_PARENT=$CG/judge step root-run-cgroup-parent-variable run_in "$CG/judge" variable

# As root inside a container's view of the hierarchy, as in `docker run
# --privileged` on a cgroup v2 host: a cgroup namespace rooted at /ctr,
# cgroup2 mounted again so that /sys/fs/cgroup is /ctr, and the shell's
# process in that root, which therefore cannot hand out controllers. With
# no parent named, hutch moves the root's processes into its leaf and makes
# its groups below the root; nothing goes outside /ctr.
in_cgroup_namespace() {
    mkdir "$CG/ctr" || return
    local report=$OUT/namespace.json
    (
        echo "$BASHPID" >"$CG/ctr/cgroup.procs" || exit 1
        exec unshare --cgroup --mount sh -c '
            umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 1
            echo "/proc/self/cgroup: $(cat /proc/self/cgroup)"
            "$1" run --report "$2" -- /bin/true || exit 1
            echo "leaf: $(cat /sys/fs/cgroup/leaf/cgroup.procs | tr "\n" " ")"
            echo "left in the root: $(cat /sys/fs/cgroup/cgroup.procs | tr "\n" " ")"
            echo "root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
            [ -z "$(cat /sys/fs/cgroup/cgroup.procs)" ] &&
                grep -qw memory /sys/fs/cgroup/cgroup.subtree_control
        ' sh "$BIN/hutch" "$report"
    ) || return
    check_report "$report" ok 'True' || return
    local left
    left=$(find "$CG/ctr/hutch" -mindepth 1 -type d) || return
    [[ -z $left ]] || {
        echo "container groups left: $left"
        return 1
    }
    [[ ! -e $CG/hutch/leaf && -d $CG/ctr/leaf ]]
}
step root-run-in-cgroup-namespace in_cgroup_namespace

cli_checks root

# --- the host crate's tests, as root ----------------------------------------

# Runs a test binary for at most $1 seconds.
run_tests() {
    local limit=$1
    shift
    timeout -k 5 "$limit" "$@"
}

step root-container-tests run_tests 200 "$BIN/container" --test-threads=2
step root-limits-tests run_tests 200 "$BIN/limits" --test-threads=1

# --- the same as an unprivileged user with a delegated subtree --------------

# Runs "$@" as uid $RIG_UID from the leaf /deleg/shell, with the delegated
# /deleg named as the parent of container groups.
as_user() {
    as_user_without_a_parent env HUTCH_CGROUP_PARENT="$CG/deleg" "$@"
}

# The same with no parent named.
as_user_without_a_parent() {
    (
        echo "$BASHPID" >"$CG/deleg/shell/cgroup.procs" || exit 1
        exec setpriv --reuid="$RIG_UID" --regid="$RIG_UID" --clear-groups \
            env -u HUTCH_CGROUP_PARENT HOME="$WORK/home" "$@"
    )
}
mkdir -p "$WORK/home"
chown "$RIG_UID:$RIG_UID" "$WORK/home"

# Unprivileged, from a leaf, with no parent named, hutch cannot give a
# container a v2 group (its own holds processes, and the shared one at the
# root is root's): it must fail saying how to fix it.
user_without_a_parent() {
    local out code=0
    out=$(as_user_without_a_parent "$BIN/hutch" run -- /bin/true 2>&1) || code=$?
    echo "exit status $code: $out"
    [[ $code == 2 && $out == *"no processes of its own"* && $out == *HUTCH_CGROUP_PARENT* ]]
}
step user-run-without-a-parent user_without_a_parent

# The CLI checks as that user: this script again, in the mode that runs
# only them.
as_user bash "$0" "$1" user-cli || FAILED+=(user-cli)

step user-container-tests as_user timeout -k 5 200 "$BIN/container" --test-threads=2
# The one limits test that needs root (it starts a helper as uid 65534)
# passed, or failed, in the root run above.
step user-limits-tests as_user timeout -k 5 200 "$BIN/limits" --test-threads=1 \
    --skip unprivileged_build_without_a_cgroup_fails_unless_rusage_is_allowed

# --- result -----------------------------------------------------------------

if ((${#FAILED[@]})); then
    echo "RIG-RESULT FAIL (${#FAILED[@]} failed: ${FAILED[*]})"
else
    echo "RIG-RESULT PASS"
fi
