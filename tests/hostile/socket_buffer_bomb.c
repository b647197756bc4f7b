/* Memory bomb through kernel buffers: fills unix socket pairs nobody
 * reads, so the memory is the kernel's socket buffers rather than the
 * program's own pages, then does the same with pipes. Each pair holds a
 * few hundred KiB; the descriptor limit allows thousands of them.
 *
 * Must get: `memory-limit`: the buffers are charged to the run's cgroup
 * like any other memory, so the run cannot hold more than its limit of
 * the host's memory this way either. (If the descriptors run out first,
 * the program prints how much it held and exits 3, which fails the
 * test: the limit was never tested.)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long long fill(int fd) {
    static char block[65536];
    long long total = 0;
    memset(block, 'b', sizeof block);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t n = write(fd, block, sizeof block);
        if (n <= 0)
            return total;
        total += n;
    }
}

int main(void) {
    long long held = 0;
    for (;;) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
            break;
        held += fill(pair[0]);
        held += fill(pair[1]);
    }
    for (;;) {
        int pipe_fds[2];
        if (pipe(pipe_fds) != 0)
            break;
        fcntl(pipe_fds[1], F_SETPIPE_SZ, 1 << 20);
        held += fill(pipe_fds[1]);
    }
    printf("descriptors ran out holding %lld bytes\n", held);
    return 3;
}
