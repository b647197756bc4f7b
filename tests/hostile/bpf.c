/* bpf: tries to create a BPF map, the first step of loading a program into
 * the kernel (whose verifier is a frequent source of escalations).
 *
 * Must get: `disallowed-syscall`; nothing after "calling bpf".
 */
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    printf("calling bpf\n");
    long ret = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    printf("bpf returned %ld errno %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}
