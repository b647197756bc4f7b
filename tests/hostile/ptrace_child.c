/* ptrace of a child: forks a child that sleeps, then attaches to it with
 * PTRACE_ATTACH to read and steer it.
 *
 * Must get: `disallowed-syscall` (the parent dies of SIGSYS at the call;
 * the sleeping child dies with the run).
 */
#include <errno.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        for (;;)
            pause();
    }
    printf("calling ptrace\n");
    long ret = ptrace(PTRACE_ATTACH, child, NULL, NULL);
    printf("ptrace returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
