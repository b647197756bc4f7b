#!/bin/sh
# Sleep past the limit: uses no CPU, so a CPU limit alone would never end
# it; the sleep runs in a child of the shell.
#
# Must get: `wall-time-limit` at the wall-clock limit, the shell and its
# sleeping child both gone afterwards.
sleep 1000
echo "the sleep ended: the wall-clock limit did not"
