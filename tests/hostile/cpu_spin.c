/* CPU spin: an endless loop on one CPU.
 *
 * Must get: `time-limit`, stopped close to the CPU limit (well before the
 * wall-clock limit).
 */
int main(void) {
    for (;;)
        __asm__ volatile("" ::: "memory");
    return 0;
}
