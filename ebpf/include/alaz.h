/* Records shared between the BPF programs and Python (src/alaz/capture/records.py mirrors
 * them; tests/kernel/test_records_abi.py checks the mirror against the objects' BTF).
 * Fixed-width types, explicit padding, the kind first. Little-endian. */
#ifndef ALAZ_H
#define ALAZ_H

#define ALAZ_MAX_CAPTURE 16384 /* upper bound of the load-time capture size */
#define ALAZ_COMM_LEN 16

enum alaz_rec_kind {
	REC_DATA = 1, /* one read/write on a classified socket: struct data_rec + payload */
	REC_CONN = 2, /* a TCP lifecycle event: struct conn_rec */
	REC_PROC = 3, /* a process lifecycle event: struct proc_rec */
};

enum alaz_direction {
	DIR_EGRESS = 0,  /* the traced process wrote the bytes */
	DIR_INGRESS = 1, /* the traced process read the bytes */
};

enum alaz_protocol {
	PROTO_UNKNOWN = 0,
	PROTO_HTTP1 = 1,
	PROTO_POSTGRES = 2,
	PROTO_MYSQL = 3,
	PROTO_REDIS = 4,
	PROTO_AMQP = 5,
};

enum alaz_role {
	ROLE_UNKNOWN = 0,
	ROLE_CLIENT = 1,
	ROLE_SERVER = 2,
};

enum alaz_conn_event {
	CONN_CONNECT = 1,     /* connect() returned 0 or EINPROGRESS: this process is the client */
	CONN_ACCEPT = 2,      /* accept() returned a socket: this process is the server */
	CONN_ESTABLISHED = 3, /* a tracked non-blocking connect completed */
	CONN_CLOSE = 4,       /* the socket reached TCP_CLOSE */
	CONN_FD_CLOSE = 5,    /* a process closed an fd of a classified socket */
};

enum alaz_proc_event {
	PROC_EXEC = 1,
	PROC_EXIT = 2,
	PROC_FORK = 3,
};

/* Counters in the per-CPU `counters` array, summed by user space. */
enum alaz_counter {
	CNT_RB_DROP_DATA = 0, /* the ring refused a data record (full): it was lost */
	CNT_RB_DROP_CTRL = 1, /* the ring refused a conn/proc record (full): it was lost */
	CNT_PENDING_FULL = 2, /* the syscall stash map was full */
	CNT_CONNS_FULL = 3,   /* the per-socket map rejected an insert */
	CNT_DATA = 4,         /* data records submitted */
	CNT_IGNORED = 5,      /* sockets given up on after ALAZ_MAX_TRIES unclassified payloads */
	CNT_RB_REFUSED = 6,   /* of the drops above, those with room to spare in the ring */
	CNT_MAX = 8,
};

#define REC_FLAG_TLS 0x1
#define REC_FLAG_TRUNCATED 0x2 /* bytes > captured */

struct data_rec {
	__u16 kind;
	__u8 direction;
	__u8 protocol;
	__u8 role;
	__u8 flags;
	__u16 family; /* AF_INET or AF_INET6 */
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u32 seq; /* per connection, both directions, starts at 0 */
	__u64 conn_id;
	__u64 cgroup_id;
	__u64 enter_ns; /* CLOCK_MONOTONIC */
	__u64 exit_ns;
	__u64 bytes;     /* stream bytes this record stands for: captured + any uncopied tail */
	__u32 captured;  /* payload bytes that follow this header (<= capture size) */
	__u32 chunk_off; /* where this record starts within the syscall's bytes */
	__u16 lport;    /* host order */
	__u16 rport;
	__u8 laddr[16]; /* IPv4: first 4 bytes, network order */
	__u8 raddr[16];
	char comm[ALAZ_COMM_LEN];
	__u32 _pad0;
};

struct conn_rec {
	__u16 kind;
	__u8 event;
	__u8 role;
	__u16 family;
	__u16 _pad0;
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u32 _pad1;
	__u64 conn_id;
	__u64 cgroup_id;
	__u64 ts_ns;
	__u16 lport;
	__u16 rport;
	__u32 _pad2;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[ALAZ_COMM_LEN];
};

struct proc_rec {
	__u16 kind;
	__u8 event;
	__u8 _pad0;
	__u32 pid;
	__u32 ppid;
	__u32 _pad1;
	__u64 cgroup_id;
	__u64 ts_ns;
	char comm[ALAZ_COMM_LEN];
};

#endif
