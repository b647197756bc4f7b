/* Rewriting its own executable: the host may keep a compiled submission
 * in one file (or memfd) and execute it for every test. /proc/self/exe
 * names that file; the program opens it for writing and patches it, so
 * that every later run executes what it wrote (the attack behind
 * CVE-2019-5736, aimed at a runtime's binary there).
 *
 * Must get: the open fails (ETXTBSY while it runs, EROFS on a read-only
 * bind, or EACCES), and the host's copy is unchanged. Prints "reopen
 * <result>" and, if it opened, "write <result>"; exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    int fd = open("/proc/self/exe", O_RDWR);
    if (fd < 0) {
        printf("reopen %s\n", strerrorname_np(errno));
        return 0;
    }
    printf("reopen succeeded\n");
    ssize_t n = pwrite(fd, "TAMPERED", 8, 64);
    printf("write %s\n", n == 8 ? "succeeded" : strerrorname_np(errno));
    return 0;
}
