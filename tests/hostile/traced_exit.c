/* Tracers that never collect what they trace, left behind when the
 * program exits.
 *
 * With no argument the program is traced by its own child: the child
 * attaches to its parent (PTRACE_SEIZE) and then waits for nothing, so the
 * program's exit is told to the tracer first, which never collects it,
 * and init, the program's parent, cannot reap it while the tracer lives.
 * With "child", the program's child is traced that way by the program's
 * grandchild, and the program exits while both wait: once init kills the
 * child, init cannot reap it while the grandchild lives, and (without a
 * PID namespace) the grandchild becomes init's only as the child dies.
 *
 * Must get: the run ends when the program exits (exit 0, after "traced by
 * its child" or "child traced by its child"), the tracers die with the
 * run, and init serves the next run. Needs a seccomp policy that allows
 * ptrace (the default one kills the program at the call).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <unistd.h>

/* Forks a child that attaches to this process and then waits for nothing;
 * the child writes a byte to `ready` once it is attached. Returns the
 * child's pid, or -1. */
static pid_t traced_by_a_child(int ready) {
    /* Where Yama restricts ptrace to descendants, let the child in. */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child != 0)
        return child;
    if (ptrace(PTRACE_SEIZE, parent, 0, 0) != 0) {
        perror("PTRACE_SEIZE");
        _exit(1);
    }
    (void)!write(ready, "x", 1);
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    int ready[2];
    if (pipe(ready) != 0) {
        perror("pipe");
        return 1;
    }
    char byte;
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        pid_t child = fork();
        if (child < 0) {
            perror("fork");
            return 1;
        }
        if (child == 0) {
            if (traced_by_a_child(ready[1]) < 0)
                _exit(1);
            for (;;)
                pause();
        }
        if (read(ready[0], &byte, 1) != 1) {
            printf("child not traced\n");
            return 1;
        }
        printf("child traced by its child\n");
        return 0;
    }
    if (traced_by_a_child(ready[1]) < 0) {
        perror("fork");
        return 1;
    }
    if (read(ready[0], &byte, 1) != 1) {
        printf("not traced\n");
        return 1;
    }
    printf("traced by its child\n");
    return 0;
}
