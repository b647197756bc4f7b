/* Rewriting the host's input: the host passes the test's input as a
 * read-only stdin, but /proc/self/fd/0 names the file itself, and opening
 * it again checks only the file's own permissions. The program reopens it
 * for writing and overwrites its start, so that the input the host uses
 * for the next run (or the next submission) says what it likes.
 *
 * Must get: the reopen fails (EACCES: the file is not the program's) and
 * the host's input is unchanged. Prints "reopen <result>", "write
 * <result>" (or "write skipped"), and the first line of stdin as it reads
 * it; exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    int fd = open("/proc/self/fd/0", O_RDWR);
    if (fd < 0) {
        printf("reopen %s\n", strerrorname_np(errno));
        printf("write skipped\n");
    } else {
        printf("reopen succeeded\n");
        ssize_t n = pwrite(fd, "TAMPERED", 8, 0);
        printf("write %s\n", n == 8 ? "succeeded" : strerrorname_np(errno));
    }
    char line[256] = "";
    ssize_t n = pread(0, line, sizeof line - 1, 0);
    line[n < 0 ? 0 : n] = 0;
    line[strcspn(line, "\n")] = 0;
    printf("stdin says %s\n", line);
    return 0;
}
