/* Fork bomb: every process forks for ever, so the number of processes
 * grows until something stops it.
 *
 * Must get: `time-limit` (the process limit makes fork fail with EAGAIN,
 * the processes that exist spin until the run's CPU time is spent), no
 * process left in the container afterwards.
 */
#include <unistd.h>

int main(void) {
    for (;;)
        fork();
    return 0;
}
