/* Writes to the read-only root: creates files and directories in /, /usr,
 * /etc, /bin, /lib and /dev, opens existing files there and in /proc/sys
 * for writing, and changes the mode of /etc.
 *
 * Must get: nothing is written. Creating fails with EROFS; writing an
 * existing file fails with EROFS, or EACCES where the permission check
 * comes first (files owned by the host's root); chmod fails with EROFS.
 * One line per attempt, "<what> <path> <result>" (an errno name, or
 * "succeeded"); exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void show(const char *what, const char *path, int ret) {
    if (ret >= 0)
        printf("%s %s succeeded\n", what, path);
    else
        printf("%s %s %s\n", what, path, strerrorname_np(errno));
}

int main(void) {
    const char *dirs[] = {"/", "/usr/", "/etc/", "/bin/", "/lib/", "/dev/"};
    for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char path[256];
        snprintf(path, sizeof path, "%shutch-hostile-evil", dirs[i]);
        int fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0644);
        show("create", path, fd);
        if (fd >= 0)
            close(fd);
        snprintf(path, sizeof path, "%shutch-hostile-evil-dir", dirs[i]);
        show("mkdir", path, mkdir(path, 0755));
    }
    const char *files[] = {"/etc/ld.so.cache", "/usr/bin/env", "/bin/sh",
                           "/proc/sys/kernel/hostname"};
    for (unsigned i = 0; i < sizeof files / sizeof *files; i++) {
        int fd = open(files[i], O_WRONLY);
        show("write", files[i], fd);
        if (fd >= 0)
            close(fd);
    }
    show("chmod", "/etc", chmod("/etc", 0777));
    return 0;
}
