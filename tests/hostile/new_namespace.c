/* New namespaces: a new user namespace gives its creator every capability
 * inside it (and with them mount, netfilter and the rest of the kernel's
 * privileged surface). argv[1] picks the door: unshare-user, unshare-mount,
 * unshare-net, clone-user, clone-mount, clone-net.
 *
 * Must get: `disallowed-syscall` for each; nothing after "calling".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int flag_of(const char *name) {
    if (!strcmp(name, "user"))
        return CLONE_NEWUSER;
    if (!strcmp(name, "mount"))
        return CLONE_NEWNS;
    if (!strcmp(name, "net"))
        return CLONE_NEWNET;
    return -1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    const char *dash = strchr(mode, '-');
    if (dash == NULL)
        return 2;
    int flag = flag_of(dash + 1);
    if (flag < 0)
        return 2;
    printf("calling %s\n", mode);
    long ret;
    if (!strncmp(mode, "unshare-", 8)) {
        ret = unshare(flag);
    } else if (!strncmp(mode, "clone-", 6)) {
        ret = syscall(SYS_clone, (long)(flag | SIGCHLD), 0L, 0L, 0L, 0L);
        if (ret == 0)
            _exit(0);
        if (ret > 0)
            waitpid((pid_t)ret, NULL, 0);
    } else {
        return 2;
    }
    printf("%s returned %ld errno %d\n", mode, ret, ret < 0 ? errno : 0);
    return 0;
}
