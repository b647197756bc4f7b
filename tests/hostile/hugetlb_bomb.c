/* Memory the cgroup does not count: huge pages from the host's hugetlb
 * pool (MAP_HUGETLB) are charged to the hugetlb controller, not to the
 * memory limit, so a program could take the whole pool from the host.
 * Maps and touches 2 MiB huge pages until the kernel refuses one, and
 * holds them.
 *
 * Must get: no more huge pages than the memory limit's worth (with no
 * pool on the host, none at all: mmap fails with ENOMEM at once). Prints
 * "huge pages <n> then <errno name>" and exits 0, or dies at the memory
 * limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(void) {
    long pages = 0;
    for (;;) {
        char *page = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (page == MAP_FAILED)
            break;
        memset(page, 0x5a, 2 << 20);
        pages++;
    }
    printf("huge pages %ld then %s\n", pages, strerrorname_np(errno));
    return 0;
}
