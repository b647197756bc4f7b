/* mount: mounts a fresh tmpfs over /usr, which would let it replace the
 * programs later runs execute.
 *
 * Must get: `disallowed-syscall`; nothing after "calling mount".
 */
#include <errno.h>
#include <stdio.h>
#include <sys/mount.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("calling mount\n");
    int ret = mount("none", "/usr", "tmpfs", 0, NULL);
    printf("mount returned %d errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
