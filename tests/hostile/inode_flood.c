/* Inode flood: creates empty files in argv[1] (a writable tmpfs) until
 * the file system has no inode left.
 *
 * Must get: file creation fails inside with ENOSPC after at most the
 * tmpfs's inode limit; the program prints "ENOSPC after <n> files" and
 * exits 0; after a reset the directory is empty and usable again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/w";
    for (long n = 0;; n++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/i%ld", dir, n);
        int fd = open(path, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) {
            int error = errno;
            printf("%s after %ld files\n", error == ENOSPC ? "ENOSPC" : strerror(error), n);
            return error == ENOSPC ? 0 : 3;
        }
        close(fd);
    }
}
