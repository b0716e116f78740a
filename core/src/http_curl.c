/* The libcurl driver; see dynamo/http.h. The only file that includes curl.h. */
#include "dynamo/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <time.h>

/* Response headers the call reads; everything else is skipped unstored. */
enum { H_CRC, H_REQUEST_ID, H_ERROR_TYPE, H_RETRY_AFTER, H_CONTENT_LENGTH, H_COUNT };
static const char *const s_captured[H_COUNT] = {"x-amz-crc32", "x-amzn-requestid", "x-amzn-errortype",
                                                "x-amz-retry-after", "content-length"};

/* A response buffer above this is not kept around for the next transfer (a
   1 MB Query or Scan page is somewhat more than 1 MB of JSON). */
#define S_KEEP_BODY_CAP (4u << 20)
/* Spare response buffers kept between transfers, at most. */
#define S_MAX_SPARES 8
/* A Content-Length above this does not pre-size the body buffer. */
#define S_PRESIZE_MAX (64u << 20)
/* The longest curl_multi_poll sleep, so a clock jump cannot stall a run for long. */
#define S_MAX_POLL_MS 1000

struct s_slot {
    struct dyn_http *http;
    CURL *easy; /* created on first use, then reused: it keeps its TLS session cache */
    struct curl_slist *headers;
    struct dyn_buf body;
    size_t index; /* the call this slot serves */
    uint64_t seq; /* when it started, in transfers started by the driver */
    int busy;
    int oom; /* the body callback ran out of memory */
    char errbuf[CURL_ERROR_SIZE];
    char hval[H_COUNT][128];
    int hset[H_COUNT];
};

/* A socket libcurl asked to watch, and for what (CURL_POLL_IN/OUT/INOUT). */
struct s_watch {
    curl_socket_t fd;
    int what;
    struct s_slot *slot; /* the transfer on it, when curl says */
};

struct dyn_http {
    const struct dyn_allocator *alloc;
    struct dyn_http_config cfg;
    CURLM *multi; /* owns the connection cache shared by every slot */
    /* The multi_socket interface: curl names the sockets to watch and one
       timer, and only the transfer whose socket is ready runs, instead of
       every transfer probing its socket on each wakeup. */
    struct s_watch *watch;
    int nwatch, capwatch;
    /* the poll set of one wait, a snapshot of `watch`: curl may change the
       watch list (and grow it) while the ready sockets are handed to it */
    struct pollfd *pfds;
    int cappfds;
    int64_t timer_at; /* monotonic ms when curl's timer fires; -1: none */
    uint64_t started; /* transfers started */
    struct s_slot *slots;
    struct dyn_buf spares[S_MAX_SPARES]; /* recycled response buffers */
    int nspares;
    int global_init;
    struct dyn_http_stats stats;
};

void dyn_http_config_default(struct dyn_http_config *cfg) {
    cfg->timeout_ms = DYN_HTTP_DEFAULT_TIMEOUT_MS;
    cfg->connect_timeout_ms = DYN_HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->concurrency = DYN_HTTP_DEFAULT_CONCURRENCY;
}

int64_t dyn_http_now_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t s_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int s_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    struct dyn_http *http = userp;
    int i;
    (void)socketp;
    for (i = 0; i < http->nwatch; i++)
        if (http->watch[i].fd == fd) break;
    if (what == CURL_POLL_REMOVE) {
        if (i < http->nwatch) http->watch[i] = http->watch[--http->nwatch];
        return 0;
    }
    if (i == http->nwatch) {
        if (http->nwatch == http->capwatch) {
            int cap = http->capwatch ? http->capwatch * 2 : 16;
            struct s_watch *grown =
                dyn_mem_realloc(http->alloc, http->watch, sizeof *http->watch * (size_t)http->capwatch,
                                sizeof *http->watch * (size_t)cap);
            if (!grown) return -1; /* curl fails the transfer */
            http->watch = grown;
            http->capwatch = cap;
        }
        http->watch[http->nwatch++].fd = fd;
    }
    http->watch[i].what = what;
    http->watch[i].slot = NULL;
    if (easy) {
        char *priv = NULL;
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv)
            http->watch[i].slot = (struct s_slot *)(void *)priv;
    }
    return 0;
}

static int s_on_timer(CURLM *multi, long timeout_ms, void *userp) {
    struct dyn_http *http = userp;
    (void)multi;
    http->timer_at = timeout_ms < 0 ? -1 : s_mono_ms() + timeout_ms;
    return 0;
}

static char s_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

/* ---- libcurl callbacks: plain C, they never reach Lua ---- */

static size_t s_on_header(char *data, size_t size, size_t nitems, void *ud) {
    struct s_slot *slot = ud;
    size_t n = size * nitems, name_len, i, k;
    const char *colon, *v, *end;
    /* A status line starts a new response (after a 100 Continue, say): forget the previous headers. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        memset(slot->hset, 0, sizeof slot->hset);
        return n;
    }
    colon = memchr(data, ':', n);
    if (!colon) return n;
    name_len = (size_t)(colon - data);
    for (k = 0; k < H_COUNT; k++) {
        if (strlen(s_captured[k]) != name_len) continue;
        for (i = 0; i < name_len && s_lower(data[i]) == s_captured[k][i]; i++) {
        }
        if (i != name_len) continue;
        v = colon + 1;
        end = data + n;
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
        i = (size_t)(end - v);
        if (i >= sizeof slot->hval[k]) i = sizeof slot->hval[k] - 1;
        memcpy(slot->hval[k], v, i);
        slot->hval[k][i] = '\0';
        slot->hset[k] = 1;
        if (k == H_CONTENT_LENGTH) {
            /* Room for the whole body at once: no growing copies of a large page. */
            size_t len = 0, j;
            for (j = 0; slot->hval[k][j] >= '0' && slot->hval[k][j] <= '9' && len <= S_PRESIZE_MAX; j++)
                len = len * 10 + (size_t)(slot->hval[k][j] - '0');
            if (j > 0 && !slot->hval[k][j] && len <= S_PRESIZE_MAX) (void)dyn_buf_reserve(&slot->body, len);
        }
        break;
    }
    return n;
}

static size_t s_on_body(char *data, size_t size, size_t nmemb, void *ud) {
    struct s_slot *slot = ud;
    size_t n = size * nmemb;
    /* Returning less than n makes curl fail the transfer with CURLE_WRITE_ERROR. */
    if (dyn_buf_append(&slot->body, data, n) < 0) {
        slot->oom = 1;
        return 0;
    }
    return n;
}

/* ---- setup ---- */

static int s_setup_easy(struct dyn_http *http, struct s_slot *slot) {
    CURL *e = slot->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)slot) != CURLE_OK;
    /* No signals: safe in threaded hosts, and timeouts do not rely on SIGALRM. */
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK;
    /* A whole BatchGetItem response in one read, not 16 KB at a time. curl
       allocates this buffer for every transfer: under 64 KB it comes from and
       goes back to malloc's free lists; at 128 KB each transfer moved the heap
       top (trims and page faults: 1,000 more faults per 20,000 batch reads). */
    bad |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 60L * 1024) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, http->cfg.timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, http->cfg.connect_timeout_ms) != CURLE_OK;
    /* DynamoDB speaks HTTP/1.1; one request per connection at a time keeps connection counts meaningful. */
    bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#endif
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s_on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)slot) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)slot) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slot->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
    return bad ? DYN_ENOMEM : DYN_OK;
}

int dyn_http_new(const struct dyn_http_config *cfg, const struct dyn_allocator *alloc, struct dyn_http **out) {
    struct dyn_http *http = NULL;
    int rc = DYN_OK, i;
    *out = NULL;
    if (!cfg || cfg->timeout_ms < 1 || cfg->connect_timeout_ms < 1 || cfg->concurrency < 1 ||
        cfg->concurrency > DYN_HTTP_MAX_CONCURRENCY)
        return DYN_EINVAL;
    if (!alloc) alloc = dyn_default_allocator();
    http = dyn_mem_alloc(alloc, sizeof *http);
    if (!http) return DYN_ENOMEM;
    memset(http, 0, sizeof *http);
    http->alloc = alloc;
    http->cfg = *cfg;
    /* Reference-counted inside libcurl, so every driver can pair its own init and cleanup. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    http->global_init = 1;
    http->multi = curl_multi_init();
    if (!http->multi) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    /* Keep one idle connection per possible transfer between runs. */
    http->timer_at = -1;
    if (curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, (long)cfg->concurrency) != CURLM_OK ||
        curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, s_on_socket) != CURLM_OK ||
        curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, (void *)http) != CURLM_OK ||
        curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, s_on_timer) != CURLM_OK ||
        curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, (void *)http) != CURLM_OK) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    http->slots = dyn_mem_alloc(alloc, sizeof *http->slots * (size_t)cfg->concurrency);
    if (!http->slots) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    memset(http->slots, 0, sizeof *http->slots * (size_t)cfg->concurrency);
    for (i = 0; i < cfg->concurrency; i++) {
        http->slots[i].http = http;
        dyn_buf_init(&http->slots[i].body, alloc);
    }
    *out = http;
    http = NULL;
cleanup:
    dyn_http_destroy(http);
    return rc;
}

void dyn_http_destroy(struct dyn_http *http) {
    int i;
    if (!http) return;
    if (http->slots) {
        for (i = 0; i < http->cfg.concurrency; i++) {
            struct s_slot *slot = &http->slots[i];
            if (slot->easy) {
                if (slot->busy && http->multi) curl_multi_remove_handle(http->multi, slot->easy);
                curl_easy_cleanup(slot->easy);
            }
            curl_slist_free_all(slot->headers);
            dyn_buf_free(&slot->body);
        }
        dyn_mem_free(http->alloc, http->slots, sizeof *http->slots * (size_t)http->cfg.concurrency);
    }
    for (i = 0; i < http->nspares; i++) dyn_buf_free(&http->spares[i]);
    if (http->multi) curl_multi_cleanup(http->multi);
    dyn_mem_free(http->alloc, http->watch, sizeof *http->watch * (size_t)http->capwatch);
    dyn_mem_free(http->alloc, http->pfds, sizeof *http->pfds * (size_t)http->cappfds);
    if (http->global_init) curl_global_cleanup();
    dyn_mem_free(http->alloc, http, sizeof *http);
}

void dyn_http_get_stats(const struct dyn_http *http, struct dyn_http_stats *out) { *out = http->stats; }

void dyn_http_recycle(struct dyn_http *http, struct dyn_buf *buf) {
    const struct dyn_allocator *alloc = buf->alloc;
    if (buf->cap > 0 && buf->cap <= S_KEEP_BODY_CAP && http->nspares < S_MAX_SPARES &&
        http->nspares < http->cfg.concurrency) {
        dyn_buf_reset(buf);
        http->spares[http->nspares++] = *buf;
    } else {
        dyn_buf_free(buf);
    }
    dyn_buf_init(buf, alloc);
}

/* ---- one transfer ---- */

static void s_release_slot(struct dyn_http *http, struct s_slot *slot) {
    curl_multi_remove_handle(http->multi, slot->easy);
    curl_slist_free_all(slot->headers);
    slot->headers = NULL;
    slot->busy = 0;
    if (slot->body.cap > S_KEEP_BODY_CAP) dyn_buf_free(&slot->body);
    dyn_buf_reset(&slot->body);
}

static int s_start(struct dyn_http *http, struct s_slot *slot, size_t index, const struct dyn_request *req) {
    struct dyn_buf line = DYN_BUF_INIT(http->alloc);
    struct curl_slist *list = NULL, *grown;
    size_t i;
    int rc = DYN_OK, bad = 0;
    if (!slot->easy) {
        slot->easy = curl_easy_init();
        if (!slot->easy) {
            rc = DYN_ENOMEM;
            goto cleanup;
        }
        if ((rc = s_setup_easy(http, slot)) < 0) {
            curl_easy_cleanup(slot->easy);
            slot->easy = NULL;
            goto cleanup;
        }
    }
    for (i = 0; i < req->n_headers + 1; i++) {
        dyn_buf_reset(&line);
        if (i < req->n_headers) {
            if ((rc = dyn_buf_append_slice(&line, req->headers[i].name)) < 0) goto cleanup;
            if ((rc = dyn_buf_append(&line, ": ", 2)) < 0) goto cleanup;
            if ((rc = dyn_buf_append_slice(&line, req->headers[i].value)) < 0) goto cleanup;
        } else if ((rc = dyn_buf_append_cstr(&line, "Expect:")) < 0) {
            /* An empty Expect stops curl waiting for a 100 Continue on large bodies. */
            goto cleanup;
        }
        grown = curl_slist_append(list, line.ptr);
        if (!grown) {
            rc = DYN_ENOMEM;
            goto cleanup;
        }
        list = grown;
    }
    slot->errbuf[0] = '\0';
    slot->oom = 0;
    memset(slot->hset, 0, sizeof slot->hset);
    dyn_buf_reset(&slot->body);
    if (slot->body.cap == 0 && http->nspares > 0) {
        dyn_buf_free(&slot->body);
        slot->body = http->spares[--http->nspares];
    }
    bad |= curl_easy_setopt(slot->easy, CURLOPT_URL, req->url) != CURLE_OK;
    bad |= curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len) != CURLE_OK;
    /* Not copied: the body stays in the call, untouched until this transfer is fed back. */
    bad |= curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDS, req->body.len ? req->body.ptr : "") != CURLE_OK;
    bad |= curl_easy_setopt(slot->easy, CURLOPT_HTTPHEADER, list) != CURLE_OK;
    if (bad || curl_multi_add_handle(http->multi, slot->easy) != CURLM_OK) {
        curl_easy_setopt(slot->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    slot->headers = list;
    list = NULL;
    slot->index = index;
    slot->busy = 1;
    slot->seq = ++http->started;
cleanup:
    curl_slist_free_all(list);
    dyn_buf_free(&line);
    return rc;
}

/* Feeds a finished transfer to its call and frees the slot. */
static int s_complete(struct dyn_http *http, struct s_slot *slot, struct dyn_call *call, CURLcode result) {
    struct dyn_header headers[H_COUNT];
    size_t n = 0, k;
    long status = 0, conns = 0;
    int rc;
    if (curl_easy_getinfo(slot->easy, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK && conns > 0)
        http->stats.connections += (uint64_t)conns;
    if (slot->oom) {
        rc = DYN_ENOMEM;
    } else if (result == CURLE_OK) {
        curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
        for (k = 0; k < H_COUNT; k++) {
            if (!slot->hset[k]) continue;
            headers[n].name = dyn_slice_cstr(s_captured[k]);
            headers[n].value = dyn_slice_cstr(slot->hval[k]);
            n++;
        }
        rc = dyn_call_feed_buf(call, status, headers, n, &slot->body);
    } else {
        rc = dyn_call_feed_transport_error(call, result == CURLE_OPERATION_TIMEDOUT ? DYN_ETIMEOUT : DYN_ETRANSPORT,
                                           slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(result));
    }
    s_release_slot(http, slot);
    return rc;
}

static struct s_slot *s_free_slot(struct dyn_http *http) {
    int i;
    for (i = 0; i < http->cfg.concurrency; i++)
        if (!http->slots[i].busy) return &http->slots[i];
    return NULL;
}

/* ---- the runner ---- */

/* A call of the op being driven: in a transfer, backing off, or about to be advanced. */
struct s_active {
    struct dyn_call *call; /* NULL: free */
    int state;             /* A_READY, A_SENDING, A_WAITING */
    int64_t wake;          /* A_WAITING: monotonic ms its backoff ends */
};
enum { A_READY, A_SENDING, A_WAITING };

/* The driver's status for a libcurl multi failure. */
static int s_multi_status(CURLMcode mc) { return mc == CURLM_OUT_OF_MEMORY ? DYN_ENOMEM : DYN_ETRANSPORT; }

/*
 * The watched socket of the transfer that is `rank`-th in start order among
 * the in_flight ones (0: the oldest, in_flight - 1: the newest), when each
 * of them has exactly one watched socket and every one only waits for an
 * answer; else -1. A server answers in about the order it was asked, so when
 * that answer is in, the ones started before it mostly are too. (Never an
 * idle socket: one could keep the wait asleep until a timeout.)
 */
static int s_reader_by_rank(const struct dyn_http *http, int in_flight, int rank) {
    int i, j;
    if (http->nwatch < 2 || http->nwatch != in_flight || in_flight > 64 || rank < 0 || rank >= in_flight) return -1;
    for (i = 0; i < http->nwatch; i++) {
        const struct s_slot *slot = http->watch[i].slot;
        if (http->watch[i].what != CURL_POLL_IN || !slot || !slot->busy) return -1;
        for (j = 0; j < i; j++)
            if (http->watch[j].slot == slot) return -1;
    }
    for (i = 0; i < http->nwatch; i++) {
        int older = 0;
        for (j = 0; j < http->nwatch; j++)
            if (http->watch[j].slot->seq < http->watch[i].slot->seq) older++;
        if (older == rank) return i;
    }
    return -1;
}

/*
 * Polls the sockets curl watches for up to timeout_ms and hands each ready
 * one to curl. The set is copied first: curl changes it while it runs. With
 * `rank` >= 0 it first sleeps on the socket of the transfer of that rank in
 * start order alone (see s_reader_by_rank; in_flight transfers), then takes
 * whatever else is ready.
 */
static int s_wait(struct dyn_http *http, int timeout_ms, int in_flight, int rank) {
    struct pollfd *fds;
    int nfds = 0, i, ready;
    if (http->nwatch == 0) {
        /* nothing to watch (curl is between steps): sleep until its timer */
        if (timeout_ms > 0) poll(NULL, 0, timeout_ms);
        return DYN_OK;
    }
    if (http->cappfds < http->nwatch) {
        struct pollfd *grown = dyn_mem_realloc(http->alloc, http->pfds, sizeof *http->pfds * (size_t)http->cappfds,
                                               sizeof *http->pfds * (size_t)http->capwatch);
        if (!grown) return DYN_ENOMEM;
        http->pfds = grown;
        http->cappfds = http->capwatch;
    }
    fds = http->pfds;
    if (rank >= 0) {
        int newest = s_reader_by_rank(http, in_flight, rank);
        if (newest >= 0) {
            struct pollfd one;
            one.fd = http->watch[newest].fd;
            one.events = POLLIN;
            one.revents = 0;
            http->stats.waits++;
            ready = poll(&one, 1, timeout_ms);
            if (ready < 0) return errno == EINTR ? DYN_OK : DYN_ETRANSPORT;
            if (ready == 0) return DYN_OK; /* curl's timer or a backoff is due */
            timeout_ms = 0;                /* then take every answer already there */
        }
    }
    for (i = 0; i < http->nwatch; i++) {
        int what = http->watch[i].what;
        fds[nfds].fd = http->watch[i].fd;
        fds[nfds].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
        fds[nfds].revents = 0;
        nfds++;
    }
    if (timeout_ms != 0) http->stats.waits++;
    ready = poll(fds, (nfds_t)nfds, timeout_ms);
    if (ready < 0) return errno == EINTR ? DYN_OK : DYN_ETRANSPORT;
    for (i = 0; i < nfds && ready > 0; i++) {
        int ev = 0, running;
        CURLMcode mc;
        if (!fds[i].revents) continue;
        ready--;
        if (fds[i].revents & (POLLIN | POLLHUP)) ev |= CURL_CSELECT_IN;
        if (fds[i].revents & POLLOUT) ev |= CURL_CSELECT_OUT;
        if (fds[i].revents & (POLLERR | POLLNVAL)) ev |= CURL_CSELECT_ERR;
        mc = curl_multi_socket_action(http->multi, fds[i].fd, ev, &running);
        /* a socket closed by an earlier action in this loop is no longer curl's */
        if (mc != CURLM_OK && mc != CURLM_BAD_SOCKET) return s_multi_status(mc);
    }
    return DYN_OK;
}

/* Drops every transfer in flight. */
static void s_drop_transfers(struct dyn_http *http) {
    int s;
    if (!http->slots) return;
    for (s = 0; s < http->cfg.concurrency; s++)
        if (http->slots[s].busy) s_release_slot(http, &http->slots[s]);
}

/*
 * Runs curl's timer when due and hands each finished transfer to its call.
 * Returns the number completed, or a negative status.
 */
static int s_collect(struct dyn_http *http, struct s_active *act, int *in_flight) {
    CURLMsg *msg;
    CURLMcode mc;
    int left, completed = 0, rc;
    if (http->timer_at >= 0 && http->timer_at <= s_mono_ms()) {
        int running;
        http->timer_at = -1;
        mc = curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (mc != CURLM_OK) return s_multi_status(mc);
    }
    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        struct s_slot *slot;
        char *priv = NULL;
        struct s_active *a;
        if (msg->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        slot = (struct s_slot *)(void *)priv;
        a = &act[slot->index];
        (*in_flight)--;
        completed++;
        a->state = A_READY;
        if ((rc = s_complete(http, slot, a->call, msg->data.result)) < 0) return rc;
    }
    return completed;
}

int dyn_http_drive(struct dyn_http *http, struct dyn_op *op) {
    const int conc = http->cfg.concurrency;
    struct s_active *act;
    int n_act = 0, in_flight = 0, op_idle = 0, rc = DYN_OK, k;
    int64_t op_wake = -1; /* the op said WAIT: ask again at this monotonic time */
    act = dyn_mem_alloc(http->alloc, sizeof *act * (size_t)conc);
    if (!act) {
        op->abort(op, DYN_ENOMEM, dyn_status_str(DYN_ENOMEM));
        return DYN_ENOMEM;
    }
    memset(act, 0, sizeof *act * (size_t)conc);
    for (;;) {
        int64_t mono = s_mono_ms();
        long timeout = S_MAX_POLL_MS;
        int progressed = 0, waiting = 0;

        /* New calls, while a slot is free and the op has work now. */
        while (n_act < conc && !op_idle && (op_wake < 0 || op_wake <= mono)) {
            struct dyn_op_step step;
            op_wake = -1;
            if ((rc = op->next(op, dyn_http_now_unix_ms(), mono, &step)) < 0) goto fail;
            if (step.kind == DYN_OP_SEND) {
                for (k = 0; k < conc && act[k].call; k++) continue;
                act[k].call = step.call;
                act[k].state = A_READY;
                n_act++;
            } else if (step.kind == DYN_OP_WAIT) {
                op_wake = mono + (int64_t)step.wait_ms;
            } else if (step.kind == DYN_OP_IDLE) {
                op_idle = 1;
            } else {
                if (n_act == 0) goto cleanup;
                op_idle = 1; /* an op is done only once its calls are back: wait for them */
            }
            if (step.kind != DYN_OP_SEND) break;
        }
        if (n_act == 0 && op_idle) {
            /* IDLE with nothing in flight cannot change by waiting */
            rc = DYN_EINVAL;
            goto fail;
        }

        /* Advance the calls that can move: a call that starts gets a slot (n_act <= conc). */
        for (k = 0; k < conc; k++) {
            struct s_active *a = &act[k];
            struct dyn_step step;
            if (!a->call || a->state == A_SENDING) continue;
            if (a->state == A_WAITING && a->wake > mono) {
                waiting = 1;
                continue;
            }
            if ((rc = dyn_call_next(a->call, dyn_http_now_unix_ms(), &step)) < 0) goto fail;
            if (step.kind == DYN_STEP_DONE) {
                struct dyn_call *call = a->call;
                a->call = NULL;
                n_act--;
                op_idle = 0;
                op_wake = -1;
                progressed = 1;
                if ((rc = op->feed(op, call, s_mono_ms())) < 0) goto fail;
            } else if (step.kind == DYN_STEP_WAIT) {
                a->state = A_WAITING;
                a->wake = mono + (int64_t)step.wait_ms;
                waiting = 1;
            } else {
                struct s_slot *slot = s_free_slot(http); /* never NULL: calls <= slots */
                rc = slot ? s_start(http, slot, (size_t)k, &step.request) : DYN_EINVAL;
                if (rc < 0) {
                    dyn_call_abort(a->call, rc, dyn_status_str(rc));
                    goto fail;
                }
                a->state = A_SENDING;
                in_flight++;
                http->stats.requests++;
                if (dyn_call_attempts(a->call) > 1) http->stats.retries++;
            }
        }
        if (progressed) continue;

        if (in_flight) {
            if ((rc = s_collect(http, act, &in_flight)) < 0) goto fail;
            if (rc > 0) continue;
        }

        for (k = 0; k < conc; k++) {
            if (act[k].call && act[k].state == A_WAITING) {
                int64_t left_ms = act[k].wake - mono;
                if (left_ms < timeout) timeout = left_ms < 0 ? 0 : (long)left_ms;
            }
        }
        if (op_wake >= 0 && n_act < conc) {
            int64_t left_ms = op_wake - mono;
            if (left_ms < timeout) timeout = left_ms < 0 ? 0 : (long)left_ms;
        }
        if (http->timer_at >= 0) {
            int64_t left_ms = http->timer_at - s_mono_ms();
            if (left_ms < timeout) timeout = left_ms < 0 ? 0 : (long)left_ms;
        }
        /* Sleeps until a socket is ready, curl's timer fires, or the nearest
           backoff ends. Each wakeup is a cold start, so with no call backing
           off it waits for several answers at once: when the op has nothing
           more to start, for the newest (every answer is needed and the
           others are read with it); when every slot is busy, for the middle
           one, so half the slots refill together while the server still has
           the other half to work on. */
        {
            int rank = -1;
            if (!waiting && op_wake < 0 && in_flight == n_act) {
                if (op_idle) rank = in_flight - 1;
                else if (n_act == conc) rank = (in_flight - 1) / 2;
            }
            if ((rc = s_wait(http, (int)timeout, in_flight, rank)) < 0) goto fail;
        }
    }
fail:
    /* Leave nothing half-done: drop in-flight transfers; the op ends its own work. */
    s_drop_transfers(http);
    op->abort(op, rc, dyn_status_str(rc));
cleanup:
    dyn_mem_free(http->alloc, act, sizeof *act * (size_t)conc);
    return rc;
}

/* dyn_http_run's op: the given calls, started in order, each with its own retries. */
struct s_list_op {
    struct dyn_op op;
    struct dyn_call *const *calls;
    size_t n, next, out;
};

static int s_list_next(struct dyn_op *op, int64_t now_unix_ms, int64_t now_mono_ms, struct dyn_op_step *step) {
    struct s_list_op *l = (struct s_list_op *)(void *)op;
    (void)now_unix_ms;
    (void)now_mono_ms;
    memset(step, 0, sizeof *step);
    while (l->next < l->n && dyn_call_is_done(l->calls[l->next])) l->next++;
    if (l->next < l->n) {
        step->kind = DYN_OP_SEND;
        step->call = l->calls[l->next++];
        l->out++;
    } else {
        step->kind = l->out ? DYN_OP_IDLE : DYN_OP_DONE;
    }
    return DYN_OK;
}

static int s_list_feed(struct dyn_op *op, struct dyn_call *call, int64_t now_mono_ms) {
    struct s_list_op *l = (struct s_list_op *)(void *)op;
    (void)call;
    (void)now_mono_ms;
    l->out--;
    return DYN_OK;
}

static void s_list_abort(struct dyn_op *op, int status, const char *message) {
    struct s_list_op *l = (struct s_list_op *)(void *)op;
    size_t i;
    for (i = 0; i < l->n; i++) dyn_call_abort(l->calls[i], status, message);
}

int dyn_http_run(struct dyn_http *http, struct dyn_call *const *calls, size_t n) {
    struct s_list_op l;
    l.op.next = s_list_next;
    l.op.feed = s_list_feed;
    l.op.abort = s_list_abort;
    l.calls = calls;
    l.n = n;
    l.next = 0;
    l.out = 0;
    return dyn_http_drive(http, &l.op);
}
