/* Core dumps: raises its core size limit, makes itself dumpable, and
 * crashes. A core file would land in the work directory (the crash's
 * working directory) with the program's memory; where the host's
 * kernel.core_pattern is a pipe, the kernel would instead start the
 * host's dump helper, as root, outside the container and its limits, for
 * every crash.
 *
 * Must get: raising the limit fails with EPERM (it is 0, hard), the run
 * is `signalled` with SIGSEGV, and no core file appears. Prints "raise
 * RLIMIT_CORE <result>" before it crashes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_CORE, &unlimited) == 0)
        printf("raise RLIMIT_CORE succeeded\n");
    else
        printf("raise RLIMIT_CORE %s\n", strerrorname_np(errno));
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    raise(SIGSEGV);
    return 0;
}
