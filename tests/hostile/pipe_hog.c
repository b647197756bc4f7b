/* Per-user kernel quotas between containers: `pipe_hog hold` grows pipes
 * to 1 MiB each until its user holds more pipe pages than the host's
 * `fs.pipe-user-pages-soft`, prints "holding <n> pipes, a new one gets
 * <bytes> bytes", and holds them until its standard input ends.
 * `pipe_hog probe` makes one pipe and prints its size in bytes.
 *
 * Pipe pages are counted per host user, whatever namespace a process is
 * in, and a user over the soft limit gets new pipes of two pages instead
 * of sixteen: a program that writes more than 8 KiB into a pipe before
 * reading from it then waits forever.
 *
 * Must get: while one container's program holds its pipes (and its own
 * new pipes are 8 KiB), a probe in another container gets 64 KiB.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int new_pipe_size(void) {
    int ends[2];
    if (pipe(ends) != 0) {
        perror("pipe");
        return -1;
    }
    int size = fcntl(ends[0], F_GETPIPE_SZ);
    close(ends[0]);
    close(ends[1]);
    return size;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "probe") == 0) {
        printf("%d\n", new_pipe_size());
        return 0;
    }
    if (argc != 2 || strcmp(argv[1], "hold") != 0) {
        fprintf(stderr, "usage: pipe_hog hold|probe\n");
        return 2;
    }
    long soft = 0;
    FILE *limit = fopen("/proc/sys/fs/pipe-user-pages-soft", "r");
    if (limit == NULL || fscanf(limit, "%ld", &soft) != 1) {
        perror("/proc/sys/fs/pipe-user-pages-soft");
        return 1;
    }
    fclose(limit);
    /* 256 pages a pipe at 1 MiB; a few more than the limit takes. */
    long wanted = soft / 256 + 4, held = 0;
    for (; held < wanted; held++) {
        int ends[2];
        if (pipe(ends) != 0) {
            perror("pipe");
            break;
        }
        close(ends[1]);
        if (fcntl(ends[0], F_SETPIPE_SZ, 1 << 20) < 0) {
            perror("F_SETPIPE_SZ");
            break;
        }
    }
    printf("holding %ld pipes, a new one gets %d bytes\n", held, new_pipe_size());
    fflush(stdout);
    char byte;
    while (read(0, &byte, 1) > 0) {
    }
    return 0;
}
