/* io_uring_setup: sets up a ring, a second system-call interface that
 * seccomp cannot see into.
 *
 * Must get: `disallowed-syscall`; nothing after "calling io_uring_setup".
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    printf("calling io_uring_setup\n");
    long ret = syscall(SYS_io_uring_setup, 8, &params);
    printf("io_uring_setup returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
