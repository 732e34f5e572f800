/* Native load client: the closed-loop ECHO load of loadgen/engine.py, in C.
 *
 * Not a second load generator: a yardstick for the first.  Run against the
 * same server with the same settings, it says how many requests/s a client
 * that costs (almost) nothing in user space gets, so the Python engine's
 * figure can be read as a fraction of that ceiling (loadgen/native_client.py
 * builds it and runs it; see calibrate_ceiling there).
 *
 *   native_client --host H --port P [--connections 64] [--pipeline 1]
 *                 [--size 64] [--warmup 1] [--duration 3]
 *
 * Loopback targets only.  One thread, one level-triggered epoll loop,
 * non-blocking sockets with TCP_NODELAY, one 64 KiB receive buffer.  Each
 * connection keeps PIPELINE ECHO requests in flight; every reply is compared
 * byte for byte with the one expected (they are all the same: status 0, the
 * length, the payload), and a connection whose reply differs is closed and
 * counted as an error: with a stream protocol there is no resynchronising.
 * Like the engine, the requests answered in one epoll batch are sent after
 * the batch (the server, woken by the first, finds the others waiting), so
 * the two differ in language, not in strategy.
 *
 * Bounded: the loop ends at warm-up + duration whatever the server does
 * (connecting has its own deadline), and an alarm() backs that up.  Prints
 * one JSON line on stdout; exit status 0 when it ran (errors are in the
 * JSON), 2 for bad arguments, 1 when the system refused something.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { HDR = 5, CONNECT_BATCH = 128, MAX_EVENTS = 256, GRACE_S = 2 };
enum { K_REFUSED, K_RESET, K_TIMEOUT, K_PROTOCOL, K_WRONG, NKINDS };
static const char *KIND[NKINDS] = {"refused", "reset", "timeout", "protocol", "wrong_reply"};
#define RECV_SIZE (64 * 1024)

struct conn {
    int fd;          /* -1 once closed */
    int connecting;
    int in_flight;   /* requests queued or sent whose reply is not complete */
    size_t in_off;   /* bytes of the current reply received and matched */
    size_t owe;      /* request bytes not yet written */
    size_t out_off;  /* where the next byte to write is, within one request */
    int pending;     /* already on this batch's list of connections to flush */
    int want_out;    /* registered for EPOLLOUT */
    long replies;    /* complete replies over the whole run */
};

static struct conn *conns;
static int ep, pipeline_depth, live;
static long errors[NKINDS];
static unsigned char *reqs, *reply, rbuf[RECV_SIZE];
static size_t reqlen;

static void die(const char *what) { perror(what); exit(1); }

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "native_client: watchdog: still running past the bound\n";
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing more to do */ }
    _exit(3);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double rusage_s(const struct timeval *tv) { return tv->tv_sec + tv->tv_usec / 1e6; }

static void usage(void) {
    fprintf(stderr, "usage: native_client --host H --port P [--connections N] [--pipeline P]"
                    " [--size BYTES] [--warmup S] [--duration S]\n");
    exit(2);
}

/* Resolve HOST:PORT; refuse anything that is not this machine. */
static struct sockaddr_storage resolve(const char *host, const char *port, socklen_t *len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) { fprintf(stderr, "native_client: %s: %s\n", host, gai_strerror(rc)); exit(2); }
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    int loopback = 0;
    if (ss.ss_family == AF_INET)
        loopback = (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    else if (ss.ss_family == AF_INET6)
        loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    if (!loopback) {
        fprintf(stderr, "native_client: %s is not a loopback address\n", host);
        exit(2);
    }
    return ss;
}

static void close_conn(struct conn *c, int kind) {
    if (c->fd < 0) return;
    if (kind >= 0) errors[kind]++;
    close(c->fd);  /* also removes it from the epoll set */
    c->fd = -1;
    live--;
}

/* Write what the connection owes.  The request stream is one request repeated,
 * so it is sent straight from `reqs` (pipeline + 1 copies): from any offset
 * within the first copy, everything owed is contiguous there. */
static void flush(struct conn *c) {
    while (c->owe) {
        ssize_t n = send(c->fd, reqs + c->out_off, c->owe, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            close_conn(c, errno == ECONNREFUSED ? K_REFUSED : K_RESET);
            return;
        }
        c->owe -= n;
        c->out_off = (c->out_off + n) % reqlen;
    }
    /* EPOLLOUT only while something waits for room (it would fire on every wait),
     * and epoll_ctl only when that changes: it is a system call per request otherwise. */
    int want = c->owe != 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = c - conns};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
        c->want_out = want;
    }
}

static void queue_requests(struct conn *c, int k) {
    c->in_flight += k;
    c->owe += (size_t)k * reqlen;
}

/* Readable: check every byte against the expected replies; count the complete
 * ones.  Returns the number completed, or -1 if the connection was closed. */
static int on_readable(struct conn *c) {
    ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (n < 0) {
        if (errno == EAGAIN) return 0;
        close_conn(c, K_RESET);
        return -1;
    }
    if (n == 0) { close_conn(c, K_RESET); return -1; }
    int done = 0;
    for (size_t i = 0; i < (size_t)n;) {
        if (done == c->in_flight) { close_conn(c, K_PROTOCOL); return -1; }  /* unasked bytes */
        size_t take = reqlen - c->in_off;  /* a reply is as long as its request */
        if (take > (size_t)n - i) take = n - i;
        if (memcmp(reply + c->in_off, rbuf + i, take)) {
            /* a status byte that is neither OK nor ERROR is not a frame at all */
            int malformed = c->in_off == 0 && rbuf[i] > 1;
            close_conn(c, malformed ? K_PROTOCOL : K_WRONG);
            return -1;
        }
        c->in_off += take;
        i += take;
        if (c->in_off == reqlen) { c->in_off = 0; done++; }
    }
    c->in_flight -= done;
    c->replies += done;
    return done;
}

/* Open every connection, CONNECT_BATCH at a time (listen backlogs are small). */
static void connect_all(int n, const struct sockaddr_storage *ss, socklen_t len, int64_t deadline) {
    struct epoll_event events[MAX_EVENTS];
    for (int first = 0; first < n; first += CONNECT_BATCH) {
        int last = first + CONNECT_BATCH < n ? first + CONNECT_BATCH : n, waiting = 0;
        for (int i = first; i < last; i++) {
            int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) die("socket");
            int one = 1;  /* small frames go out at once, not after the peer's ACK */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            conns[i] = (struct conn){.fd = fd, .connecting = 1};
            live++;
            if (connect(fd, (const struct sockaddr *)ss, len) < 0 && errno != EINPROGRESS) {
                close_conn(&conns[i], errno == ECONNREFUSED ? K_REFUSED : K_RESET);
                continue;
            }
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
            waiting++;
        }
        while (waiting > 0) {
            int64_t left = deadline - now_ns();
            if (left <= 0) break;
            int got = epoll_wait(ep, events, MAX_EVENTS, (int)(left / 1000000) + 1);
            for (int e = 0; e < got; e++) {
                struct conn *c = &conns[events[e].data.u32];
                if (c->fd < 0 || !c->connecting) continue;  /* an earlier batch's: later */
                int err = 0;
                socklen_t elen = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
                c->connecting = 0;
                waiting--;
                if (err) close_conn(c, err == ECONNREFUSED ? K_REFUSED : K_RESET);
                else {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = c - conns};
                    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
                }
            }
        }
    }
    for (int i = 0; i < n; i++)  /* not connected in time: a timeout, not retried */
        if (conns[i].fd >= 0 && conns[i].connecting) close_conn(&conns[i], K_TIMEOUT);
}

int main(int argc, char **argv) {
    const char *host = NULL, *port = NULL;
    int nconn = 64;
    long size = 64;
    double warmup = 1.0, duration = 3.0;
    pipeline_depth = 1;
    static const struct option opts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"connections", 1, 0, 'c'},
        {"pipeline", 1, 0, 'P'}, {"size", 1, 0, 's'}, {"warmup", 1, 0, 'w'},
        {"duration", 1, 0, 'd'}, {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = optarg; break;
        case 'c': nconn = atoi(optarg); break;
        case 'P': pipeline_depth = atoi(optarg); break;
        case 's': size = atol(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        default: usage();
        }
    }
    if (!host || !port || nconn < 1 || nconn > 60000 || pipeline_depth < 1 ||
        pipeline_depth > 4096 || size < 0 || size > 16 * 1024 * 1024 || warmup < 0 ||
        duration <= 0 || warmup + duration > 3600)
        usage();
    socklen_t alen;
    struct sockaddr_storage addr = resolve(host, port, &alen);
    double connect_s = 2.0 + nconn / 1000.0;  /* the engine's ramp limit (LoadConfig.ramp_limit) */
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(connect_s + warmup + duration) + GRACE_S);

    /* The request (ECHO, a fixed pseudo-random payload) and the one reply it must get. */
    reqlen = HDR + (size_t)size;
    if (!(reqs = malloc(reqlen * (pipeline_depth + 1))) || !(reply = malloc(reqlen))) die("malloc");
    uint32_t len = size, x = 2463534242u;
    unsigned char hdr[HDR] = {1, len >> 24, len >> 16, len >> 8, len};
    memcpy(reqs, hdr, HDR);
    for (size_t i = HDR; i < reqlen; i++) {  /* xorshift32: not a repeating pattern */
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        reqs[i] = x;
    }
    memcpy(reply, reqs, reqlen);
    reply[0] = 0;
    for (int k = 1; k <= pipeline_depth; k++) memcpy(reqs + k * reqlen, reqs, reqlen);

    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
    if (!(conns = calloc(nconn, sizeof *conns))) die("calloc");
    connect_all(nconn, &addr, alen, now_ns() + (int64_t)(connect_s * 1e9));
    int connected = live;

    int64_t t0 = now_ns(), t_measure = t0 + (int64_t)(warmup * 1e9);
    int64_t t_end = t_measure + (int64_t)(duration * 1e9), t_start = 0, t_stop = 0;
    struct rusage ru0 = {0}, ru1 = {0};
    long requests = 0;
    int measuring = 0;
    int *pending = malloc(sizeof(int) * nconn), npending = 0;
    struct epoll_event events[MAX_EVENTS];
    if (!pending) die("malloc");
    for (int i = 0; i < nconn; i++)
        if (conns[i].fd >= 0) { queue_requests(&conns[i], pipeline_depth); flush(&conns[i]); }

    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= t_measure) {
            measuring = 1;
            t_start = now;
            t_end = now + (int64_t)(duration * 1e9);  /* the window is `duration`, however late */
            getrusage(RUSAGE_SELF, &ru0);
        }
        if (now >= t_end || live == 0) break;
        int64_t wake = measuring ? t_end : t_measure;
        int got = epoll_wait(ep, events, MAX_EVENTS, (int)((wake - now + 999999) / 1000000));
        if (got < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < got; e++) {
            struct conn *c = &conns[events[e].data.u32];
            if (c->fd < 0) continue;  /* closed earlier in this batch */
            if (events[e].events & EPOLLOUT) flush(c);
            if (c->fd < 0 || !(events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            int done = on_readable(c);
            if (done <= 0) continue;
            if (measuring) requests += done;
            queue_requests(c, done);
            if (!c->pending) { c->pending = 1; pending[npending++] = c - conns; }
        }
        for (int k = 0; k < npending; k++) {  /* this batch's next requests, together */
            struct conn *c = &conns[pending[k]];
            c->pending = 0;
            if (c->fd >= 0) flush(c);
        }
        npending = 0;
    }
    t_stop = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    for (int i = 0; i < nconn; i++)  /* open, asked, never answered: the server went silent */
        if (conns[i].fd >= 0 && conns[i].replies == 0) close_conn(&conns[i], K_TIMEOUT);
    double elapsed = t_start ? (t_stop - t_start) / 1e9 : 0.0;
    long total = 0;
    for (int k = 0; k < NKINDS; k++) total += errors[k];
    printf("{\"requests\": %ld, \"elapsed_s\": %.6f, \"throughput\": %.1f, \"errors\": %ld, "
           "\"error_kinds\": {", requests, elapsed, elapsed > 0 ? requests / elapsed : 0.0, total);
    for (int k = 0; k < NKINDS; k++) printf("%s\"%s\": %ld", k ? ", " : "", KIND[k], errors[k]);
    printf("}, \"connections\": %d, \"pipeline\": %d, \"size\": %ld, "
           "\"cpu_user_s\": %.6f, \"cpu_system_s\": %.6f}\n",
           connected, pipeline_depth, size,
           t_start ? rusage_s(&ru1.ru_utime) - rusage_s(&ru0.ru_utime) : 0.0,
           t_start ? rusage_s(&ru1.ru_stime) - rusage_s(&ru0.ru_stime) : 0.0);
    return 0;
}
