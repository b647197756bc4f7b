/* open_by_handle_at: opens a file by a forged handle (the "shocker"
 * escape guessed the handle of the host's root directory, inode 2 on
 * ext4), which bypasses the path walk and with it the container's root.
 *
 * Must get: `disallowed-syscall`; nothing after "calling
 * open_by_handle_at".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct file_handle *handle = malloc(sizeof *handle + 8);
    if (handle == NULL)
        return 2;
    handle->handle_bytes = 8;
    handle->handle_type = 1; /* FILEID_INO32_GEN */
    unsigned int ino_gen[2] = {2, 0};
    memcpy(handle->f_handle, ino_gen, sizeof ino_gen);
    int mount_fd = open("/usr", O_RDONLY | O_DIRECTORY);
    printf("calling open_by_handle_at\n");
    int fd = open_by_handle_at(mount_fd, handle, O_RDONLY);
    printf("open_by_handle_at returned %d errno %d\n", fd, fd < 0 ? errno : 0);
    return 0;
}
