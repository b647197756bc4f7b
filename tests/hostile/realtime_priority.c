/* Real-time and raised priorities: a SCHED_FIFO or SCHED_RR spinner
 * starves everything else on its CPU (the host's processes included), and
 * SCHED_DEADLINE, a negative nice value or the real-time I/O class do the
 * same for CPU time or disk. Tries each on itself.
 *
 * Must get: every attempt fails with EPERM (no capability, and
 * RLIMIT_RTPRIO and RLIMIT_NICE allow nothing). One line per attempt,
 * "<what> <result>"; exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* struct sched_attr, as the kernel takes it. */
struct attr {
    uint32_t size;
    uint32_t policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime;
    uint64_t deadline;
    uint64_t period;
};

static void show(const char *what, long ret) {
    if (ret == 0)
        printf("%s succeeded\n", what);
    else
        printf("%s %s\n", what, strerrorname_np(errno));
}

int main(void) {
    struct sched_param fifo = {.sched_priority = 1};
    show("SCHED_FIFO", sched_setscheduler(0, SCHED_FIFO, &fifo));
    show("SCHED_RR", sched_setscheduler(0, SCHED_RR, &fifo));
    struct attr deadline = {
        .size = sizeof deadline,
        .policy = SCHED_DEADLINE,
        .runtime = 10 * 1000 * 1000,
        .deadline = 11 * 1000 * 1000,
        .period = 11 * 1000 * 1000,
    };
    show("SCHED_DEADLINE", syscall(SYS_sched_setattr, 0, &deadline, 0));
    show("nice -20", setpriority(PRIO_PROCESS, 0, -20));
    /* IOPRIO_CLASS_RT (1) << 13, level 0; IOPRIO_WHO_PROCESS (1). */
    show("ioprio RT", syscall(SYS_ioprio_set, 1, 0, 1 << 13));
    return 0;
}
