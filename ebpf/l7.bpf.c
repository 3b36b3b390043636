// SPDX-License-Identifier: GPL-2.0 OR MIT
/* L7 capture: read/write-family syscalls on TCP sockets.
 *
 * Enter: resolve fd -> sock, skip non-sockets and sockets already given up on, stash the
 * arguments. Exit: with the true byte count known, copy the first `capture_size` bytes into a
 * per-CPU scratch record, classify the socket once from its first bytes, and submit one record
 * per syscall on classified sockets. Records go out with BPF_RB_NO_WAKEUP: a wakeup costs
 * ~3.5 us on the traced thread here (perf-limits.md), user space polls on a timer instead. */
#include "common.bpf.h"
#include "emit.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The syscall in flight on this thread, from enter to exit. Task-local storage rather than a
 * hash keyed by pid_tgid: it lives in the task itself, so a stash costs ~50 ns instead of the
 * ~370 ns of a hash update (perf-limits.md), and it goes away with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pending SEC(".maps");

/* When this thread is inside a TLS library call, notes the socket the call works on. */
static __always_inline bool inside_tls_call(__u64 sk, int fd)
{
	struct tls_call *t = bpf_task_storage_get(&tls_calls, bpf_get_current_task_btf(), 0, 0);

	if (!t || !t->active)
		return false;
	t->sk = sk;
	t->fd = fd;
	return true;
}

static __always_inline void stash(long nr, __u64 pid_tgid, int fd, __u64 buf, __u32 iovcnt,
				  __u8 call, __u8 direction)
{
	struct sock *sk;
	struct conn_state *st;
	struct pending *p;
	__u64 key;

	if (out_of_scope(pid_tgid))
		return;
	sk = sock_of_fd(fd);
	if (!sk)
		return;
	key = (__u64)sk;
	if (inside_tls_call(key, fd))
		return; /* ciphertext: the TLS probes capture the plaintext of this call */
	st = bpf_map_lookup_elem(&conns, &key);
	if (st && st->ignored)
		return;
	p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p) {
		count(CNT_PENDING_FULL);
		return;
	}
	p->sk = key;
	p->buf = buf;
	p->enter_ns = bpf_ktime_get_ns();
	p->fd = fd;
	p->iovcnt = iovcnt;
	p->call = call;
	p->direction = direction;
	p->nr = nr;
}

/* sendmsg/recvmsg: the iovec array lives in the user's msghdr. */
static __always_inline void stash_msg(long nr, __u64 pid_tgid, int fd, struct user_msghdr *msg,
				      __u8 direction)
{
	struct user_msghdr m;

	if (out_of_scope(pid_tgid))
		return;
	if (bpf_probe_read_user(&m, sizeof(m), msg))
		return;
	stash(nr, pid_tgid, fd, (__u64)m.msg_iov, (__u32)m.msg_iovlen, CALL_MSG, direction);
}

static __always_inline void finish(long nr, __u64 pid_tgid, long ret)
{
	struct pending *p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0, 0);

	if (!p || !p->sk)
		return;
	if (p->nr == nr && ret > 0) /* else: a stash whose exit never ran (stale), or a failure */
		emit_call(p, pid_tgid, p->sk, ret, 0);
	p->sk = 0; /* consumed; the storage itself stays with the thread */
}

#define ENTER_PLAIN(name, dir)                                                                   \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                              \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                                  \
	{                                                                                        \
		stash((int)ctx->id, bpf_get_current_pid_tgid(), ctx->args[0], ctx->args[1], 0, CALL_PLAIN, dir); \
		return 0;                                                                        \
	}

#define ENTER_IOV(name, dir)                                                                     \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                              \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                                  \
	{                                                                                        \
		stash((int)ctx->id, bpf_get_current_pid_tgid(), ctx->args[0], ctx->args[1], ctx->args[2], CALL_IOV, dir); \
		return 0;                                                                        \
	}

#define EXIT(name)                                                                               \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                               \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                                    \
	{                                                                                        \
		finish((int)ctx->id, bpf_get_current_pid_tgid(), ctx->ret);                                    \
		return 0;                                                                        \
	}

ENTER_PLAIN(write, DIR_EGRESS)
ENTER_PLAIN(read, DIR_INGRESS)
ENTER_PLAIN(sendto, DIR_EGRESS)
ENTER_IOV(writev, DIR_EGRESS)
ENTER_IOV(readv, DIR_INGRESS)

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK) /* peeked bytes are read again later */
		return 0;
	stash((int)ctx->id, bpf_get_current_pid_tgid(), ctx->args[0], ctx->args[1], 0, CALL_PLAIN, DIR_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	stash_msg((int)ctx->id, bpf_get_current_pid_tgid(), ctx->args[0], (struct user_msghdr *)ctx->args[1], DIR_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	stash_msg((int)ctx->id, bpf_get_current_pid_tgid(), ctx->args[0], (struct user_msghdr *)ctx->args[1], DIR_INGRESS);
	return 0;
}

EXIT(write)
EXIT(read)
EXIT(sendto)
EXIT(recvfrom)
EXIT(writev)
EXIT(readv)
EXIT(sendmsg)
EXIT(recvmsg)
