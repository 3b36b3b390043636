/* Building and submitting data records, shared by the syscall (l7) and TLS objects. */
#ifndef ALAZ_EMIT_BPF_H
#define ALAZ_EMIT_BPF_H

#include "common.bpf.h"
#include "classify.bpf.h"

const volatile __u32 capture_size = 1024; /* set at load, 1..ALAZ_MAX_CAPTURE */
const volatile __u32 max_chunks = 4;        /* capture windows per syscall, 1..ALAZ_MAX_CHUNKS */

#define ALAZ_MAX_TRIES 8 /* unclassified payloads before a socket is ignored: a client that reads
                          * headers and bodies apart (mysql-connector) shows a whole command
                          * packet only at its 6th payload */
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

/* The record under construction: header + room for two captures so the iovec walk can copy at
 * any offset < capture_size with a length <= capture_size (what the verifier can bound). */
struct scratch {
	struct data_rec rec;
	__u8 data[2 * ALAZ_MAX_CAPTURE];
	__u8 tls; /* the record carries TLS plaintext */
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
	r->flags = (bytes > n ? REC_FLAG_TRUNCATED : 0) | (s->tls ? REC_FLAG_TLS : 0);
	barrier_var(size);
	if (size > sizeof(struct scratch))
		return true;
	if (bpf_ringbuf_output(&events, s, size, BPF_RB_NO_WAKEUP))
		count_lost(CNT_RB_DROP_DATA);
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
/* A call whose bytes all fit in one capture window: every iovec copied back to back into one
 * record (a response head and its body written together: one record, one parser step). */
static __always_inline bool emit_iov_packed(struct scratch *s, struct pending *p,
					    struct conn_state *st, __u64 ret)
{
	struct iovec *iov = (struct iovec *)p->buf;
	__u32 off = 0;

	for (int i = 0; i < ALAZ_MAX_IOV; i++) {
		struct iovec v;
		__u64 n;

		if (i >= p->iovcnt || off >= ret)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			return false;
		n = v.iov_len < ret - off ? v.iov_len : ret - off;
		if (n > ALAZ_MAX_CAPTURE)
			n = ALAZ_MAX_CAPTURE;
		barrier_var(n);
		__u32 at = off;
		barrier_var(at);
		at &= ALAZ_MAX_CAPTURE - 1; /* off < ret <= capture size; lets the verifier see it */
		if (n && bpf_probe_read_user(s->data + at, n, v.iov_base))
			return false;
		off += n;
	}
	if (off != ret) /* more iovecs than we walk: let the per-iovec path handle it */
		return false;
	submit(s, st, off, ret, 0);
	return true;
}

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

/* Emits the records of one call that moved `ret` bytes over socket `sk` (its state lives at
 * `sk | state_bit`: 0 for the bytes on the wire, 1 for TLS plaintext). */
static __always_inline void emit_call(struct pending *p, __u64 pid_tgid, __u64 sk, __u64 ret,
				      __u8 tls)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &cpu);
	struct conn_state *st;

	if (!s)
		return;
	st = conn_get_or_create_at((struct sock *)sk, sk | tls, pid_tgid >> 32);
	if (!st || st->ignored)
		return;

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
	s->tls = tls;
	if (st->protocol == PROTO_UNKNOWN && !classify_first(s, p, st, ret))
		return;
	if (p->call == CALL_PLAIN)
		emit_plain(s, p, st, ret);
	else if (ret > (capture_size > ALAZ_MAX_CAPTURE ? ALAZ_MAX_CAPTURE : capture_size) ||
		 !emit_iov_packed(s, p, st, ret))
		emit_iov(s, p, st, ret);
}

#endif
