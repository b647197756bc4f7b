/* Becoming root: setuid(0), setgid(0), setresuid, setresgid, setreuid and
 * setgroups with group 0, from an unprivileged uid with no capabilities.
 *
 * Must get: every call fails with EPERM and the ids stay as they were.
 * The program prints one line per call ("setuid(0) EPERM", ...) and the
 * ids it has at the end, and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void show(const char *what, int ret) {
    if (ret == 0)
        printf("%s succeeded\n", what);
    else
        printf("%s %s\n", what, strerrorname_np(errno));
}

int main(void) {
    gid_t zero = 0;
    show("setuid(0)", setuid(0));
    show("setgid(0)", setgid(0));
    show("setresuid(0,0,0)", setresuid(0, 0, 0));
    show("setresgid(0,0,0)", setresgid(0, 0, 0));
    show("setreuid(0,0)", setreuid(0, 0));
    show("setgroups([0])", setgroups(1, &zero));
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    getresuid(&ruid, &euid, &suid);
    getresgid(&rgid, &egid, &sgid);
    printf("uids %u %u %u gids %u %u %u\n", ruid, euid, suid, rgid, egid, sgid);
    return 0;
}
