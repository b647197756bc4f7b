/* Probe for privileged executables. The harness installs copies of this
 * program in the bind mounted into the container: one setuid root (mode
 * 4755, owned by the host's root) and one with file capabilities
 * (cap_setuid and cap_sys_admin, permitted and effective). Executing
 * either from a program would hand it root or capabilities, if the mount
 * honoured them.
 *
 * Must get: neither grants anything: the probe prints its real, effective
 * and saved uids (all the program's own) and its effective and permitted
 * capability sets (both 0), then "setuid(0) EPERM", and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    uid_t ruid, euid, suid;
    getresuid(&ruid, &euid, &suid);
    printf("uids %u %u %u\n", ruid, euid, suid);
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL)
        return 2;
    char line[256];
    while (fgets(line, sizeof line, status))
        if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7))
            fputs(line, stdout);
    fclose(status);
    if (setuid(0) == 0)
        printf("setuid(0) succeeded\n");
    else
        printf("setuid(0) %s\n", strerrorname_np(errno));
    return 0;
}
