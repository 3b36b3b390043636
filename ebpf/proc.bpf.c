// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Process lifecycle: exec, exit (of the whole process) and fork (of a new process, not a
 * thread). User space uses them to name processes and to free per-process state. */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

static __always_inline void emit_proc(__u8 event, __u32 pid, __u32 ppid)
{
	struct proc_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		count_lost(CNT_RB_DROP_CTRL);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->kind = REC_PROC;
	r->event = event;
	r->pid = pid;
	r->ppid = ppid;
	r->cgroup_id = bpf_get_current_cgroup_id();
	r->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

SEC("tracepoint/sched/sched_process_exec")
int proc_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	emit_proc(PROC_EXEC, pid, BPF_CORE_READ(task, real_parent, tgid));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int proc_exit(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if ((__u32)pid_tgid != (__u32)(pid_tgid >> 32)) /* a thread, not the process */
		return 0;
	emit_proc(PROC_EXIT, pid_tgid >> 32, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(proc_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid) /* a new thread */
		return 0;
	emit_proc(PROC_FORK, child->tgid, parent->tgid);
	return 0;
}
