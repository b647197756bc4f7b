/* A program traced by its own child: the child attaches to its parent
 * (PTRACE_SEIZE), then waits for nothing, so the program's exit is told
 * to the tracer first, which never collects it; init, the program's
 * parent, cannot reap it while the tracer lives.
 *
 * Must get: the run ends when the program exits (exit 0, after "traced
 * by its child"), the tracer dies with the run, and init serves the next
 * run. Needs a seccomp policy that allows ptrace (the default one kills
 * the program at the call).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <unistd.h>

/* The TracerPid line of /proc/self/status; -1 when it cannot be read. */
static int tracer_pid(void) {
    char line[256];
    int pid = -1;
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL)
        return -1;
    while (fgets(line, sizeof line, status))
        if (sscanf(line, "TracerPid: %d", &pid) == 1)
            break;
    fclose(status);
    return pid;
}

int main(void) {
    /* Where Yama restricts ptrace to descendants, let the child in. */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
    pid_t parent = getpid();
    int ready[2];
    if (pipe(ready) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        close(ready[0]);
        if (ptrace(PTRACE_SEIZE, parent, 0, 0) != 0) {
            perror("PTRACE_SEIZE");
            _exit(1);
        }
        (void)!write(ready[1], "x", 1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char byte;
    if (read(ready[0], &byte, 1) != 1) {
        printf("not traced\n");
        return 1;
    }
    printf("traced by %s\n", tracer_pid() == child ? "its child" : "another process");
    return 0;
}
