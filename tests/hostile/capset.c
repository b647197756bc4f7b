/* Capability re-acquisition: raises every capability with capset, asks
 * for an ambient capability, clears the securebits (which were locked to
 * keep root from regaining capabilities) and tries to leave no_new_privs.
 *
 * Must get: every attempt fails (capset and the securebits with EPERM,
 * the ambient raise with EPERM, leaving no_new_privs with EINVAL), and
 * afterwards every capability set in /proc/self/status is still 0 and
 * NoNewPrivs is still 1. The program prints each result, then the status
 * lines, and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show(const char *what, long ret) {
    if (ret == 0)
        printf("%s succeeded\n", what);
    else
        printf("%s %s\n", what, strerrorname_np(errno));
}

int main(void) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0xff, sizeof data);
    show("capset(all)", syscall(SYS_capset, &header, data));
    show("ambient raise CAP_SYS_ADMIN",
         prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0));
    show("securebits 0", prctl(PR_SET_SECUREBITS, 0, 0, 0, 0));
    show("no_new_privs 0", prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0));
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL)
        return 2;
    char line[256];
    while (fgets(line, sizeof line, status))
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs:", 11))
            fputs(line, stdout);
    fclose(status);
    return 0;
}
