/* Disk flood: fills the directory argv[1] (a writable tmpfs: /w, /tmp or
 * /dev/shm) with 512 KiB files, each under the output limit so that
 * RLIMIT_FSIZE does not stop it first, until a write fails.
 *
 * Must get: the write fails inside the container with ENOSPC, at no more
 * than the tmpfs's size; the program prints "ENOSPC after <bytes> bytes"
 * and exits 0; nothing outside notices, and after a reset the directory
 * is empty and writable again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (512 * 1024)

static int report(long long total) {
    int error = errno;
    printf("%s after %lld bytes\n", error == ENOSPC ? "ENOSPC" : strerror(error), total);
    return error == ENOSPC ? 0 : 3;
}

int main(int argc, char **argv) {
    static char block[65536];
    const char *dir = argc > 1 ? argv[1] : "/w";
    long long total = 0;
    memset(block, 'd', sizeof block);
    for (int file = 0;; file++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/flood-%d", dir, file);
        int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd < 0)
            return report(total);
        for (long written = 0; written < CHUNK;) {
            ssize_t n = write(fd, block, sizeof block);
            if (n < 0)
                return report(total);
            written += n;
            total += n;
        }
        close(fd);
    }
}
