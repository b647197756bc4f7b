#!/bin/sh
# Planting symbolic links for the host: after this run, the host opens
# files in the work directory (to read a program's output, say). The links
# point at host secrets by absolute path, climb with "..", and go through
# /proc's magic links, hoping the host follows them with its own view of
# the file system.
#
# Must get: the links are made (exit 0); then every host open through
# them is refused with ELOOP, since no file operation of the host's follows
# a link anywhere in its path: never the host's /etc/hostname, nor the
# container's own /etc/passwd through /w/dir -> /.
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
