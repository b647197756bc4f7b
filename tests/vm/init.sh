#!/bin/sh
# PID 1 of the rig's initramfs (busybox sh). Loads the modules that the
# host's file system share needs, mounts the host's / read-only at /host,
# gives it the writable and virtual file systems a test run needs, mounts the
# unified cgroup hierarchy, then runs tests/vm/guest.sh (which run.sh put
# on the scratch disk, the guest's /tmp) inside that tree and powers the
# machine off.
#
# Every line the host script looks for starts with "RIG-".

/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# The console, in case the kernel found no /dev/console in the initramfs.
exec </dev/console >/dev/console 2>&1

# Stops here, saying why; the host sees RIG-RESULT FAIL.
die() {
    echo "RIG-STEP boot: FAIL: $*"
    echo "--- dmesg (last 40 lines)"
    dmesg | tail -n 40
    echo "RIG-RESULT FAIL"
    sync
    poweroff -f
}

# /modules/order lists the modules in dependency order (made by run.sh
# from `modinfo -F depends`); busybox insmod resolves no dependencies.
while read -r module; do
    insmod "/modules/$module.ko" || die "insmod $module"
done </modules/order

mkdir -p /host
# msize: larger 9p messages read the test binaries faster.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host ||
    die "mount of the host's / over virtio-9p"

# The host's tree is read-only; a run writes to the scratch disk or to tmpfs.
mount -t proc proc /host/proc || die "proc"
mount -t sysfs sysfs /host/sys || die "sysfs"
mount -t devtmpfs devtmpfs /host/dev || die "devtmpfs"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts || die "devpts"
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm || die "/dev/shm"
# /tmp on the scratch disk (ext4, as on the host); the rest in memory.
mount -t ext4 /dev/vda /host/tmp || die "the scratch disk at /tmp"
chmod 1777 /host/tmp
for dir in /run /var/tmp; do
    mount -t tmpfs -o mode=1777 tmpfs "/host$dir" || die "tmpfs at $dir"
done

# The unified hierarchy alone (the kernel boots with cgroup_no_v1=all), with
# the options systemd uses.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /host/sys/fs/cgroup ||
    die "cgroup2"

# run.sh put the test binaries, the CLI, guest.sh and its settings there.
[ -f /host/tmp/rig-files/guest.sh ] && [ -f /host/tmp/rig-files/rig.env ] ||
    die "no /tmp/rig-files/guest.sh and rig.env on the scratch disk"
echo "RIG-STEP boot: PASS (kernel $(uname -r), $(nproc) CPUs)"

# A process whose root is not its mount namespace's root may not make user
# namespaces (clone fails with EPERM), so a plain chroot into /host would
# fail every container: move the host's tree onto / first, as switch_root
# does. This shell keeps the initramfs as its root, for poweroff below.
cd /host || die "cd /host"
mount --move . / || die "moving the host's tree onto /"
chroot . /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp TERM=dumb \
    /bin/bash /tmp/rig-files/guest.sh /tmp/rig-files/rig.env ||
    echo "RIG-RESULT FAIL (guest.sh exited with status $?)"

sync
poweroff -f
