#!/bin/sh
# Executing the host's setuid-root binaries given as arguments. For each
# one, first the dynamic loader's view of the exec: with LD_SHOW_AUXV set,
# glibc's loader prints the auxiliary vector, and AT_EUID and AT_SECURE say
# whether the exec raised privileges (on a privileged exec, AT_SECURE is 1
# and the loader ignores LD_SHOW_AUXV, so nothing is printed). Then each
# binary is asked for something only root may do: su runs `id` as root
# (root needs no password), mount mounts a tmpfs over /w, passwd shows
# root's password status. The ids the shell has before and after are
# printed too.
#
# Must get: for every binary "AT_EUID: <the program's uid> AT_SECURE: 0";
# every binary fails (a nonzero status, or a death by the seccomp filter
# for a call only root could make); no line shows "uid=0"; the ids stay the
# program's own.
echo "before $(id -u) $(id -g)"
for binary in "$@"; do
    auxv=$(LD_SHOW_AUXV=1 "$binary" --version </dev/null 2>/dev/null |
        grep -E '^AT_(EUID|SECURE):' | tr -s ' ' | tr '\n' ' ')
    echo "$binary auxv: $auxv"
    case "$binary" in
    */su) output=$("$binary" -c id root </dev/null 2>&1) ;;
    */mount) output=$("$binary" -t tmpfs none /w 2>&1) ;;
    */passwd) output=$("$binary" -S root 2>&1) ;;
    *) output=$("$binary" 2>&1) ;;
    esac
    status=$?
    echo "$binary status $status: $output" | tr '\n' ' '
    echo
done
echo "after $(id -u) $(id -g)"
