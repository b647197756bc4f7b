#!/usr/bin/env bash
# Runs hutch's cgroup tests on a real kernel with the unified cgroup
# hierarchy only (cgroup v2), whatever the machine's own kernel mounts.
#
# Boots Debian's kernel under QEMU (TCG) with a busybox initramfs that mounts
# this machine's / read-only over virtio-9p, and there runs, as root and as
# an unprivileged user with a delegated subtree, the host crate's container
# and limits tests and `hutch run` end to end (tests/vm/guest.sh).
#
# Run as root on Debian 12 from anywhere: bash tests/vm/run.sh
# Installs what it needs with apt-get. Exits 0 only when every step in the
# guest passed. See tests/vm/README.md.
#
# Settings (environment):
#   RIG_TIMEOUT  seconds the guest may run before it is killed (default 540)
#   RIG_VERBOSE  1 to show the whole serial console, not only the results
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TIMEOUT=${RIG_TIMEOUT:-540}
VERBOSE=${RIG_VERBOSE:-0}
START=$SECONDS

say() { printf '==> [%4ds] %s\n' $((SECONDS - START)) "$*"; }
die() {
    echo "run.sh: $*" >&2
    exit 1
}

[[ $EUID == 0 ]] || die "run as root: it installs packages and boots a guest"
cd "$REPO"

# --- packages ----------------------------------------------------------------

# qemu-system-x86: the emulator; linux-image-amd64: the kernel and its
# modules; busybox-static: the initramfs's tools; cpio: packs it; python3 and
# gcc: the limits tests compile C and run Python, and the checks read JSON;
# e2fsprogs: makes the guest's scratch disk.
PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static cpio python3 gcc e2fsprogs)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The newest installed Debian kernel and its modules.
KERNEL=$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
[[ -n $KERNEL ]] || die "no /boot/vmlinuz-* after installing linux-image-amd64"
KVER=${KERNEL#/boot/vmlinuz-}
[[ -d /lib/modules/$KVER ]] || die "no /lib/modules/$KVER for $KERNEL"
say "kernel $KVER"

# --- builds ------------------------------------------------------------------

# Everything the rig makes goes here, under cargo's target directory.
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
RIG=$TARGET_DIR/vm
rm -rf "$RIG"
mkdir -p "$RIG"

say "building the test binaries"
cargo test --workspace --no-run --message-format=json >"$RIG/test-build.json"
say "building the CLI"
cargo build --release -p hutch --message-format=json >"$RIG/cli-build.json"

# The executable of test target $2 (or binary, with $3 = bin) of package $1,
# from cargo's JSON messages in $4.
artifact() {
    python3 - "$@" <<'EOF'
import json, sys
package, target, kind, messages = sys.argv[1:5]
found = set()
for line in open(messages):
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["name"] == target and kind in m["target"]["kind"]
            and m["package_id"].split("#")[0].rsplit("/", 1)[-1].startswith(package)):
        found.add(m["executable"])
if len(found) != 1:
    sys.exit(f"{len(found)} executables of {kind} {target} of {package}: {sorted(found)}")
print(found.pop())
EOF
}
CONTAINER_TEST=$(artifact host container test "$RIG/test-build.json")
LIMITS_TEST=$(artifact host limits test "$RIG/test-build.json")
HUTCH=$(artifact cli hutch bin "$RIG/cli-build.json")
say "guest runs $CONTAINER_TEST, $LIMITS_TEST and $HUTCH"

# --- initramfs ---------------------------------------------------------------

ROOT=$RIG/initramfs
mkdir -p "$ROOT"/{bin,dev,proc,sys,host,modules}
cp /bin/busybox "$ROOT/bin/busybox"
# /init is a shell script: its interpreter must exist before it runs.
ln -s busybox "$ROOT/bin/sh"
cp tests/vm/init.sh "$ROOT/init"
chmod 755 "$ROOT/init"
mknod "$ROOT/dev/console" c 5 1

# The modules the guest needs and everything they need, dependencies first,
# uncompressed (busybox insmod reads plain .ko files): the host's file
# system share (virtio_pci, 9pnet_virtio, 9p), a scratch disk (virtio_blk,
# ext4 and the crc32c its metadata checksums need), and a network
# interface besides the loopback (dummy makes dummy0), as a real machine has.
declare -A ADDED=()
add_module() {
    local name=$1 dependency path
    [[ -z ${ADDED[$name]:-} ]] || return 0
    ADDED[$name]=1
    path=$(modinfo -k "$KVER" -n "$name") || die "kernel $KVER has no module $name"
    if [[ $path == "(builtin)" ]]; then
        return 0
    fi
    for dependency in $(modinfo -k "$KVER" -F depends "$name" | tr ',' ' '); do
        add_module "$dependency"
    done
    case $path in
    *.ko) cp "$path" "$ROOT/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$path" >"$ROOT/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$path" >"$ROOT/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$path" >"$ROOT/modules/$name.ko" ;;
    *) die "module $name: unknown file $path" ;;
    esac
    echo "$name" >>"$ROOT/modules/order"
}
for module in virtio_pci 9pnet_virtio 9p virtio_blk crc32c_generic ext4 dummy; do
    add_module "$module"
done
say "modules: $(tr '\n' ' ' <"$ROOT/modules/order")"

(cd "$ROOT" && find . | cpio --quiet -o -H newc) | gzip -1 >"$RIG/initramfs.gz"

# What the guest runs goes on its scratch disk, in /tmp/rig-files there:
# the guest sees this machine's / but its own /tmp, which hides a clone or
# a target directory under this machine's /tmp.
FILES=$RIG/disk/rig-files
mkdir -p "$FILES"
cp "$CONTAINER_TEST" "$FILES/container"
cp "$LIMITS_TEST" "$FILES/limits"
cp "$HUTCH" "$FILES/hutch"
cp tests/vm/guest.sh "$FILES/guest.sh"
# What guest.sh needs to know, as shell assignments.
cat >"$FILES/rig.env" <<EOF
RIG_FILES=/tmp/rig-files
EOF
chmod -R a+rX "$RIG/disk"

# The guest's /tmp: an ext4 disk, as on the host, not a tmpfs. Page cache
# of files read from it is charged to the reader's cgroup, which one limits
# test needs; files in a tmpfs stay charged to whoever wrote them.
truncate -s 2G "$RIG/scratch.img"
mkfs.ext4 -q -F -d "$RIG/disk" "$RIG/scratch.img"

# --- boot ----------------------------------------------------------------------

LOG=$RIG/serial.log
say "booting (TCG, at most ${TIMEOUT}s); serial console in $LOG"
# KVM guests hang on these machines: TCG. The host's / is shared read-only;
# multidevs=remap keeps inode numbers of its different file systems apart.
# cgroup_no_v1=all leaves the unified hierarchy alone.
QEMU=(
    qemu-system-x86_64
    -accel tcg,thread=multi -cpu max -smp 2 -m 2048
    -nographic -no-reboot -nic none
    -drive "file=$RIG/scratch.img,format=raw,if=virtio,cache=unsafe"
    -kernel "$KERNEL" -initrd "$RIG/initramfs.gz"
    -append "console=ttyS0 panic=-1 cgroup_no_v1=all mitigations=off"
    -fsdev local,id=host,path=/,security_model=none,readonly=on,multidevs=remap
    -device virtio-9p-pci,fsdev=host,mount_tag=host
)
guest_start=$SECONDS
# Shows the results as they come, or with RIG_VERBOSE=1 everything.
filter=(grep --line-buffered -E '^RIG-(STEP|RESULT)')
if ((VERBOSE)); then
    filter=(cat)
fi
set +e
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 | tr -d '\r' | tee "$LOG" | "${filter[@]}"
qemu_status=${PIPESTATUS[0]}
set -e
guest_time=$((SECONDS - guest_start))

# --- report --------------------------------------------------------------------

echo
echo "Guest steps (kernel $KVER, ${guest_time}s in the guest, $((SECONDS - START))s in all):"
grep -E '^RIG-STEP ' "$LOG" | sed 's/^RIG-STEP /  /' || true
result=$(grep -E '^RIG-RESULT ' "$LOG" | tail -n 1 || true)
if ((qemu_status == 124 || qemu_status == 137)); then
    echo "FAILED: the guest did not finish within ${TIMEOUT}s (log: $LOG)"
    exit 1
fi
if ((qemu_status != 0)); then
    echo "FAILED: QEMU exited with status $qemu_status (log: $LOG)"
    exit 1
fi
if [[ $result != "RIG-RESULT PASS" ]] || grep -qE '^RIG-STEP [^:]*: FAIL' "$LOG"; then
    echo "FAILED: ${result:-the guest printed no result} (log: $LOG)"
    exit 1
fi
echo "PASSED: every step in the guest (log: $LOG)"
