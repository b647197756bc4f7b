/* Attributes of the work directory itself, for the next run: `make` sets
 * a default ACL on /w that gives every file made there no permission at
 * all, and a user extended attribute carrying a message (up to 64 KiB of
 * them would pass data and take memory).
 *
 * `check`, run next in the same container, prints "attributes: <names>"
 * (or "attributes: none") for /w, then makes /w/new with mode 0644 and
 * prints "new file <mode>" and whether it can read back what it wrote.
 *
 * Must get: the attributes stay until the host resets the container (as
 * files in /w do); after a reset, none is left and a new file has the mode
 * it was made with.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(3);
}

static int make(void) {
    /* posix_acl_xattr: version 2, then (tag, perm, id) entries. */
    struct {
        uint32_t version;
        struct {
            uint16_t tag;
            uint16_t perm;
            uint32_t id;
        } entries[3];
    } acl = {2, {{0x01, 0, UINT32_MAX}, {0x04, 0, UINT32_MAX}, {0x20, 0, UINT32_MAX}}};
    if (setxattr("/w", "system.posix_acl_default", &acl, sizeof acl, 0) != 0)
        die("setxattr system.posix_acl_default");
    static const char note[] = "left by an earlier run";
    for (int i = 0; i < 48; i++) {
        char name[32];
        snprintf(name, sizeof name, "user.note.%02d", i);
        if (setxattr("/w", name, note, sizeof note - 1, 0) != 0)
            die("setxattr user.note");
    }
    puts("made");
    return 0;
}

static int check(void) {
    char names[65536];
    ssize_t size = llistxattr("/w", names, sizeof names);
    if (size < 0)
        die("llistxattr");
    int count = 0, acl = 0;
    for (ssize_t at = 0; at < size; at += (ssize_t)strlen(names + at) + 1) {
        count++;
        acl |= strcmp(names + at, "system.posix_acl_default") == 0;
    }
    printf("attributes: %d\n", count);
    printf("default acl %s\n", acl ? "present" : "absent");
    umask(022);
    int fd = open("/w/new", O_CREAT | O_EXCL | O_RDWR, 0644);
    if (fd < 0)
        die("open /w/new");
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    printf("new file %03o\n", st.st_mode & 07777);
    close(fd);
    fd = open("/w/new", O_RDWR);
    if (fd < 0) {
        printf("reopen: %s\n", strerror(errno));
        return 0;
    }
    char buf[4] = {0};
    if (write(fd, "ok", 2) != 2 || pread(fd, buf, 2, 0) != 2)
        die("write and read back");
    printf("read back %s\n", buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "make") == 0)
        return make();
    if (argc == 2 && strcmp(argv[1], "check") == 0)
        return check();
    fprintf(stderr, "usage: workdir_attributes make|check\n");
    return 2;
}
