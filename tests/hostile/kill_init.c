/* Killing or signalling init: kill(1, sig) for every signal that could
 * stop, kill or confuse it, SIGKILL to every process (-1), tgkill on
 * init's thread, sigqueue, and pidfd_send_signal through a pidfd of init.
 *
 * Must get: every signal to init fails with EPERM (it runs as another
 * user); kill(-1) reaches nobody (ESRCH); init is still running (state
 * S) after all of it; and the container serves the next run. One line
 * per attempt, "<what> <result>"; then "init state <c>"; exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what, long ret) {
    if (ret == 0)
        printf("%s succeeded\n", what);
    else
        printf("%s %s\n", what, strerrorname_np(errno));
}

int main(void) {
    const int signals[] = {SIGKILL, SIGTERM, SIGSTOP, SIGINT,  SIGHUP,  SIGQUIT, SIGSEGV,
                           SIGUSR1, SIGPIPE, SIGALRM, SIGCHLD, SIGCONT, SIGTSTP, SIGSYS};
    for (unsigned i = 0; i < sizeof signals / sizeof *signals; i++) {
        char what[64];
        snprintf(what, sizeof what, "kill(1, SIG%s)", sigabbrev_np(signals[i]));
        show(what, kill(1, signals[i]));
    }
    show("kill(-1, SIGKILL)", kill(-1, SIGKILL));
    show("tgkill(1, 1, SIGKILL)", syscall(SYS_tgkill, 1, 1, SIGKILL));
    union sigval value = {0};
    show("sigqueue(1, SIGTERM)", sigqueue(1, SIGTERM, value));
    long pidfd = syscall(SYS_pidfd_open, 1, 0);
    if (pidfd < 0)
        show("pidfd_open(1)", pidfd);
    else
        show("pidfd_send_signal(SIGKILL)", syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0));
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    FILE *stat = fopen("/proc/1/stat", "r");
    if (stat == NULL) {
        printf("init gone\n");
        return 0;
    }
    char line[512];
    if (fgets(line, sizeof line, stat)) {
        char *state = strrchr(line, ')');
        printf("init state %c\n", state != NULL ? state[2] : '?');
    }
    fclose(stat);
    return 0;
}
