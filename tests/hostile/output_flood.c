/* Output flood: writes to stdout for ever.
 *
 * Must get: `output-limit` (RLIMIT_FSIZE stops the writes at the output
 * limit with SIGXFSZ), and the output file no longer than the limit.
 */
#include <string.h>
#include <unistd.h>

int main(void) {
    static char block[65536];
    memset(block, 'x', sizeof block);
    for (;;)
        if (write(1, block, sizeof block) < 0)
            return 3;
    return 0;
}
