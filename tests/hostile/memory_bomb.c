/* Memory bomb: allocates and touches 16 MiB blocks for ever.
 *
 * Must get: `memory-limit` (the cgroup's OOM killer kills the program once
 * the run's memory limit is reached; swap is off), the host unaffected and
 * the container usable.
 */
#include <stdlib.h>
#include <string.h>

int main(void) {
    for (;;) {
        char *block = malloc(16 << 20);
        if (block == NULL)
            continue;
        memset(block, 0x5a, 16 << 20);
        /* The writes must happen: the compiler may not see through this. */
        __asm__ volatile("" : : "r"(block) : "memory");
    }
    return 0;
}
