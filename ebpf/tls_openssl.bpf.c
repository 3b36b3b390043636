// SPDX-License-Identifier: GPL-2.0 OR MIT
/* OpenSSL plaintext: uprobes on SSL_write/SSL_read and SSL_write_ex/SSL_read_ex (what Python's
 * ssl module calls) in every libssl copy user space finds, attached per library file.
 *
 * Entry notes the call on the thread (common.bpf.h: tls_calls); the syscall probes then learn
 * the socket from the nested read/write and skip its ciphertext; return emits the plaintext
 * through the same record path as plain syscalls, flagged TLS, on the socket's plaintext
 * stream (conns key sk | 1). A read served from OpenSSL's buffer (no syscall) finds its
 * socket through the SSL object's last known socket (ssl_socks). */
#include "emit.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

static __always_inline void ssl_enter(__u64 ssl, __u64 buf, __u64 len_ptr, __u8 direction, __u8 ex)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tls_call *t;

	if (out_of_scope(pid_tgid))
		return;
	t = bpf_task_storage_get(&tls_calls, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return;
	t->ssl = ssl;
	t->buf = buf;
	t->len_ptr = len_ptr;
	t->enter_ns = bpf_ktime_get_ns();
	t->sk = 0;
	t->fd = -1;
	t->direction = direction;
	t->ex = ex;
	t->active = 1;
}

static __always_inline void ssl_exit(long rc)
{
	struct tls_call *t = bpf_task_storage_get(&tls_calls, bpf_get_current_task_btf(), 0, 0);
	struct pending p = {};
	struct ssl_sock link = {};
	__u64 n;

	if (!t || !t->active)
		return;
	t->active = 0;
	if (t->ex) { /* int SSL_*_ex(..., size_t *done): 1 on success */
		if (rc != 1 || bpf_probe_read_user(&n, sizeof(n), (void *)t->len_ptr))
			return;
	} else {
		if (rc <= 0)
			return;
		n = rc;
	}
	if (t->sk) {
		link.sk = t->sk;
		link.fd = t->fd;
		bpf_map_update_elem(&ssl_socks, &t->ssl, &link, BPF_ANY);
	} else {
		struct ssl_sock *known = bpf_map_lookup_elem(&ssl_socks, &t->ssl);
		if (!known)
			return;
		link = *known;
	}
	p.sk = link.sk;
	p.buf = t->buf;
	p.enter_ns = t->enter_ns;
	p.fd = link.fd;
	p.call = CALL_PLAIN;
	p.direction = t->direction;
	emit_call(&p, bpf_get_current_pid_tgid(), link.sk, n, 1);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, void *buf, int num)
{
	ssl_enter((__u64)ssl, (__u64)buf, 0, DIR_EGRESS, 0);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	ssl_enter((__u64)ssl, (__u64)buf, 0, DIR_INGRESS, 0);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, void *buf, size_t num, size_t *written)
{
	ssl_enter((__u64)ssl, (__u64)buf, (__u64)written, DIR_EGRESS, 1);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	ssl_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, DIR_INGRESS, 1);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_exit_probe, long rc)
{
	ssl_exit(rc);
	return 0;
}
