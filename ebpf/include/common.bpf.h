/* Maps and helpers shared by every alaz object. Each object declares the same shared maps;
 * user space creates them once (in the first object loaded) and hands the same fds to the
 * others with bpf_map__reuse_fd, so all programs see one ring buffer and one socket table. */
#ifndef ALAZ_COMMON_BPF_H
#define ALAZ_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "alaz.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2

/* Load-time settings (const volatile: the verifier sees them as constants once .rodata is
 * frozen, so they cost nothing at run time). */
const volatile __u32 self_tgid = 0; /* the agent: never captured */
/* When set, only processes whose cgroup (v2 id) is in `scope` are captured: the pods of this
 * node that are not excluded. User space keeps the map current as pods come and go. */
const volatile bool scope_enabled = false;

/* Referenced so the record types land in every object's BTF, where the ABI test reads them. */
struct data_rec *_abi_data_rec __attribute__((unused));
struct conn_rec *_abi_conn_rec __attribute__((unused));
struct proc_rec *_abi_proc_rec __attribute__((unused));

/* Per-socket state, keyed by the kernel's struct sock address. */
struct conn_state {
	__u64 conn_id; /* unique for the agent's lifetime: sk addresses are reused */
	__u32 seq;
	__u32 pid;  /* first process seen on it */
	__u8 protocol;
	__u8 role;
	__u8 tries; /* unclassified payloads seen */
	__u8 ignored;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 _pad;
	__u32 _pad2;
	__u8 laddr[16];
	__u8 raddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by user space before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* cgroup v2 id (the cgroup directory's inode number) */
	__type(value, __u8);
} scope SEC(".maps");

/* A TLS library call in flight on this thread (SSL_read/SSL_write and their _ex forms, set by
 * the uprobes of tls_openssl). While one is active, the syscalls the library makes on the
 * socket are not captured (they carry ciphertext); they only tell which socket the call uses.
 * Why nested-syscall correlation rather than SSL struct offsets: it needs no per-version
 * layout of SSL/BIO (which OpenSSL 3.2+ changed again, and bundled copies may differ), and it
 * works for any library that does its own I/O on the thread that called it. */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 len_ptr; /* _ex forms: size_t *written / *readbytes */
	__u64 enter_ns;
	__u64 sk; /* learned from the syscall nested in this call */
	__s32 fd;
	__u8 active;
	__u8 direction;
	__u8 ex;
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

struct ssl_sock {
	__u64 sk;
	__s32 fd;
	__u32 _pad;
};

/* SSL object -> its socket, for reads served from the library's buffer with no syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ssl_sock);
} ssl_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* A connection id unique for the agent's lifetime without a shared counter (atomic fetch-add
 * needs kernel 5.12; the objects would also need to share the counter): the creation time in
 * ns and the CPU, which no two creations share. Unique for 833 days of uptime. */
static __always_inline __u64 new_conn_id(void)
{
	return (bpf_ktime_get_ns() << 8) | (bpf_get_smp_processor_id() & 0xff);
}

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		*c += 1; /* per-CPU: no atomics needed */
}

#define RING_MAX_RECORD (sizeof(struct data_rec) + 2 * ALAZ_MAX_CAPTURE + 8)

/* A ring reservation failed: the record is lost. Counted apart when the ring had room to
 * spare: then it was not user space falling behind. (It was user space all the same, once: a
 * consumer position written byte by byte, read by the kernel while it was zero.) */
static __always_inline void count_lost(__u32 lost_counter)
{
	/* The consumer's position first: read second, it could be newer than the producer's. */
	__u64 cons = bpf_ringbuf_query(&events, BPF_RB_CONS_POS);
	__u64 used = bpf_ringbuf_query(&events, BPF_RB_PROD_POS) - cons;
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);

	count(lost_counter);
	if (used + 2 * RING_MAX_RECORD < size)
		count(CNT_RB_REFUSED);
}

/* True when the current task must not be captured: the agent itself, or (with scoping on) a
 * process outside the pods in scope. */
static __always_inline bool out_of_scope(__u64 pid_tgid)
{
	__u64 cgroup;

	if ((__u32)(pid_tgid >> 32) == self_tgid)
		return true;
	if (!scope_enabled)
		return false;
	cgroup = bpf_get_current_cgroup_id();
	return bpf_map_lookup_elem(&scope, &cgroup) == NULL;
}

/* fd of the current task -> struct sock, only for TCP-like stream sockets (AF_INET/AF_INET6,
 * SOCK_STREAM). Everything else (files, pipes, UDP, unix sockets) gives NULL, so non-socket
 * fds cost no more than this walk. */
static __always_inline struct sock *sock_of_fd(int fd)
{
	/* task -> files -> fdt is walked through BTF pointers (inlined loads, no helper calls);
	 * from the fd array on, plain CO-RE reads. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	struct fdtable *fdt;
	struct file **fds;
	struct file *file;
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (fd < 0 || !files)
		return NULL;
	fdt = files->fdt;
	if (!fdt || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/* (Comparing f_op with socket_file_ops would save a read, but that symbol is static and
	 * kallsyms often lacks data symbols.) */
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	return sk;
}

static __always_inline void read_addrs(struct sock *sk, struct conn_state *st)
{
	st->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	st->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	st->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (st->family == AF_INET) {
		bpf_core_read(st->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(st->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(st->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(st->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* The state stored at `key` for socket `sk`, created (with its addresses read now) when absent.
 * The key is the sock's address for the bytes on the wire, and the address | 1 for the TLS
 * plaintext of the same socket (a separate stream with its own classification). */
static __always_inline struct conn_state *conn_get_or_create_at(struct sock *sk, __u64 key,
								 __u32 pid)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	struct conn_state fresh = {};

	if (st)
		return st;
	fresh.conn_id = new_conn_id();
	fresh.pid = pid;
	read_addrs(sk, &fresh);
	if (bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST) && bpf_map_lookup_elem(&conns, &key) == NULL) {
		count(CNT_CONNS_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &key);
}

static __always_inline struct conn_state *conn_get_or_create(struct sock *sk, __u32 pid)
{
	return conn_get_or_create_at(sk, (__u64)sk, pid);
}

static __always_inline void fill_conn_rec(struct conn_rec *r, __u8 event, struct conn_state *st,
					  __u64 pid_tgid, int fd)
{
	r->kind = REC_CONN;
	r->event = event;
	r->role = st->role;
	r->family = st->family;
	r->pid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->fd = fd;
	r->conn_id = st->conn_id;
	r->cgroup_id = bpf_get_current_cgroup_id();
	r->ts_ns = bpf_ktime_get_ns();
	r->lport = st->lport;
	r->rport = st->rport;
	__builtin_memcpy(r->laddr, st->laddr, 16);
	__builtin_memcpy(r->raddr, st->raddr, 16);
	bpf_get_current_comm(r->comm, sizeof(r->comm));
}

static __always_inline void emit_conn(__u8 event, struct conn_state *st, __u64 pid_tgid, int fd)
{
	struct conn_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		count_lost(CNT_RB_DROP_CTRL);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	fill_conn_rec(r, event, st, pid_tgid, fd);
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

#endif
