/* Reading host secrets: the host's password hashes and identity, root's
 * home, the host's sockets and state (/run, /var), and init's
 * environment, memory, descriptors and root directory (init is the
 * container's most privileged process and holds the socket to the host).
 *
 * Must get: /etc/shadow, /etc/passwd, /etc/hostname, /root, /home, /run
 * and /var do not exist in the container (ENOENT); every /proc/1 entry is
 * refused (EACCES), or for the environment at most empty. The program prints
 * "<path> <result>" per line, where the result is an errno name, "empty",
 * or "read <n> bytes", and exits 0.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void read_file(const char *path) {
    int fd = open(path, O_RDONLY);
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

static void stat_path(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        printf("%s %s\n", path, strerrorname_np(errno));
    else
        printf("%s exists\n", path);
}

static void list_dir(const char *path) {
    DIR *dir = opendir(path);
    if (dir == NULL) {
        printf("%s %s\n", path, strerrorname_np(errno));
        return;
    }
    int entries = 0;
    while (readdir(dir) != NULL)
        entries++;
    closedir(dir);
    printf("%s listed %d entries\n", path, entries);
}

static void read_link(const char *path) {
    char target[4096];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) {
        printf("%s %s\n", path, strerrorname_np(errno));
        return;
    }
    target[n] = 0;
    printf("%s -> %s\n", path, target);
}

int main(void) {
    read_file("/etc/shadow");
    read_file("/etc/passwd");
    read_file("/etc/hostname");
    stat_path("/root");
    stat_path("/home");
    stat_path("/run");
    stat_path("/var");
    read_file("/proc/1/environ");
    read_file("/proc/1/mem");
    read_file("/proc/1/maps");
    list_dir("/proc/1/fd");
    read_link("/proc/1/root");
    read_link("/proc/1/exe");
    return 0;
}
