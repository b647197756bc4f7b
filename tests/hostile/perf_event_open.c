/* perf_event_open: opens a CPU clock counter on itself (profiling
 * interfaces are side channels and a large, often buggy, kernel surface).
 *
 * Must get: `disallowed-syscall`; nothing after "calling perf_event_open".
 */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.exclude_kernel = 1;
    printf("calling perf_event_open\n");
    long ret = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    printf("perf_event_open returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
