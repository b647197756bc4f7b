/* Core dumps: raises its core size limit, makes itself dumpable, and
 * crashes. A core file would land in the work directory (the crash's
 * working directory) with the program's memory; where the host's
 * kernel.core_pattern is a pipe, the kernel would instead start the
 * host's dump helper, as root, outside the container and its limits, for
 * every crash.
 *
 * Must get: the limit is 1 byte (at exactly 1 the kernel starts no pipe
 * helper, and no core file fits), and stays 1 whatever the program asks
 * (the default seccomp policy answers a change of it without making it),
 * the run is `signalled` with SIGSEGV, and no core file appears. Prints
 * "core limit <soft> <hard>" before and after asking for unlimited and
 * for 0, then crashes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static void show(void) {
    struct rlimit now;
    getrlimit(RLIMIT_CORE, &now);
    printf("core limit %llu %llu\n", (unsigned long long)now.rlim_cur,
           (unsigned long long)now.rlim_max);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    show();
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &unlimited);
    show();
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    show();
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    raise(SIGSEGV);
    return 0;
}
