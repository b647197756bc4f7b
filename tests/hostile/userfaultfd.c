/* userfaultfd: the usual tool for stalling the kernel in the middle of a
 * copy to win kernel races.
 *
 * Must get: `disallowed-syscall`; nothing after "calling userfaultfd".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("calling userfaultfd\n");
    long ret = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    printf("userfaultfd returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
