/* Thread bomb: starts threads that sleep for ever, as many as the kernel
 * lets it, and keeps trying.
 *
 * Must get: `time-limit` (the process limit counts threads too; the main
 * thread spins on failing pthread_create until the CPU time is spent), no
 * thread left afterwards.
 */
#include <pthread.h>
#include <unistd.h>

static void *sleeper(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Small stacks, so that memory is not what stops it. */
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (;;) {
        pthread_t thread;
        if (pthread_create(&thread, &attr, sleeper, NULL) == 0)
            pthread_detach(thread);
    }
    return 0;
}
