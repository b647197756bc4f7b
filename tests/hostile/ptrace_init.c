/* ptrace of init: attaches to pid 1, the container's init, which holds
 * the socket to the host and every capability of the container.
 *
 * Must get: `disallowed-syscall` under the default policy (without a
 * filter the kernel refuses it with EPERM anyway: init runs as another
 * user with capabilities the program lacks).
 */
#include <errno.h>
#include <stdio.h>
#include <sys/ptrace.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("calling ptrace\n");
    long ret = ptrace(PTRACE_SEIZE, 1, NULL, NULL);
    printf("ptrace returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
