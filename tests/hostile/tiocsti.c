/* TIOCSTI: pushes a command into the input of the terminal on fd 0, so
 * that whoever reads that terminal next (a shell of the host's user)
 * runs it. Also tries to make that terminal its own controlling terminal
 * first (TIOCSCTTY, with and without stealing), and to open /dev/tty.
 *
 * Must get: every ioctl fails: the program leads a session of its own
 * (and so its process group) with no controlling terminal, and the
 * terminal belongs to another session (TIOCSCTTY and TIOCSTI fail with
 * EPERM, or TIOCSTI with EIO where the kernel disables it for everyone);
 * /dev/tty cannot be opened.
 * One line per attempt, "<what> <result>"; exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void show(const char *what, int ret) {
    if (ret == 0)
        printf("%s succeeded\n", what);
    else
        printf("%s %s\n", what, strerrorname_np(errno));
}

static int inject(const char *text) {
    for (const char *c = text; *c; c++)
        if (ioctl(0, TIOCSTI, c) != 0)
            return -1;
    return 0;
}

/* Field 7 of /proc/self/stat: the controlling terminal's device number,
 * 0 for none; -1 when it cannot be read. */
static int tty_nr(void) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    char state;
    int ppid, pgrp, session, tty;
    if (!p || sscanf(p + 1, " %c %d %d %d %d", &state, &ppid, &pgrp, &session, &tty) != 5)
        return -1;
    return tty;
}

int main(void) {
    printf("session leader %s\n", getsid(0) == getpid() ? "yes" : "no");
    printf("process group leader %s\n", getpgid(0) == getpid() ? "yes" : "no");
    int tty = tty_nr();
    if (tty == 0)
        printf("controlling terminal none\n");
    else
        printf("controlling terminal %d\n", tty);
    show("TIOCSTI", inject("id\n"));
    show("TIOCSCTTY", ioctl(0, TIOCSCTTY, 0));
    show("TIOCSCTTY steal", ioctl(0, TIOCSCTTY, 1));
    show("TIOCSTI again", inject("id\n"));
    int dev_tty = open("/dev/tty", O_RDWR);
    show("open /dev/tty", dev_tty < 0 ? -1 : 0);
    return 0;
}
