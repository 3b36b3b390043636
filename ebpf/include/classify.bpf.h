/* Protocol recognition from the first bytes a socket carries (either direction).
 *
 * classify_payload() returns 0 when the bytes match nothing, else the protocol (enum
 * alaz_protocol) ORed with CLS_FROM_CLIENT when the message is one a client sends. Each test is
 * strict enough that binary noise (TLS records, other protocols) does not pass by chance; a
 * socket gets ALAZ_MAX_TRIES payloads to be recognised. */
#ifndef ALAZ_CLASSIFY_BPF_H
#define ALAZ_CLASSIFY_BPF_H

#define CLS_PROTO_MASK 0x7f
#define CLS_FROM_CLIENT 0x80

static __always_inline bool prefix(const __u8 *d, const char *lit, int n)
{
	for (int i = 0; i < n; i++)
		if (d[i] != (__u8)lit[i])
			return false;
	return true;
}

static __always_inline __u32 be32(const __u8 *d)
{
	return (__u32)d[0] << 24 | (__u32)d[1] << 16 | (__u32)d[2] << 8 | d[3];
}

static __always_inline int http1_kind(const __u8 *d, __u32 len)
{
	if (len < 8)
		return 0;
	if (prefix(d, "HTTP/1.", 7))
		return PROTO_HTTP1;
	if (prefix(d, "GET ", 4) || prefix(d, "PUT ", 4) || prefix(d, "POST ", 5) ||
	    prefix(d, "HEAD ", 5) || prefix(d, "PATCH ", 6) || prefix(d, "TRACE ", 6) ||
	    prefix(d, "DELETE ", 7) || prefix(d, "OPTIONS ", 8) || prefix(d, "CONNECT ", 8))
		return PROTO_HTTP1 | CLS_FROM_CLIENT;
	return 0;
}

/* PostgreSQL v3: StartupMessage (protocol 3.0), SSLRequest / GSSENCRequest, or mid-stream a
 * simple Query ('Q', length, SQL text) or a Parse ('P', length, statement name\0, query). */
static __always_inline int postgres_kind(const __u8 *d, __u32 len)
{
	__u32 n;

	if (len < 8)
		return 0;
	n = be32(d);
	if (n == len && n >= 8 && n <= 10000) {
		__u32 code = be32(d + 4);
		if (code == 0x00030000 || code == 80877103 || code == 80877104)
			return PROTO_POSTGRES | CLS_FROM_CLIENT;
	}
	n = be32(d + 1);
	if ((d[0] == 'Q' || d[0] == 'P') && n >= 5 && n + 1 <= len + 65536 && n < (1 << 26)) {
		__u8 c = d[5];
		/* SQL starts with a letter, a paren, a comment or blank; Parse with a name or \0 */
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '(' || c == '-' ||
		    c == '/' || c == ' ' || c == '\n' || (d[0] == 'P' && c == 0))
			return PROTO_POSTGRES | CLS_FROM_CLIENT;
	}
	return 0;
}

/* MySQL: the server's greeting (length, seq 0, protocol 10, version text) or mid-stream a
 * command packet (seq 0) that is a whole write: COM_QUERY, STMT_PREPARE/EXECUTE/CLOSE. */
static __always_inline int mysql_kind(const __u8 *d, __u32 len)
{
	__u32 n;

	if (len < 5)
		return 0;
	n = d[0] | (__u32)d[1] << 8 | (__u32)d[2] << 16;
	if (d[3] != 0 || n + 4 != len)
		return 0;
	if (d[4] == 0x0a && len > 6 && d[5] >= '0' && d[5] <= '9')
		return PROTO_MYSQL;
	if (d[4] == 0x03 || d[4] == 0x16 || d[4] == 0x17 || d[4] == 0x19)
		return PROTO_MYSQL | CLS_FROM_CLIENT;
	return 0;
}

/* Redis: a command is a RESP array of bulk strings: "*<n>\r\n$<len>\r\n". */
static __always_inline int redis_kind(const __u8 *d, __u32 len)
{
	int i = 1;

	if (len < 8 || d[0] != '*' || d[1] < '1' || d[1] > '9')
		return 0;
	if (d[2] >= '0' && d[2] <= '9')
		i = 2;
	if (d[i + 1] != '\r' || d[i + 2] != '\n' || d[i + 3] != '$')
		return 0;
	return PROTO_REDIS | CLS_FROM_CLIENT;
}

/* AMQP 0-9-1: the protocol header a client opens with, or a whole method frame (type 1,
 * channel, size, class, method, ..., frame-end 0xCE); Basic.Deliver/GetOk come from servers. */
static __always_inline int amqp_kind(const __u8 *d, __u32 len)
{
	__u32 size;

	if (len >= 8 && prefix(d, "AMQP", 4) && d[4] == 0 && d[5] == 0 && d[6] == 9 && d[7] == 1)
		return PROTO_AMQP | CLS_FROM_CLIENT;
	if (len < 12 || d[0] != 1)
		return 0;
	size = be32(d + 3);
	if (size < 4 || size + 8 > len || size + 8 > ALAZ_MAX_CAPTURE)
		return 0;
	__u32 end = size + 7;
	barrier_var(end);
	if (end >= ALAZ_MAX_CAPTURE || d[end & (ALAZ_MAX_CAPTURE - 1)] != 0xCE)
		return 0;
	/* class 60 (basic): deliver (60) and get-ok (71) come from the server */
	if (d[7] == 0 && d[8] == 60 && d[9] == 0 && (d[10] == 60 || d[10] == 71))
		return PROTO_AMQP;
	if (d[7] == 0 && d[8] == 10 && d[9] == 0 && (d[10] == 10 || d[10] == 30))
		return PROTO_AMQP; /* connection.start / tune: the server speaks */
	return PROTO_AMQP | CLS_FROM_CLIENT;
}

static __always_inline int classify_payload(const __u8 *d, __u32 len)
{
	int kind;

	if ((kind = http1_kind(d, len)))
		return kind;
	if ((kind = postgres_kind(d, len)))
		return kind;
	if ((kind = mysql_kind(d, len)))
		return kind;
	if ((kind = redis_kind(d, len)))
		return kind;
	return amqp_kind(d, len);
}

#endif
