/* Spin in many threads: 16 threads each run an endless loop, so that CPU
 * time grows as fast as the machine has CPUs (a limit checked per thread,
 * or on wall-clock time, would let it use many times its budget).
 *
 * Must get: `time-limit` with the CPU time of all threads together at the
 * limit (not 16 times it), well before the wall-clock limit.
 */
#include <pthread.h>

static void *spin(void *arg) {
    (void)arg;
    for (;;)
        __asm__ volatile("" ::: "memory");
    return NULL;
}

int main(void) {
    for (int i = 1; i < 16; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, spin, NULL) != 0)
            return 2;
    }
    spin(NULL);
    return 0;
}
