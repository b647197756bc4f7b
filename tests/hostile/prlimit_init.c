/* Changing init's resource limits: prlimit on pid 1 to shrink its
 * descriptor limit to 4 (so that it can no longer receive the next run's
 * descriptors), its CPU limit to one second (so that the kernel kills it
 * once it has used that much), and its address space to 1 MiB; and
 * setpriority to make it the slowest process on the machine. Any of these
 * would let one run break the container for the runs after it.
 *
 * Must get: every call fails with EPERM, and init's limits are as they
 * were (the next run works). One line per attempt, "<what> <result>";
 * exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static void show(const char *what, int ret) {
    if (ret == 0)
        printf("%s succeeded\n", what);
    else
        printf("%s %s\n", what, strerrorname_np(errno));
}

int main(void) {
    struct rlimit four = {4, 4};
    show("prlimit(1, RLIMIT_NOFILE, 4)", prlimit(1, RLIMIT_NOFILE, &four, NULL));
    struct rlimit second = {1, 1};
    show("prlimit(1, RLIMIT_CPU, 1)", prlimit(1, RLIMIT_CPU, &second, NULL));
    struct rlimit mib = {1 << 20, 1 << 20};
    show("prlimit(1, RLIMIT_AS, 1 MiB)", prlimit(1, RLIMIT_AS, &mib, NULL));
    show("setpriority(1, 19)", setpriority(PRIO_PROCESS, 1, 19));
    return 0;
}
