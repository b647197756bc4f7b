/*
 * Both ends of an interactive exchange, for the tests of pipes between
 * commands.
 *
 *   pingpong ping N   writes N numbered 8-byte messages to fd 1; after each
 *                     one, reads its echo from fd 0 and checks it. Exits 0
 *                     when every echo came back, 1 otherwise, 3 on end of
 *                     file.
 *   pingpong pong     echoes every 8-byte message from fd 0 to fd 1 until
 *                     end of file, then exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MESSAGE 8

/* Reads exactly MESSAGE bytes; returns 0 at end of file, -1 on error. */
static int read_message(char *buf)
{
    size_t got = 0;
    while (got < MESSAGE) {
        ssize_t n = read(0, buf + got, MESSAGE - got);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
        got += (size_t)n;
    }
    return 1;
}

static int write_message(const char *buf)
{
    size_t put = 0;
    while (put < MESSAGE) {
        ssize_t n = write(1, buf + put, MESSAGE - put);
        if (n < 0)
            return -1;
        put += (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char out[MESSAGE + 1], in[MESSAGE];
    if (argc == 3 && strcmp(argv[1], "ping") == 0) {
        long rounds = atol(argv[2]);
        for (long i = 0; i < rounds; i++) {
            snprintf(out, sizeof out, "%07ld\n", i % 10000000);
            if (write_message(out) < 0)
                return 2;
            int got = read_message(in);
            if (got == 0)
                return 3;
            if (got < 0 || memcmp(in, out, MESSAGE) != 0)
                return 1;
        }
        fprintf(stderr, "%ld rounds\n", rounds);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "pong") == 0) {
        for (;;) {
            int got = read_message(in);
            if (got <= 0)
                return got < 0 ? 2 : 0;
            if (write_message(in) < 0)
                return 2;
        }
    }
    fprintf(stderr, "usage: pingpong ping N | pingpong pong\n");
    return 64;
}
