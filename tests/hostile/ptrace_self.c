/* ptrace of itself: PTRACE_TRACEME, the first step of a self-debugging
 * trick (and of many ptrace-based escapes).
 *
 * Must get: `disallowed-syscall` under the default seccomp policy: the
 * process dies of SIGSYS at the call, so nothing after "calling ptrace"
 * is printed.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/ptrace.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("calling ptrace\n");
    long ret = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    printf("ptrace returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
