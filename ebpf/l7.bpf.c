// SPDX-License-Identifier: GPL-2.0 OR MIT
/* L7 capture: read/write-family syscalls on TCP sockets.
 *
 * Enter: resolve fd -> sock, skip non-sockets and sockets already given up on, stash the
 * arguments. Exit: with the true byte count known, copy the first `capture_size` bytes into a
 * per-CPU scratch record, classify the socket once from its first bytes, and submit one record
 * per syscall on classified sockets. Records go out with BPF_RB_NO_WAKEUP: a wakeup costs
 * ~3.5 us on the traced thread here (perf-limits.md), user space polls on a timer instead. */
#include "common.bpf.h"
#include "classify.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

const volatile __u32 capture_size = 1024; /* set at load, 1..ALAZ_MAX_CAPTURE */
const volatile __u32 max_chunks = 4;        /* capture windows per syscall, 1..ALAZ_MAX_CHUNKS */

#define ALAZ_MAX_TRIES 4 /* unclassified payloads before a socket is ignored */
#define ALAZ_MAX_IOV 16  /* iovec entries walked per call */
#define ALAZ_MAX_CHUNKS 8

enum call_kind {
	CALL_PLAIN = 0, /* read/write/recvfrom/sendto: one buffer */
	CALL_IOV = 1,   /* readv/writev: iovec array */
	CALL_MSG = 2,   /* recvmsg/sendmsg: msghdr -> iovec array (resolved on enter) */
};

struct pending {
	__u64 sk;
	__u64 buf; /* buffer, or iovec array */
	__u64 enter_ns;
	__s32 fd;
	__u32 iovcnt;
	__u8 call;
	__u8 direction;
	__u16 _pad;
	__s32 nr; /* the syscall: an exit only consumes the stash of its own enter */
};

/* The syscall in flight on this thread, from enter to exit. Task-local storage rather than a
 * hash keyed by pid_tgid: it lives in the task itself, so a stash costs ~50 ns instead of the
 * ~370 ns of a hash update (perf-limits.md), and it goes away with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pending SEC(".maps");

/* The record under construction: header + room for two captures so the iovec walk can copy at
 * any offset < capture_size with a length <= capture_size (what the verifier can bound). */
struct scratch {
	struct data_rec rec;
	__u8 data[2 * ALAZ_MAX_CAPTURE];
};

/* One slot per CPU, indexed by CPU id (a per-CPU array value may not exceed 32 KiB). Programs
 * of one CPU never nest (the kernel's bpf_prog_active guard), so a slot has one user at a time.
 * User space sets max_entries to the number of possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

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

/* Copies min(len, capture size) bytes from user memory into s->data; returns the count. */
static __always_inline __u32 copy_user(struct scratch *s, __u64 src, __u64 len)
{
	__u64 n = len;

	if (n > capture_size)
		n = capture_size;
	if (n > ALAZ_MAX_CAPTURE)
		n = ALAZ_MAX_CAPTURE;
	barrier_var(n); /* keep clang from reusing the unclamped copy (verifier) */
	if (!n || bpf_probe_read_user(s->data, n, (void *)src))
		return 0;
	return n;
}

/* Decides protocol and role once per socket. Returns false while still unknown. */
static __always_inline bool classify(struct conn_state *st, const __u8 *d, __u32 len, __u8 direction)
{
	int kind = classify_payload(d, len);

	if (!kind) {
		if (++st->tries >= ALAZ_MAX_TRIES) {
			st->ignored = 1;
			count(CNT_IGNORED);
		}
		return false;
	}
	st->protocol = kind & CLS_PROTO_MASK;
	if (st->role == ROLE_UNKNOWN) {
		/* connect()/accept() decide when seen; otherwise: whoever sends a client message
		 * (request) or receives a server message is the client. */
		bool from_client = kind & CLS_FROM_CLIENT;
		bool egress = direction == DIR_EGRESS;
		st->role = from_client == egress ? ROLE_CLIENT : ROLE_SERVER;
	}
	return true;
}

/* Classifies an unknown socket from the first bytes of this call (the first buffer, or the
 * first non-empty iovec); outside the emit loops, so the verifier walks it once. */
static __always_inline bool classify_first(struct scratch *s, struct pending *p,
					   struct conn_state *st, __u64 ret)
{
	__u64 src = p->buf, len = ret;
	__u32 n;

	if (p->call != CALL_PLAIN) {
		struct iovec v;
		if (!p->iovcnt || bpf_probe_read_user(&v, sizeof(v), (void *)p->buf))
			return false;
		src = (__u64)v.iov_base;
		len = v.iov_len < ret ? v.iov_len : ret;
	}
	n = copy_user(s, src, len);
	return classify(st, s->data, n, p->direction);
}

/* Submits the record in `s`: `n` payload bytes standing for `bytes` stream bytes. */
static __always_inline bool submit(struct scratch *s, struct conn_state *st, __u32 n,
				   __u64 bytes, __u32 chunk_off)
{
	struct data_rec *r = &s->rec;
	__u64 size = sizeof(struct data_rec) + n;

	r->protocol = st->protocol;
	r->role = st->role;
	/* Not atomic (that needs 5.12): two threads writing one socket at the same instant may
	 * share a number; user space orders by the ring, seq only reveals gaps. */
	r->seq = st->seq++;
	r->chunk_off = chunk_off;
	r->bytes = bytes;
	r->captured = n;
	r->flags = bytes > n ? REC_FLAG_TRUNCATED : 0;
	barrier_var(size);
	if (size > sizeof(struct scratch))
		return true;
	if (bpf_ringbuf_output(&events, s, size, BPF_RB_NO_WAKEUP))
		count(CNT_RB_DROP_DATA);
	else
		count(CNT_DATA);
	return true;
}

/* read/write/recvfrom/sendto: one record per capture window of the transferred bytes, up to
 * `max_chunks` windows, so several small pipelined messages in one syscall (Redis pipelines,
 * HTTP pipelining) are all seen. The last record's `bytes` also covers what was not copied,
 * so a parser can skip a large body by its length. */
static __always_inline void emit_plain(struct scratch *s, struct pending *p,
				       struct conn_state *st, __u64 ret)
{
	__u64 cap = capture_size > ALAZ_MAX_CAPTURE ? ALAZ_MAX_CAPTURE : capture_size;

	for (__u32 c = 0; c < ALAZ_MAX_CHUNKS; c++) {
		__u64 start = c * cap;
		bool last = c + 1 >= max_chunks || start + cap >= ret;
		__u32 n = copy_user(s, p->buf + start, ret - start);

		if (!n || !submit(s, st, n, last ? ret - start : n, start) || last)
			return;
	}
}

/* readv/writev/recvmsg/sendmsg: one record per iovec (its first capture window), so message
 * boundaries that follow iovec boundaries (a response head and its body) stay visible. */
static __always_inline void emit_iov(struct scratch *s, struct pending *p, struct conn_state *st,
				     __u64 ret)
{
	struct iovec *iov = (struct iovec *)p->buf;
	__u64 done = 0;

	for (int i = 0; i < ALAZ_MAX_IOV; i++) {
		struct iovec v;
		__u64 len;
		__u32 n;
		bool last;

		if (i >= p->iovcnt || done >= ret)
			return;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			return;
		len = v.iov_len < ret - done ? v.iov_len : ret - done;
		last = i + 1 >= p->iovcnt || i + 1 >= ALAZ_MAX_IOV || done + len >= ret;
		if (len) {
			n = copy_user(s, (__u64)v.iov_base, len);
			if (!submit(s, st, n, last ? ret - done : len, done))
				return;
		}
		done += len;
	}
}

static __always_inline void finish(long nr, __u64 pid_tgid, long ret)
{
	struct pending *p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0, 0);
	struct conn_state *st;
	struct scratch *s;
	__u32 cpu = bpf_get_smp_processor_id();

	if (!p || !p->sk)
		return;
	if (p->nr != nr) /* a stash whose exit never ran (e.g. skipped by the kernel): stale */
		goto out;
	if (ret <= 0)
		goto out;
	s = bpf_map_lookup_elem(&scratch_map, &cpu);
	if (!s)
		goto out;
	st = conn_get_or_create((struct sock *)p->sk, pid_tgid >> 32);
	if (!st || st->ignored)
		goto out;

	struct data_rec *r = &s->rec;
	r->kind = REC_DATA;
	r->direction = p->direction;
	r->family = st->family;
	r->pid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->fd = p->fd;
	r->conn_id = st->conn_id;
	r->cgroup_id = bpf_get_current_cgroup_id();
	r->enter_ns = p->enter_ns;
	r->exit_ns = bpf_ktime_get_ns();
	r->lport = st->lport;
	r->rport = st->rport;
	__builtin_memcpy(r->laddr, st->laddr, 16);
	__builtin_memcpy(r->raddr, st->raddr, 16);
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	if (st->protocol == PROTO_UNKNOWN && !classify_first(s, p, st, ret))
		goto out;
	if (p->call == CALL_PLAIN)
		emit_plain(s, p, st, ret);
	else
		emit_iov(s, p, st, ret);
out:
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
