/* Using a descriptor inherited by mistake: looks at every descriptor from
 * 3 to 65535 (and lists /proc/self/fd) for anything the host or init
 * left open: a host file, init's socket, a cgroup file.
 *
 * Must get: nothing but 0, 1 and 2 is open. Prints "open fd <n> -> <what>"
 * for each one found, then "found <n>"; exit 0.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void describe(int fd) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = 0;
    printf("open fd %d -> %s\n", fd, target);
}

int main(void) {
    int found = 0;
    for (int fd = 3; fd < 65536; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            describe(fd);
            found++;
        }
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return 2;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        if (entry->d_name[0] == '.')
            continue;
        int fd = atoi(entry->d_name);
        if (fd > 2 && fd != dirfd(dir) && fd >= 65536) {
            describe(fd);
            found++;
        }
    }
    closedir(dir);
    printf("found %d\n", found);
    return 0;
}
