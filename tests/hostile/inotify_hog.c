/* Per-user kernel quotas of the host: `inotify_hog` opens inotify
 * instances until the kernel refuses one, prints "refused after <n>
 * (limit <descriptors>): <error>", and holds them until its standard input
 * ends. Instances are counted per user, in the user namespace they are
 * made in and in every one above it against the namespace's owner.
 *
 * Must get: while it holds them, root on the host can still make an
 * inotify instance (the container's user namespace is not root's to be
 * charged for).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <unistd.h>

int main(void) {
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0) {
        perror("getrlimit");
        return 3;
    }
    int made = 0;
    while (inotify_init1(IN_CLOEXEC) >= 0)
        made++;
    printf("refused after %d (limit %llu): %s\n", made,
           (unsigned long long)files.rlim_cur, strerror(errno));
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
}
