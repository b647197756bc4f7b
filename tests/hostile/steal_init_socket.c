/* Stealing init's socket: init's fd 3 is its end of the socket to the
 * host; a program holding it could send requests of its own (or forge
 * replies). Tries pidfd_getfd on a pidfd of init, and opening
 * /proc/1/fd/3.
 *
 * Must get: pidfd_open of init may succeed (a pidfd grants nothing by
 * itself), but pidfd_getfd fails with EPERM and the open with EACCES.
 * The program prints "pidfd_getfd <result>" and "open /proc/1/fd/3
 * <result>" and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    long pidfd = syscall(SYS_pidfd_open, 1, 0);
    if (pidfd < 0) {
        printf("pidfd_open %s\n", strerrorname_np(errno));
    } else {
        long fd = syscall(SYS_pidfd_getfd, pidfd, 3, 0);
        if (fd >= 0)
            printf("pidfd_getfd got fd %ld\n", fd);
        else
            printf("pidfd_getfd %s\n", strerrorname_np(errno));
    }
    int fd = open("/proc/1/fd/3", O_RDWR);
    if (fd >= 0)
        printf("open /proc/1/fd/3 got fd %d\n", fd);
    else
        printf("open /proc/1/fd/3 %s\n", strerrorname_np(errno));
    return 0;
}
