/*
 * dyn_http: the libcurl driver against a tiny HTTP/1.1 responder that runs in
 * a child process on a free 127.0.0.1 port: keep-alive, concurrency, retries
 * through the runner, header capture, connection refused and timeouts.
 */
#include "dynamo/crypto.h"
#include "dynamo/http.h"
#include "testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the responder (child process) ---- */

enum mode {
    M_ECHO,   /* 200 at once; the body tells the connection count, request count and some request headers */
    M_SILENT, /* reads requests, never answers */
    M_BATCH,  /* holds requests until `param` are pending or 300 ms passed, then answers them all */
    M_FLAKY,  /* the first `param` requests get 503, later ones 200 */
    M_ERROR,  /* 400 with x-amzn-errortype and a JSON message */
    M_BADCRC, /* 200 with a wrong x-amz-crc32 */
    M_CLOSE,  /* closes every connection as soon as a request arrives */
    M_STAGGER /* holds requests until `param` are pending, then answers them 20 ms apart, in the order they came
                 (param > 0) or the reverse (param < 0) */
};

#define MAX_CONNS 64

struct conn {
    int fd;
    char buf[16384];
    size_t len;
    int pending;
};

static void respond(int fd, int status, const char *extra_headers, const char *body, int bad_crc, int req);

/* Answers the held requests one by one, 20 ms apart: order[0..n) are their connections' fds, as they came. */
static void answer_staggered(const int *order, int n, int reverse, int requests) {
    int i;
    for (i = 0; i < n; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"answer\":%d}", i + 1);
        if (i > 0) {
            struct timespec gap = {0, 20 * 1000000L};
            nanosleep(&gap, NULL);
        }
        respond(order[reverse ? n - 1 - i : i], 200, "", text, 0, requests);
    }
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

/* Value of header `name` (lowercase) in the head hdr[0..n), or NULL. */
static const char *find_header(const char *hdr, size_t n, const char *name, size_t *vlen) {
    size_t i, k, nl = strlen(name);
    for (i = 0; i + nl + 2 < n; i++) {
        if (hdr[i] != '\n') continue;
        for (k = 0; k < nl && lower(hdr[i + 1 + k]) == name[k]; k++) {
        }
        if (k == nl && hdr[i + 1 + nl] == ':') {
            const char *v = hdr + i + 2 + nl, *end;
            while (*v == ' ') v++;
            end = strstr(v, "\r\n");
            *vlen = end ? (size_t)(end - v) : 0;
            return v;
        }
    }
    return NULL;
}

static void respond(int fd, int status, const char *extra_headers, const char *body, int bad_crc, int req) {
    char out[4096];
    unsigned long crc = (unsigned long)dyn_crc32(0, body, strlen(body));
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: %u\r\n"
                     "x-amz-crc32: %lu\r\nx-amzn-RequestId: req-%d\r\n%s\r\n%s",
                     status, (unsigned)strlen(body), bad_crc ? crc ^ 1ul : crc, req, extra_headers, body);
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, out + off, (size_t)(n - off));
        if (w <= 0) return;
        off += w;
    }
}

static void serve(int lfd, int mode, int param) {
    struct conn *conns = calloc(MAX_CONNS, sizeof *conns);
    struct pollfd pfd[MAX_CONNS + 1];
    int n_conns = 0, accepted = 0, requests = 0, pending = 0, i;
    int order[MAX_CONNS], n_order = 0; /* M_STAGGER: the held requests' connections, as they came */
    int64_t first_pending = 0;
    if (!conns) _exit(1);
    for (;;) {
        int timeout = -1;
        pfd[0].fd = lfd;
        pfd[0].events = POLLIN;
        for (i = 0; i < n_conns; i++) {
            pfd[i + 1].fd = conns[i].fd;
            pfd[i + 1].events = POLLIN;
        }
        if (mode == M_BATCH && pending > 0) {
            int64_t left = first_pending + 300 - mono_ms();
            timeout = left < 0 ? 0 : (int)left;
        }
        if (poll(pfd, (nfds_t)n_conns + 1, timeout) < 0) continue;
        if ((pfd[0].revents & POLLIN) && n_conns < MAX_CONNS) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                memset(&conns[n_conns], 0, sizeof conns[n_conns]);
                pfd[n_conns + 1].revents = 0; /* not polled yet this round */
                conns[n_conns++].fd = fd;
                accepted++;
            }
        }
        for (i = 0; i < n_conns; i++) {
            struct conn *c = &conns[i];
            char *end;
            ssize_t r;
            if (!(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (r <= 0) {
                close(c->fd);
                pending -= c->pending;
                conns[i] = conns[--n_conns];
                pfd[i + 1] = pfd[n_conns + 1];
                i--;
                continue;
            }
            c->len += (size_t)r;
            c->buf[c->len] = '\0';
            /* Handle every complete request in the buffer. */
            while ((end = strstr(c->buf, "\r\n\r\n")) != NULL) {
                size_t head = (size_t)(end - c->buf) + 4, vlen = 0, body_len = 0, total;
                const char *cl = find_header(c->buf, head, "content-length", &vlen);
                char text[1024], target[128] = "", ae[64] = "", host[128] = "";
                const char *v;
                if (cl) body_len = (size_t)strtoul(cl, NULL, 10);
                total = head + body_len;
                if (c->len < total) break;
                if ((v = find_header(c->buf, head, "x-amz-target", &vlen)) != NULL)
                    snprintf(target, sizeof target, "%.*s", (int)vlen, v);
                if ((v = find_header(c->buf, head, "accept-encoding", &vlen)) != NULL)
                    snprintf(ae, sizeof ae, "%.*s", (int)vlen, v);
                if ((v = find_header(c->buf, head, "host", &vlen)) != NULL)
                    snprintf(host, sizeof host, "%.*s", (int)vlen, v);
                memmove(c->buf, c->buf + total, c->len - total);
                c->len -= total;
                c->buf[c->len] = '\0';
                requests++;
                switch (mode) {
                case M_ECHO:
                    snprintf(text, sizeof text,
                             "{\"conns\":%d,\"req\":%d,\"target\":\"%s\",\"ae\":\"%s\",\"host\":\"%s\",\"len\":%u}",
                             accepted, requests, target, ae, host, (unsigned)body_len);
                    respond(c->fd, 200, "", text, 0, requests);
                    break;
                case M_BATCH:
                    if (pending == 0) first_pending = mono_ms();
                    c->pending++;
                    pending++;
                    break;
                case M_FLAKY:
                    respond(c->fd, requests <= param ? 503 : 200, "", requests <= param ? "" : "{\"ok\":true}", 0,
                            requests);
                    break;
                case M_ERROR:
                    respond(c->fd, 400,
                            "X-Amzn-ErrorType: ResourceNotFoundException:http://internal.amazon.com/coral/\r\n",
                            "{\"message\":\"Requested resource not found\"}", 0, requests);
                    break;
                case M_BADCRC: respond(c->fd, 200, "", "{}", 1, requests); break;
                case M_CLOSE: shutdown(c->fd, SHUT_RDWR); break;
                case M_STAGGER:
                    if (n_order < MAX_CONNS) order[n_order++] = c->fd;
                    if (n_order == (param < 0 ? -param : param)) {
                        answer_staggered(order, n_order, param < 0, requests);
                        n_order = 0;
                    }
                    break;
                default: break;
                }
            }
        }
        if (mode == M_BATCH && pending > 0 && (pending >= param || mono_ms() - first_pending >= 300)) {
            char text[128];
            snprintf(text, sizeof text, "{\"pending\":%d,\"conns\":%d}", pending, accepted);
            for (i = 0; i < n_conns; i++) {
                while (conns[i].pending > 0) {
                    respond(conns[i].fd, 200, "", text, 0, requests);
                    conns[i].pending--;
                }
            }
            pending = 0;
        }
    }
}

struct server {
    pid_t pid;
    int port;
    char url[64];
};

static int listen_on_free_port(int *port) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

static int server_start(struct server *s, int mode, int param) {
    int fd = listen_on_free_port(&s->port);
    if (fd < 0) return -1;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0) {
        close(fd);
        return -1;
    }
    if (s->pid == 0) {
        serve(fd, mode, param);
        _exit(0);
    }
    close(fd);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    return 0;
}

static void server_stop(struct server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

/* ---- test helpers ---- */

static double s_r = 0.5;
static double fixed_random(void *ud) { return *(double *)ud; }
static struct dyn_retry_bucket s_bucket;
static struct dyn_sigv4_key_cache s_cache;

static void config(struct dyn_call_config *cfg, const char *url, int max_attempts) {
    CHECK_EQ_INT(dyn_call_config_init(cfg, NULL, url, "us-east-1"), DYN_OK);
    CHECK_EQ_INT(dyn_call_config_set_credentials(cfg, DYN_SLICE_LIT("AKIDEXAMPLE"), DYN_SLICE_LIT("secret"),
                                                 DYN_SLICE_EMPTY),
                 DYN_OK);
    dyn_retry_bucket_init(&s_bucket, 0);
    dyn_sigv4_key_cache_init(&s_cache);
    cfg->bucket = &s_bucket;
    cfg->key_cache = &s_cache;
    cfg->retry.max_attempts = max_attempts;
    s_r = 0.5;
    cfg->random.fn = fixed_random;
    cfg->random.ud = &s_r;
}

static struct dyn_http *driver(long timeout_ms, int concurrency) {
    struct dyn_http_config hc;
    struct dyn_http *http = NULL;
    dyn_http_config_default(&hc);
    hc.timeout_ms = timeout_ms;
    hc.connect_timeout_ms = 1000;
    hc.concurrency = concurrency;
    CHECK_EQ_INT(dyn_http_new(&hc, NULL, &http), DYN_OK);
    return http;
}

static int body_has(const struct dyn_call *call, const char *needle) {
    dyn_slice b = dyn_call_body(call);
    char text[1024];
    snprintf(text, sizeof text, "%.*s", (int)b.len, b.ptr);
    return strstr(text, needle) != NULL;
}

/* ---- tests ---- */

TEST(keep_alive_reuses_one_connection) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_http_stats st;
    int i, ok = 0;
    CHECK(server_start(&srv, M_ECHO, 0) == 0);
    config(&cfg, srv.url, 4);
    http = driver(5000, 4);
    for (i = 0; i < 50 && http; i++) {
        struct dyn_call *call = NULL;
        char want[32];
        CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{\"TableName\":\"t\"}"), &call),
                     DYN_OK);
        CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
        if (dyn_call_status(call) == DYN_OK) ok++;
        snprintf(want, sizeof want, "\"req\":%d,", i + 1);
        CHECK(body_has(call, want));
        CHECK(body_has(call, "\"conns\":1,"));
        if (i == 0) {
            CHECK(body_has(call, "\"target\":\"DynamoDB_20120810.GetItem\""));
            CHECK(body_has(call, "\"ae\":\"identity\""));
            CHECK(body_has(call, "\"len\":17"));
            {
                char host[64];
                snprintf(host, sizeof host, "\"host\":\"127.0.0.1:%d\"", srv.port);
                CHECK(body_has(call, host));
            }
            CHECK_EQ_STR(dyn_call_error(call)->request_id, "req-1"); /* kept on success too */
        }
        dyn_call_free(call);
    }
    CHECK_EQ_INT(ok, 50);
    dyn_http_get_stats(http, &st);
    CHECK_EQ_INT(st.requests, 50);
    CHECK_EQ_INT(st.connections, 1);
    CHECK_EQ_INT(st.retries, 0);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

/* A response buffer handed back after reading serves the next response. */
TEST(recycled_response_memory_serves_the_next_response) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    const char *prev = NULL;
    int i;
    CHECK(server_start(&srv, M_ECHO, 0) == 0);
    config(&cfg, srv.url, 1);
    http = driver(5000, 1);
    for (i = 0; i < 5 && http; i++) {
        struct dyn_call *call = NULL;
        struct dyn_buf b;
        char want[32];
        CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
        CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
        snprintf(want, sizeof want, "\"req\":%d,", i + 1);
        CHECK(body_has(call, want));
        if (prev) CHECK(dyn_call_body(call).ptr == prev);
        prev = dyn_call_body(call).ptr;
        dyn_call_take_body(call, &b);
        CHECK_EQ_INT(dyn_call_body(call).len, 0);
        dyn_http_recycle(http, &b);
        CHECK(b.ptr == NULL && b.cap == 0);
        dyn_call_free(call);
    }
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

TEST(runs_up_to_concurrency_transfers_at_once) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_http_stats st;
    struct dyn_call *calls[8];
    int i;
    /* The server answers once 5 requests are pending or after 300 ms: with concurrency 4 it must see exactly 4. */
    CHECK(server_start(&srv, M_BATCH, 5) == 0);
    config(&cfg, srv.url, 1);
    http = driver(5000, 4);
    for (i = 0; i < 8; i++)
        CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("PutItem"), DYN_SLICE_LIT("{}"), &calls[i]), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, calls, 8), DYN_OK);
    for (i = 0; i < 8; i++) {
        CHECK_EQ_INT(dyn_call_status(calls[i]), DYN_OK);
        CHECK(body_has(calls[i], "\"pending\":4,"));
        CHECK(body_has(calls[i], "\"conns\":4}"));
        dyn_call_free(calls[i]);
    }
    dyn_http_get_stats(http, &st);
    CHECK_EQ_INT(st.requests, 8);
    CHECK_EQ_INT(st.connections, 4);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

/* More sockets than the driver's first watch list holds: it grows while
   curl adds sockets, and every transfer still completes. */
TEST(many_concurrent_transfers) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_http_stats st;
    struct dyn_call *calls[60];
    int i;
    CHECK(server_start(&srv, M_BATCH, 25) == 0);
    config(&cfg, srv.url, 1);
    http = driver(5000, 24);
    for (i = 0; i < 60; i++)
        CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("PutItem"), DYN_SLICE_LIT("{}"), &calls[i]), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, calls, 60), DYN_OK);
    for (i = 0; i < 60; i++) {
        CHECK_EQ_INT(dyn_call_status(calls[i]), DYN_OK);
        CHECK(body_has(calls[i], "\"conns\":24}"));
        dyn_call_free(calls[i]);
    }
    dyn_http_get_stats(http, &st);
    CHECK_EQ_INT(st.requests, 60);
    CHECK_EQ_INT(st.connections, 24);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

/* With every call in flight, the driver sleeps until the newest transfer's
   answer and reads the others with it: answers 20 ms apart in the order asked
   cost one wakeup, not six. In the reverse order every call still completes,
   one wakeup per answer at most, and without waiting for a timeout. */
TEST(one_wakeup_for_answers_in_order) {
    int reverse;
    for (reverse = 0; reverse <= 1; reverse++) {
        struct server srv;
        struct dyn_call_config cfg;
        struct dyn_http *http;
        struct dyn_http_stats st, before;
        struct dyn_call *calls[6];
        int i, round;
        int64_t t0;
        CHECK(server_start(&srv, M_STAGGER, reverse ? -6 : 6) == 0);
        config(&cfg, srv.url, 1);
        http = driver(5000, 6);
        for (round = 0; round < 2; round++) { /* the second on kept-alive connections */
            char seen[6] = {0};
            dyn_http_get_stats(http, &before);
            for (i = 0; i < 6; i++)
                CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("PutItem"), DYN_SLICE_LIT("{}"), &calls[i]), DYN_OK);
            t0 = mono_ms();
            CHECK_EQ_INT(dyn_http_run(http, calls, 6), DYN_OK);
            CHECK(mono_ms() - t0 < 900); /* 100 ms of answers; a sleep on a wrong socket would last 1 s */
            for (i = 0; i < 6; i++) {
                int k;
                CHECK_EQ_INT(dyn_call_status(calls[i]), DYN_OK);
                for (k = 1; k <= 6; k++) {
                    char want[32];
                    snprintf(want, sizeof want, "{\"answer\":%d}", k);
                    if (body_has(calls[i], want)) seen[k - 1]++;
                }
                dyn_call_free(calls[i]);
            }
            for (i = 0; i < 6; i++) CHECK_EQ_INT(seen[i], 1);
            dyn_http_get_stats(http, &st);
            if (!reverse && round == 1) CHECK(st.waits - before.waits <= 2);
            CHECK(st.waits - before.waits <= 7);
        }
        dyn_http_get_stats(http, &st);
        CHECK_EQ_INT(st.connections, 6);
        dyn_http_destroy(http);
        dyn_call_config_free(&cfg);
        server_stop(&srv);
    }
}

TEST(runner_retries_with_backoff) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_http_stats st;
    struct dyn_call *call;
    int64_t t0;
    CHECK(server_start(&srv, M_FLAKY, 2) == 0);
    config(&cfg, srv.url, 4);
    http = driver(5000, 2);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    t0 = mono_ms();
    CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
    CHECK(mono_ms() - t0 >= 12 + 25); /* both backoffs were honoured */
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK_EQ_INT(dyn_call_attempts(call), 3);
    CHECK(body_has(call, "\"ok\":true"));
    CHECK_EQ_STR(dyn_call_error(call)->request_id, "req-3");
    dyn_http_get_stats(http, &st);
    CHECK_EQ_INT(st.requests, 3);
    CHECK_EQ_INT(st.retries, 2);
    CHECK_EQ_INT(st.connections, 1);
    dyn_call_free(call);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

TEST(error_headers_are_captured) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_call *calls[2];
    const struct dyn_error *e;
    CHECK(server_start(&srv, M_ERROR, 0) == 0);
    config(&cfg, srv.url, 4);
    http = driver(5000, 2);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &calls[0]), DYN_OK);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &calls[1]), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, calls, 2), DYN_OK);
    e = dyn_call_error(calls[0]);
    CHECK_EQ_INT(e->status, DYN_EAWS);
    CHECK_EQ_STR(e->aws_type, "ResourceNotFoundException");
    CHECK_EQ_STR(e->message, "Requested resource not found");
    CHECK(strncmp(e->request_id, "req-", 4) == 0);
    CHECK_EQ_INT(e->http_status, 400);
    CHECK_EQ_INT(e->attempts, 1);
    CHECK_EQ_INT(dyn_call_status(calls[1]), DYN_EAWS);
    dyn_call_free(calls[0]);
    dyn_call_free(calls[1]);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

TEST(bad_checksum_is_retried_then_reported) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_call *call;
    CHECK(server_start(&srv, M_BADCRC, 0) == 0);
    config(&cfg, srv.url, 2);
    http = driver(5000, 1);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
    CHECK_EQ_INT(dyn_call_status(call), DYN_ECRC);
    CHECK_EQ_INT(dyn_call_attempts(call), 2);
    CHECK_EQ_INT(dyn_call_error(call)->retry_class, DYN_RETRY_TRANSIENT);
    dyn_call_free(call);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

TEST(connection_refused_is_etransport) {
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_call *call;
    struct dyn_http_stats st;
    char url[64];
    int port = 0, fd = listen_on_free_port(&port);
    CHECK(fd >= 0);
    close(fd); /* nothing listens there now */
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    config(&cfg, url, 3);
    http = driver(5000, 2);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("ListTables"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
    CHECK_EQ_INT(dyn_call_status(call), DYN_ETRANSPORT);
    CHECK_EQ_INT(dyn_call_error(call)->attempts, 3);
    CHECK_EQ_INT(dyn_call_error(call)->http_status, 0);
    CHECK_EQ_INT(dyn_call_error(call)->retry_class, DYN_RETRY_TRANSIENT);
    CHECK(dyn_call_error(call)->message[0] != '\0');
    CHECK(strstr(dyn_call_error(call)->message, "secret") == NULL);
    dyn_http_get_stats(http, &st);
    CHECK_EQ_INT(st.requests, 3);
    CHECK_EQ_INT(st.retries, 2);
    dyn_call_free(call);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
}

TEST(silent_server_is_etimeout) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_call *call;
    int64_t t0, elapsed;
    CHECK(server_start(&srv, M_SILENT, 0) == 0);
    config(&cfg, srv.url, 2);
    s_r = 0.0;
    http = driver(200, 1);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    t0 = mono_ms();
    CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
    elapsed = mono_ms() - t0;
    CHECK_EQ_INT(dyn_call_status(call), DYN_ETIMEOUT);
    CHECK_EQ_INT(dyn_call_error(call)->attempts, 2);
    CHECK(elapsed >= 390 && elapsed < 3000);
    dyn_call_free(call);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

TEST(finished_and_unsignable_calls_need_no_transfer) {
    struct dyn_call_config cfg, nocreds;
    struct dyn_http *http;
    struct dyn_http_stats st;
    struct dyn_call *calls[2];
    struct dyn_http_config bad;
    struct dyn_http *none = (struct dyn_http *)&bad;
    config(&cfg, "http://127.0.0.1:9", 1);
    CHECK_EQ_INT(dyn_call_config_init(&nocreds, NULL, "http://127.0.0.1:9", "us-east-1"), DYN_OK);
    http = driver(1000, 1);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &calls[0]), DYN_OK);
    CHECK_EQ_INT(dyn_call_new(&nocreds, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &calls[1]), DYN_OK);
    dyn_call_abort(calls[0], DYN_ETRANSPORT, "given up");
    CHECK_EQ_INT(dyn_http_run(http, calls, 2), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, calls, 0), DYN_OK);
    CHECK_EQ_INT(dyn_call_status(calls[0]), DYN_ETRANSPORT);
    CHECK_EQ_INT(dyn_call_status(calls[1]), DYN_EINVAL);
    dyn_http_get_stats(http, &st);
    CHECK_EQ_INT(st.requests, 0);
    dyn_call_free(calls[0]);
    dyn_call_free(calls[1]);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    dyn_call_config_free(&nocreds);
    /* out-of-range driver configs */
    dyn_http_config_default(&bad);
    bad.concurrency = 0;
    CHECK_EQ_INT(dyn_http_new(&bad, NULL, &none), DYN_EINVAL);
    CHECK(none == NULL);
    dyn_http_config_default(&bad);
    bad.timeout_ms = 0;
    CHECK_EQ_INT(dyn_http_new(&bad, NULL, &none), DYN_EINVAL);
    dyn_http_destroy(NULL);
}

TEST(dropped_connection_is_etransport) {
    struct server srv;
    struct dyn_call_config cfg;
    struct dyn_http *http;
    struct dyn_call *call;
    CHECK(server_start(&srv, M_CLOSE, 0) == 0);
    config(&cfg, srv.url, 2);
    s_r = 0.0;
    http = driver(2000, 1);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(dyn_http_run(http, &call, 1), DYN_OK);
    CHECK_EQ_INT(dyn_call_status(call), DYN_ETRANSPORT);
    CHECK_EQ_INT(dyn_call_attempts(call), 2);
    dyn_call_free(call);
    dyn_http_destroy(http);
    dyn_call_config_free(&cfg);
    server_stop(&srv);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(keep_alive_reuses_one_connection);
    RUN(recycled_response_memory_serves_the_next_response);
    RUN(runs_up_to_concurrency_transfers_at_once);
    RUN(many_concurrent_transfers);
    RUN(one_wakeup_for_answers_in_order);
    RUN(runner_retries_with_backoff);
    RUN(error_headers_are_captured);
    RUN(bad_checksum_is_retried_then_reported);
    RUN(connection_refused_is_etransport);
    RUN(silent_server_is_etimeout);
    RUN(finished_and_unsignable_calls_need_no_transfer);
    RUN(dropped_connection_is_etransport);
    return testing_done();
}
