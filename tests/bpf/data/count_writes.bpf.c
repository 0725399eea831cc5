/* Counts write(2) calls of one process: a BTF-defined array map, a legacy hash map,
 * a ring buffer, .rodata set before load, .data and .bss. Rebuild the object with
 *   clang -O2 -g -target bpf -c count_writes.bpf.c -o count_writes.bpf.o
 */
#include "bpf_defs.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

struct bpf_map_def {
    __u32 type, key_size, value_size, max_entries, map_flags;
};

struct bpf_map_def SEC("maps") by_nr = {
    .type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 64,
};

const volatile __u32 target_tgid = 0;   /* .rodata: set before load */
__u64 step = 1;                         /* .data */
__u64 total;                            /* .bss */

SEC("raw_tracepoint/sys_enter")
int count_writes(__u64 *ctx)
{
    __u32 key = 0, nr = ctx[1];
    __u64 *slot;

    if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
        return 0;
    slot = bpf_map_lookup_elem(&by_nr, &nr);
    if (slot)
        __sync_fetch_and_add(slot, 1);
    if (nr != 1)    /* write on x86_64 */
        return 0;
    slot = bpf_map_lookup_elem(&counts, &key);
    if (slot)
        __sync_fetch_and_add(slot, step);
    __sync_fetch_and_add(&total, 1);
    bpf_ringbuf_output(&events, &nr, sizeof(nr), 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
