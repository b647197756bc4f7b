/* Catching SIGXCPU: lowers its own soft RLIMIT_CPU to one second so that
 * the kernel sends SIGXCPU early, catches it, raises the soft limit back
 * up to the hard one, and spins on.
 *
 * Must get: `time-limit` at the run's CPU limit: the handler runs (it says
 * so on stdout) but gains nothing.
 */
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void caught(int sig) {
    static const char message[] = "SIGXCPU caught\n";
    struct rlimit limit;
    (void)sig;
    (void)!write(1, message, sizeof message - 1);
    if (getrlimit(RLIMIT_CPU, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_CPU, &limit);
    }
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = caught;
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGXCPU, &action, NULL) != 0)
        return 2;
    struct rlimit limit;
    if (getrlimit(RLIMIT_CPU, &limit) != 0)
        return 3;
    limit.rlim_cur = 1;
    if (setrlimit(RLIMIT_CPU, &limit) != 0)
        return 4;
    for (;;)
        __asm__ volatile("" ::: "memory");
    return 0;
}
