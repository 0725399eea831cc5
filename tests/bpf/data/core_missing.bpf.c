/* CO-RE with a field no kernel has: loading must fail naming the struct, the field
 * and the object. Rebuild:
 *   clang -O2 -g -target bpf -c core_missing.bpf.c -o core_missing.bpf.o
 */
#include "bpf_defs.h"

struct task_struct {
    int pid_of_the_future;
} __attribute__((preserve_access_index));

__u64 seen;

SEC("raw_tracepoint/sys_enter")
int read_missing(__u64 *ctx)
{
    struct task_struct *task = (void *)bpf_get_current_task();
    int v = 0;

    bpf_probe_read_kernel(&v, sizeof(v), &task->pid_of_the_future);
    seen = v;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
