#!/bin/sh
# Planting symbolic links for the host: after this run, the host opens
# files in the work directory (to read a program's output, say). The links
# point at host secrets by absolute path, climb with "..", and go through
# /proc's magic links, hoping the host follows them with its own view of
# the file system.
#
# Must get: the links are made (exit 0); then every host open resolves
# inside the container or is refused: a link as the last component gives
# ELOOP, a magic link on the way gives ELOOP, and /w/dir/etc/hostname
# (with /w/dir -> /) is the container's file, which does not exist, never
# the host's /etc/hostname.
set -e
cd /w
ln -s /etc/passwd evil
ln -s / dir
ln -s ../../../../../../.. up
ln -s /proc/1/root initroot
ln -s /proc/self/root selfroot
mkdir sub
ln -s ../dir/etc sub/etc
echo planted
