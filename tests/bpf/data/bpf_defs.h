/* What these test objects need from libbpf's headers, written out so that building
 * them takes clang alone. Helper ids are enum bpf_func_id of <linux/bpf.h>. */
#ifndef QPUOS_BPF_DEFS_H
#define QPUOS_BPF_DEFS_H

typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_RINGBUF 27

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_ringbuf_output)(void *ring, void *data, __u64 size, __u64 flags) =
    (void *)130;

#endif
