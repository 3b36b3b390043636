// SPDX-License-Identifier: GPL-2.0 OR MIT
/* TCP lifecycle: connect() and accept() tell which end of a socket the process is; the
 * sock:inet_sock_set_state tracepoint tells when a pending connect completes and when a socket
 * is gone, so user space can finish and free its per-connection state. */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); /* pid_tgid */
	__type(value, __s32); /* fd */
} connecting SEC(".maps");

static __always_inline void claim(struct sock *sk, __u64 pid_tgid, int fd, __u8 role, __u8 event)
{
	struct conn_state *st = conn_get_or_create(sk, pid_tgid >> 32);

	if (!st)
		return;
	st->role = role;
	/* The local port of a connect is bound by now; a fresh read keeps both ends exact. */
	read_addrs(sk, st);
	emit_conn(event, st, pid_tgid, fd);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__s32 fd = ctx->args[0];

	if (!out_of_scope(pid_tgid))
		bpf_map_update_elem(&connecting, &pid_tgid, &fd, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__s32 *fd = bpf_map_lookup_elem(&connecting, &pid_tgid);
	struct sock *sk;

	if (!fd)
		return 0;
	if (ctx->ret == 0 || ctx->ret == -EINPROGRESS) {
		sk = sock_of_fd(*fd);
		if (sk)
			claim(sk, pid_tgid, *fd, ROLE_CLIENT, CONN_CONNECT);
	}
	bpf_map_delete_elem(&connecting, &pid_tgid);
	return 0;
}

static __always_inline void accepted(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct sock *sk;

	if (ret < 0 || out_of_scope(pid_tgid))
		return;
	sk = sock_of_fd(ret);
	if (sk)
		claim(sk, pid_tgid, ret, ROLE_SERVER, CONN_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	int fd = ctx->args[0];
	struct conn_state *st;
	struct sock *sk;
	__u64 key;

	if (out_of_scope(pid_tgid))
		return 0;
	sk = sock_of_fd(fd);
	if (!sk)
		return 0;
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&conns, &key);
	if (st && st->protocol != PROTO_UNKNOWN)
		emit_conn(CONN_FD_CLOSE, st, pid_tgid, fd);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 key = (__u64)ctx->skaddr;
	struct conn_state *st;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->newstate == TCP_CLOSE) {
		/* the TLS plaintext stream of this socket, if any, ends with it */
		__u64 tls_key = key | 1;
		struct conn_state *tls = bpf_map_lookup_elem(&conns, &tls_key);
		if (tls) {
			emit_conn(CONN_CLOSE, tls, 0, -1);
			bpf_map_delete_elem(&conns, &tls_key);
		}
	}
	st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 0;
	/* Runs in softirq context too: the current task is unrelated, so pid/fd are left 0. */
	if (ctx->newstate == TCP_ESTABLISHED && ctx->oldstate == TCP_SYN_SENT) {
		read_addrs((struct sock *)ctx->skaddr, st);
		emit_conn(CONN_ESTABLISHED, st, 0, -1);
	} else if (ctx->newstate == TCP_CLOSE) {
		emit_conn(CONN_CLOSE, st, 0, -1);
		bpf_map_delete_elem(&conns, &key);
	}
	return 0;
}
