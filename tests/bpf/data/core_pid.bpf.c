/* CO-RE: reads task_struct.pid through a local definition that has only the fields
 * used, at the wrong offsets; the loader moves them to the running kernel's. Rebuild:
 *   clang -O2 -g -target bpf -c core_pid.bpf.c -o core_pid.bpf.o
 */
#include "bpf_defs.h"

struct task_struct {
    int tgid;
    int pid;
} __attribute__((preserve_access_index));

enum pid_type { PIDTYPE_PID, PIDTYPE_TGID };

__u64 seen[4];

SEC("raw_tracepoint/sys_enter")
int read_pid(__u64 *ctx)
{
    struct task_struct *task = (void *)bpf_get_current_task();
    int pid = 0;

    bpf_probe_read_kernel(&pid, sizeof(pid), &task->pid);
    seen[0] = pid;
    seen[1] = bpf_get_current_pid_tgid() & 0xffffffff;
    seen[2] = __builtin_preserve_field_info(task->tgid, 2);          /* FIELD_EXISTS */
    seen[3] = __builtin_preserve_enum_value(*(enum pid_type *)PIDTYPE_TGID, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
