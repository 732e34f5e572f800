/* Native epoll reference: the ECHO opcode of protocol v1 (and raw echo) in C.
 *
 * A ceiling to measure the Python servers and the load generator against,
 * not a model to study: servers/native_epoll.py builds and execs it.
 *
 *   native_epoll LISTEN_FD framed|raw MAX_FRAME [UNIX_PATH]
 *
 * One thread, one level-triggered epoll loop, non-blocking sockets, one
 * 64 KiB receive buffer shared by every connection (under glibc's 128 KiB
 * mmap threshold, like every receive buffer in the suite).  ECHO replies are
 * streamed: the header goes out as soon as the request's header is in, the
 * payload as it arrives, so a 16 MiB frame is never held whole.  Any other
 * opcode gets an ERROR frame once its payload is consumed; QUIT gets OK and
 * the connection closes; a declared length over MAX_FRAME gets ERROR and the
 * connection closes.  A reader that does not read stops being read from once
 * OUT_HIGH bytes of replies are waiting (no unbounded buffering).
 * SIGTERM/SIGINT: exit 0 at once (the kernel closes every socket), first
 * removing UNIX_PATH when the listener is a Unix socket bound there.
 *
 * Datagram mode (issue 17; servers/native_epoll_udp.py): when LISTEN_FD is a
 * bound UDP socket (SO_TYPE is SOCK_DGRAM) there is no epoll loop -- one
 * blocking socket is all there is to wait on.  recvmmsg() takes up to
 * BATCH datagrams a call (MSG_WAITFORONE: as many as are queued, at least
 * one), each is answered in place, and sendmmsg() sends the batch's replies
 * in one call: two system calls for up to BATCH requests.  One datagram is
 * one frame (docs/PROTOCOL.md, "Datagrams"): shorter than a header, dropped;
 * a length field that disagrees with its size, or a payload over MAX_FRAME
 * (at most 65,502), ERROR; ECHO answered with the same payload; every other
 * opcode the same ERROR as over TCP.  Raw mode echoes each datagram as is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_ECHO = 1, OP_QUIT = 5, ST_OK = 0, ST_ERROR = 1, HDR = 5 };
#define RECV_SIZE (64 * 1024)
#define OUT_HIGH (1024 * 1024)

struct conn {
    int fd, hdr_len, in_frame, closing;
    unsigned char hdr[HDR], op;
    uint32_t left;  /* payload bytes of the current frame still to come */
    uint32_t events;
    char *out;
    size_t out_off, out_len, out_cap;
};

static int ep, raw_mode;
static unsigned long long max_frame;
static unsigned char rbuf[RECV_SIZE];

static const char *unix_path;  /* the listener's socket file, removed at exit; or NULL */
static void on_signal(int sig) {
    (void)sig;
    if (unix_path) unlink(unix_path);  /* async-signal-safe, like _exit */
    _exit(0);
}

static void die(const char *what) { perror(what); exit(1); }

static void out_put(struct conn *c, const void *p, size_t n) {
    if (c->out_off) {  /* keep pending bytes at the front: appends stay contiguous */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
        while (cap < c->out_len + n) cap *= 2;
        if (!(c->out = realloc(c->out, cap))) die("realloc");
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void out_frame(struct conn *c, unsigned char status, uint32_t len, const char *payload) {
    unsigned char h[HDR] = {status, len >> 24, len >> 16, len >> 8, len};
    out_put(c, h, HDR);
    if (payload) out_put(c, payload, len);
}

static void out_error(struct conn *c, const char *msg) { out_frame(c, ST_ERROR, strlen(msg), msg); }

/* The frame's payload has all arrived: answer what is not streamed. */
static void end_frame(struct conn *c) {
    c->in_frame = 0;
    if (c->op == OP_QUIT) {
        out_frame(c, ST_OK, 0, NULL);
        c->closing = 1;
    } else if (c->op != OP_ECHO) {
        out_error(c, "native_epoll reference serves ECHO only");
    }
}

static void feed(struct conn *c, const unsigned char *p, size_t n) {
    if (raw_mode) {
        out_put(c, p, n);
        return;
    }
    /* A frame with no payload left is ended in the iteration that completes its header. */
    while (!c->closing && n > 0) {
        if (!c->in_frame) {
            size_t take = n < (size_t)(HDR - c->hdr_len) ? n : (size_t)(HDR - c->hdr_len);
            memcpy(c->hdr + c->hdr_len, p, take);
            p += take, n -= take, c->hdr_len += take;
            if (c->hdr_len < HDR) return;
            c->hdr_len = 0;
            c->op = c->hdr[0];
            c->left = (uint32_t)c->hdr[1] << 24 | c->hdr[2] << 16 | c->hdr[3] << 8 | c->hdr[4];
            if (c->left > max_frame) {  /* the stream cannot be resynchronised */
                char msg[96];
                snprintf(msg, sizeof msg, "frame of %u bytes is over the maximum of %llu",
                         c->left, max_frame);
                out_error(c, msg);
                c->closing = 1;
                return;
            }
            c->in_frame = 1;
            if (c->op == OP_ECHO) out_frame(c, ST_OK, c->left, NULL);
        }
        size_t take = n < c->left ? n : c->left;
        if (c->op == OP_ECHO) out_put(c, p, take);
        p += take, n -= take, c->left -= take;
        if (c->left == 0) end_frame(c);
    }
}

static void drop(struct conn *c) {
    close(c->fd);  /* also removes it from the epoll set */
    free(c->out);
    free(c);
}

/* Write what we can, then ask epoll for what we need next. */
static void flush_and_rearm(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w < 0) {  /* reset or broken pipe: the client is gone */
            drop(c);
            return;
        }
        c->out_off += w;
    }
    size_t pending = c->out_len - c->out_off;
    if (!pending) c->out_off = c->out_len = 0;
    if (c->closing && !pending) {
        drop(c);
        return;
    }
    uint32_t want = (pending ? EPOLLOUT : 0) | (!c->closing && pending < OUT_HIGH ? EPOLLIN : 0);
    if (want != c->events) {
        struct epoll_event ev = {.events = want, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
        c->events = want;
    }
}

static void on_readable(struct conn *c) {
    ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {  /* reset */
        drop(c);
        return;
    }
    if (n == 0) c->closing = 1;  /* peer done sending: finish our replies, then close */
    else feed(c, rbuf, n);
    flush_and_rearm(c);
}

static void accept_all(int lfd, int *spare) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && *spare >= 0) {
            /* Out of descriptors: accept and close the waiting client, or
             * level-triggered epoll spins.  (EMFILE comes before the queue is
             * looked at, so an empty queue shows only with the spare freed.) */
            close(*spare);
            int extra = accept(lfd, NULL, NULL);
            if (extra >= 0) close(extra);
            *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (extra < 0) return;
            continue;
        }
        if (fd < 0) return;  /* EAGAIN: backlog empty (or a transient error) */
        struct conn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
}

/* -- datagram mode: recvmmsg, answer in place, sendmmsg ----------------------- */

enum { BATCH = 64, DGRAM_MAX = 65536, MAX_DGRAM_PAYLOAD = 65507 - HDR, ERR_MAX = 128 };
static unsigned char dbuf[BATCH][DGRAM_MAX];  /* 4 MiB, static: no allocation per datagram */
static unsigned char ebuf[BATCH][ERR_MAX];    /* ERROR replies, built per batch */

/* The reply to datagram i of length len: its bytes in *out, or 0 to drop it. */
static size_t dgram_reply(int i, size_t len, unsigned char **out) {
    unsigned char *d = dbuf[i];
    *out = d;
    if (raw_mode) return len;
    if (len < HDR) return 0;  /* no header: nothing to answer (and no reflector) */
    uint32_t declared = (uint32_t)d[1] << 24 | d[2] << 16 | d[3] << 8 | d[4];
    const char *fixed = NULL;
    char msg[ERR_MAX - HDR];
    if (declared != len - HDR) {
        snprintf(msg, sizeof msg, "length field %u but the datagram carries %zu bytes",
                 declared, len - HDR);
    } else if (declared > max_frame || declared > MAX_DGRAM_PAYLOAD) {
        unsigned long long most = max_frame < MAX_DGRAM_PAYLOAD ? max_frame : MAX_DGRAM_PAYLOAD;
        snprintf(msg, sizeof msg, "payload of %u bytes is over the maximum of %llu", declared, most);
    } else if (d[0] == OP_ECHO) {
        d[0] = ST_OK;  /* the reply is the request with its status byte: no copy */
        return len;
    } else {
        fixed = "native_epoll reference serves ECHO only";
    }
    if (fixed) snprintf(msg, sizeof msg, "%s", fixed);
    size_t n = strlen(msg);
    unsigned char *e = ebuf[i];
    e[0] = ST_ERROR, e[1] = 0, e[2] = 0, e[3] = n >> 8, e[4] = n;
    memcpy(e + HDR, msg, n);
    *out = e;
    return HDR + n;
}

static void datagram_loop(int fd) {
    static struct mmsghdr in[BATCH], out[BATCH];
    static struct iovec iin[BATCH], iout[BATCH];
    static struct sockaddr_storage addr[BATCH];
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) die("datagram fd");
    for (int i = 0; i < BATCH; i++) {
        iin[i].iov_base = dbuf[i];
        iin[i].iov_len = DGRAM_MAX;
    }
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
            in[i].msg_hdr.msg_name = &addr[i];
            in[i].msg_hdr.msg_namelen = sizeof addr[i];
            in[i].msg_hdr.msg_iov = &iin[i];
            in[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0 && (errno == EINTR || errno == ECONNREFUSED)) continue;
        if (n < 0) die("recvmmsg");
        int m = 0;
        for (int i = 0; i < n; i++) {
            unsigned char *reply;
            size_t len = dgram_reply(i, in[i].msg_len, &reply);
            if (!len && !raw_mode) continue;
            iout[m].iov_base = reply;
            iout[m].iov_len = len;
            memset(&out[m].msg_hdr, 0, sizeof out[m].msg_hdr);
            out[m].msg_hdr.msg_name = &addr[i];
            out[m].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
            out[m].msg_hdr.msg_iov = &iout[m];
            out[m].msg_hdr.msg_iovlen = 1;
            m++;
        }
        for (int sent = 0; sent < m;) {  /* a reply the kernel refuses is skipped, alone */
            int k = sendmmsg(fd, out + sent, m - sent, 0);
            if (k < 0 && errno == EINTR) continue;
            sent += k > 0 ? k : 1;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5 || (strcmp(argv[2], "framed") && strcmp(argv[2], "raw"))) {
        fprintf(stderr, "usage: native_epoll LISTEN_FD framed|raw MAX_FRAME [UNIX_PATH]\n");
        return 2;
    }
    if (argc == 5) unix_path = argv[4];
    int lfd = atoi(argv[1]);
    raw_mode = !strcmp(argv[2], "raw");
    max_frame = strtoull(argv[3], NULL, 10);

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;  /* the launcher blocked SIGTERM/SIGINT across exec: take them now */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct rlimit rl;  /* thousands of connections: use the whole hard limit */
    if (!getrlimit(RLIMIT_NOFILE, &rl)) rl.rlim_cur = rl.rlim_max, setrlimit(RLIMIT_NOFILE, &rl);

    int type = 0;
    socklen_t tlen = sizeof type;
    if (!getsockopt(lfd, SOL_SOCKET, SO_TYPE, &type, &tlen) && type == SOCK_DGRAM) {
        fcntl(lfd, F_SETFD, FD_CLOEXEC);
        datagram_loop(lfd);  /* never returns */
    }
    if (fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0) die("listener fd");
    fcntl(lfd, F_SETFD, FD_CLOEXEC);
    int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl listener");

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) accept_all(lfd, &spare);
            else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) && !c->closing) on_readable(c);
            else flush_and_rearm(c);
        }
    }
}
