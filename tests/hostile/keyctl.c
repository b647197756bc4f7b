/* keyctl: reads the session keyring's id (the kernel keyring is not
 * namespaced, so keys could leak between containers).
 *
 * Must get: `disallowed-syscall`; nothing after "calling keyctl".
 */
#include <errno.h>
#include <linux/keyctl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("calling keyctl\n");
    long ret = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0L, 0L, 0L);
    printf("keyctl returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
