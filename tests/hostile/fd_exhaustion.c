/* Descriptor exhaustion: opens /dev/null until open fails, then tries to
 * raise RLIMIT_NOFILE past its hard limit and to place a descriptor past
 * the limit with dup2.
 *
 * Must get: open fails with EMFILE; raising the hard limit fails with
 * EPERM; dup2 past the limit fails with EBADF. The program prints
 * "EMFILE after <n>", "raise EPERM", "dup2 EBADF" and exits 0 with all
 * those descriptors still open; the container is fine afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(void) {
    long opened = 0;
    int last = -1;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            printf("%s after %ld\n", errno == EMFILE ? "EMFILE" : strerror(errno), opened);
            break;
        }
        last = fd;
        opened++;
    }
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    struct rlimit more = {limit.rlim_max + 1, limit.rlim_max + 1};
    if (setrlimit(RLIMIT_NOFILE, &more) == 0)
        printf("raise succeeded\n");
    else
        printf("raise %s\n", errno == EPERM ? "EPERM" : strerror(errno));
    if (dup2(last, (int)limit.rlim_max) >= 0)
        printf("dup2 succeeded\n");
    else
        printf("dup2 %s\n", errno == EBADF ? "EBADF" : strerror(errno));
    return 0;
}
