/* Output flood that ignores SIGXFSZ: with the signal ignored, the write
 * that crosses the file size limit fails with EFBIG instead of killing
 * the program. It first tries to raise RLIMIT_FSIZE to unlimited, then
 * writes 4 MiB to stdout and 4 MiB to stderr, and exits 0 as if all went
 * well.
 *
 * Must get: stdout and stderr each cut at the output limit whatever it
 * does (raising the hard limit fails with EPERM), and the verdict
 * `output-limit`: the run wrote past the limit even though no process
 * died of SIGXFSZ. Exit codes 10 to 12 mean the program saw something
 * unexpected (10: the limit was raised; 11: raising it failed with another
 * error than EPERM; 12: no write failed with EFBIG).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(void) {
    static char block[65536];
    memset(block, 'x', sizeof block);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    int raised = setrlimit(RLIMIT_FSIZE, &unlimited);
    int raise_errno = errno;
    int efbig = 0;
    for (int i = 0; i < 64; i++) {
        if (write(1, block, sizeof block) < 0 && errno == EFBIG)
            efbig++;
        if (write(2, block, sizeof block) < 0 && errno == EFBIG)
            efbig++;
    }
    if (raised == 0)
        return 10;
    if (raise_errno != EPERM)
        return 11;
    if (efbig == 0)
        return 12;
    return 0;
}
