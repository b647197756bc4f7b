/* Deep directories against the reset: nests directories in /w as deep as
 * the inode limit allows, each named with 255 characters, so that the
 * full path is hundreds of times longer than PATH_MAX; whoever empties
 * the directory afterwards must do it without full paths, without one
 * descriptor per level running out, and without recursing its stack
 * away. Works with relative paths (chdir after every mkdir).
 *
 * Must get: the nesting stops at ENOSPC (no inode left) and the program
 * prints "depth <n>" and exits 0; the host's reset then empties /w and
 * the container runs the next program.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    char name[256];
    memset(name, 'd', 255);
    name[255] = 0;
    if (chdir("/w") != 0)
        return 2;
    long depth = 0;
    for (;;) {
        if (mkdir(name, 0700) != 0)
            break;
        if (chdir(name) != 0)
            break;
        depth++;
    }
    int error = errno;
    printf("depth %ld stopped by %s\n", depth, error == ENOSPC ? "ENOSPC" : strerror(error));
    return 0;
}
