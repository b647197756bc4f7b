/* /proc and /sys information leaks: the scheduler's view of every task
 * on the machine (/proc/sched_debug), timers, keys, the kernel log, kernel
 * addresses, the host's name, the mount table, and /sys.
 *
 * Must get: /proc/sched_debug absent or empty; /proc/timer_list and
 * /proc/keys empty (masked); /proc/kmsg refused; /proc/kallsyms shows no
 * address but 0; /sys absent; the host name is the container's ("hutch");
 * and the mount table names no host path but the sources of the
 * container's own binds (checked by the harness). Prints "<what>
 * <result>" lines, then "mountinfo:" and the mount table; exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

static void read_file(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        printf("%s %s\n", path, strerrorname_np(errno));
        return;
    }
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            printf("%s %s\n", path, strerrorname_np(errno));
            close(fd);
            return;
        }
        if (n == 0)
            break;
        total += n;
    }
    close(fd);
    if (total == 0)
        printf("%s empty\n", path);
    else
        printf("%s read %ld bytes\n", path, total);
}

/* Whether any symbol in /proc/kallsyms shows a nonzero address. */
static void kallsyms(void) {
    FILE *file = fopen("/proc/kallsyms", "r");
    if (file == NULL) {
        printf("/proc/kallsyms %s\n", strerrorname_np(errno));
        return;
    }
    char line[512];
    long symbols = 0, nonzero = 0;
    while (fgets(line, sizeof line, file)) {
        symbols++;
        for (char *c = line; *c && *c != ' '; c++)
            if (*c != '0') {
                nonzero++;
                break;
            }
    }
    fclose(file);
    if (nonzero)
        printf("/proc/kallsyms %ld of %ld addresses shown\n", nonzero, symbols);
    else
        printf("/proc/kallsyms addresses hidden\n");
}

int main(void) {
    read_file("/proc/sched_debug");
    read_file("/proc/timer_list");
    read_file("/proc/keys");
    read_file("/proc/kmsg");
    kallsyms();
    struct stat st;
    if (stat("/sys", &st) == 0)
        printf("/sys exists\n");
    else
        printf("/sys %s\n", strerrorname_np(errno));
    struct utsname name;
    uname(&name);
    printf("nodename %s\n", name.nodename);
    printf("mountinfo:\n");
    FILE *mounts = fopen("/proc/self/mountinfo", "r");
    if (mounts == NULL)
        return 2;
    char line[4096];
    while (fgets(line, sizeof line, mounts))
        fputs(line, stdout);
    fclose(mounts);
    return 0;
}
