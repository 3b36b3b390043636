// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Go crypto/tls plaintext: uprobes on (*tls.Conn).Write (entry) and (*tls.Conn).Read (entry,
 * and one plain uprobe at every RET of Read: uretprobes crash Go programs, whose stacks move).
 *
 * Go >= 1.17 passes arguments in registers (amd64: receiver in RAX, the slice in RBX/RCX;
 * results in RAX...). The current goroutine is R14 (amd64) / R28 (arm64): Read's entry and its
 * RETs are paired by it. The socket fd comes from the Conn: tls.Conn.conn is a net.Conn
 * interface {itab, data}; data -> net.TCPConn{conn{fd *netFD}}; netFD.pfd is a poll.FD whose
 * Sysfd follows a 16-byte fdMutex. These offsets have held from Go 1.17 to 1.23 (checked
 * against DWARF by src/alaz/tls/golang.py); they are load-time settings all the same. */
#include "emit.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

const volatile __u64 go_conn_data_off = 8; /* tls.Conn.conn (net.Conn) -> its data pointer */
const volatile __u64 go_netfd_off = 0;     /* net.conn.fd within net.TCPConn */
const volatile __u64 go_sysfd_off = 16;    /* poll.FD.Sysfd within netFD */

#if defined(__TARGET_ARCH_x86)
#define GO_ARG1(ctx) ((ctx)->ax)
#define GO_ARG2(ctx) ((ctx)->bx)
#define GO_ARG3(ctx) ((ctx)->cx)
#define GO_RET1(ctx) ((ctx)->ax)
#define GO_G(ctx) ((ctx)->r14)
#elif defined(__TARGET_ARCH_arm64)
#define GO_ARG1(ctx) (((struct user_pt_regs *)(ctx))->regs[0])
#define GO_ARG2(ctx) (((struct user_pt_regs *)(ctx))->regs[1])
#define GO_ARG3(ctx) (((struct user_pt_regs *)(ctx))->regs[2])
#define GO_RET1(ctx) (((struct user_pt_regs *)(ctx))->regs[0])
#define GO_G(ctx) (((struct user_pt_regs *)(ctx))->regs[28])
#endif

struct go_read {
	__u64 buf;
	__u64 enter_ns;
	__s32 fd;
	__u32 _pad;
};

/* Read calls in flight, by goroutine (pid in the high bits: g pointers repeat across
 * processes). LRU: a Read whose RET we never see ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct go_read);
} go_reads SEC(".maps");

static __always_inline int conn_fd(__u64 conn)
{
	__u64 data = 0, netfd = 0;
	__s64 fd = -1;

	if (bpf_probe_read_user(&data, sizeof(data), (void *)(conn + go_conn_data_off)) || !data)
		return -1;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(data + go_netfd_off)) || !netfd)
		return -1;
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + go_sysfd_off)))
		return -1;
	return fd;
}

static __always_inline void emit_go(__u64 buf, __u64 len, int fd, __u64 enter_ns, __u8 direction)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pending p = {};
	struct sock *sk;

	if (out_of_scope(pid_tgid) || fd < 0 || !len)
		return;
	sk = sock_of_fd(fd);
	if (!sk)
		return;
	p.sk = (__u64)sk;
	p.buf = buf;
	p.enter_ns = enter_ns;
	p.fd = fd;
	p.call = CALL_PLAIN;
	p.direction = direction;
	emit_call(&p, pid_tgid, (__u64)sk, len, 1);
}

SEC("uprobe")
int go_tls_write(struct pt_regs *ctx)
{
	emit_go(GO_ARG2(ctx), GO_ARG3(ctx), conn_fd(GO_ARG1(ctx)), bpf_ktime_get_ns(), DIR_EGRESS);
	return 0;
}

SEC("uprobe")
int go_tls_read_enter(struct pt_regs *ctx)
{
	__u64 key = GO_G(ctx) ^ (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL);
	struct go_read r = {};

	if (out_of_scope(bpf_get_current_pid_tgid()))
		return 0;
	r.buf = GO_ARG2(ctx);
	r.enter_ns = bpf_ktime_get_ns();
	r.fd = conn_fd(GO_ARG1(ctx));
	bpf_map_update_elem(&go_reads, &key, &r, BPF_ANY);
	return 0;
}

SEC("uprobe")
int go_tls_read_ret(struct pt_regs *ctx)
{
	__u64 key = GO_G(ctx) ^ (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL);
	struct go_read *r = bpf_map_lookup_elem(&go_reads, &key);
	__s64 n = GO_RET1(ctx);

	if (!r)
		return 0;
	if (n > 0)
		emit_go(r->buf, n, r->fd, r->enter_ns, DIR_INGRESS);
	bpf_map_delete_elem(&go_reads, &key);
	return 0;
}
