/* The sans-IO state machine of one DynamoDB operation; see dynamo/call.h. */
#include "dynamo/call.h"

#include "dynamo/crypto.h"
#include "dynamo/json.h"

#include <stdio.h>

#define S_TARGET_PREFIX "DynamoDB_20120810."
#define S_SERVICE "dynamodb"
#define S_CONTENT_TYPE "application/x-amz-json-1.0"
#define S_OPERATION_MAX 64

enum s_state {
    S_READY,   /* the next dyn_call_next signs and sends */
    S_SENT,    /* a request is out; expecting one feed */
    S_BACKOFF, /* an attempt failed and will be retried; the delay is not drawn yet */
    S_WAITING, /* a WAIT was handed out; the next dyn_call_next sends */
    S_DONE
};

struct dyn_call {
    const struct dyn_allocator *alloc;
    const struct dyn_call_config *cfg;
    struct dyn_random random;
    int state;
    int attempts;
    int max_attempts;   /* cfg->retry.max_attempts unless dyn_call_set_policy says otherwise */
    int use_quota;      /* take retries from cfg->bucket and refund it on success */
    int last_cost;      /* tokens taken by the latest retry, refunded on success */
    int pending_class;  /* class of the failed attempt being retried */
    int64_t retry_after_ms;
    struct dyn_buf target; /* "DynamoDB_20120810.<Op>" */
    struct dyn_buf body;
    struct dyn_buf token;  /* the session token as signed into the current request */
    struct dyn_buf auth;
    char amz_date[17];
    struct dyn_header headers[8];
    size_t n_headers;
    struct dyn_buf response;
    struct dyn_error error;
};

/* ---- small helpers ---- */

/* A plain memset may be dropped before free(); the volatile pointer keeps it. */
static void s_wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    while (n--) *v++ = 0;
}

static void s_buf_wipe_free(struct dyn_buf *b) {
    if (b->ptr) s_wipe(b->ptr, b->cap);
    dyn_buf_free(b);
}

static char s_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static int s_ieq(dyn_slice a, const char *b) {
    size_t i, n = strlen(b);
    if (a.len != n) return 0;
    for (i = 0; i < n; i++)
        if (s_lower(a.ptr[i]) != b[i]) return 0;
    return 1;
}

static dyn_slice s_trim(dyn_slice s) {
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t' || s.ptr[s.len - 1] == '\r' ||
                     s.ptr[s.len - 1] == '\n'))
        s.len--;
    return s;
}

/* Value of the first header named `name` (lowercase), trimmed; found = 0 if absent. */
static dyn_slice s_find_header(const struct dyn_header *headers, size_t n, const char *name, int *found) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (s_ieq(headers[i].name, name)) {
            *found = 1;
            return s_trim(headers[i].value);
        }
    }
    *found = 0;
    return DYN_SLICE_EMPTY;
}

/* Strict unsigned decimal, at most max; -1 when malformed. */
static int64_t s_parse_uint(dyn_slice s, int64_t max) {
    int64_t v = 0;
    size_t i;
    if (s.len == 0 || s.len > 18) return -1;
    for (i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') return -1;
        v = v * 10 + (s.ptr[i] - '0');
    }
    return v > max ? -1 : v;
}

/* Drops a multi-byte UTF-8 sequence cut short at the end of dst[0..n). */
static size_t s_utf8_trim_tail(const char *dst, size_t n) {
    size_t i = n, need;
    unsigned char lead;
    while (i > 0 && ((unsigned char)dst[i - 1] & 0xC0) == 0x80 && n - i < 3) i--;
    if (i == 0) return n;
    lead = (unsigned char)dst[i - 1];
    if (lead < 0x80) return n;
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (n - (i - 1)) < need ? i - 1 : n;
}

/*
 * Copies src into the fixed field dst[cap], truncating on a UTF-8 boundary and
 * replacing every occurrence of a secret (secret key, session token) by
 * "***". Working on the full source before truncating means a secret cut by
 * the field's end cannot leak its prefix either.
 */
static void s_set_field(const struct dyn_call *call, char *dst, size_t cap, dyn_slice src) {
    const struct dyn_buf *secrets[3];
    size_t n = 0, i = 0, k;
    int truncated = 0;
    secrets[0] = &call->cfg->secret_key;
    secrets[1] = &call->cfg->session_token;
    secrets[2] = &call->token;
    while (i < src.len) {
        int hit = 0;
        for (k = 0; k < 3; k++) {
            const struct dyn_buf *s = secrets[k];
            if (s->len && s->len <= src.len - i && memcmp(src.ptr + i, s->ptr, s->len) == 0) {
                hit = 1;
                if (n + 3 > cap - 1) {
                    truncated = 1;
                } else {
                    memcpy(dst + n, "***", 3);
                    n += 3;
                }
                i += s->len;
                break;
            }
        }
        if (truncated) break;
        if (hit) continue;
        if (n + 1 > cap - 1) {
            truncated = 1;
            break;
        }
        dst[n++] = src.ptr[i++];
    }
    if (truncated) n = s_utf8_trim_tail(dst, n);
    dst[n] = '\0';
}

static void s_set_message(struct dyn_call *call, const char *msg) {
    s_set_field(call, call->error.message, sizeof call->error.message, dyn_slice_cstr(msg));
}

/* Smithy's rule: keep the text before the first ':', then the text after the first '#'. */
static dyn_slice s_sanitize_code(dyn_slice code) {
    const char *colon, *hash;
    if (code.len == 0) return DYN_SLICE_EMPTY;
    colon = memchr(code.ptr, ':', code.len);
    if (colon) code.len = (size_t)(colon - code.ptr);
    hash = memchr(code.ptr, '#', code.len);
    if (hash) {
        code.len -= (size_t)(hash + 1 - code.ptr);
        code.ptr = hash + 1;
    }
    return s_trim(code);
}

/* ---- endpoint and config ---- */

static int s_bad_url_char(unsigned char c) {
    return c <= 0x20 || c == 0x7f || c == '@' || c == '?' || c == '#' || c == '\\';
}

int dyn_endpoint_parse(const char *url, struct dyn_endpoint *out) {
    const char *p, *auth, *auth_end, *host_end, *path;
    size_t host_len, path_len, i;
    int default_port, port = 0, explicit_port = 0;
    if (!url || !out) return DYN_EINVAL;
    memset(out, 0, sizeof *out);
    for (i = 0; url[i]; i++)
        if (s_bad_url_char((unsigned char)url[i])) return DYN_EINVAL;
    if (s_ieq(dyn_slice_make(url, strlen(url) < 7 ? strlen(url) : 7), "http://")) {
        memcpy(out->scheme, "http", 5);
        default_port = 80;
        auth = url + 7;
    } else if (s_ieq(dyn_slice_make(url, strlen(url) < 8 ? strlen(url) : 8), "https://")) {
        memcpy(out->scheme, "https", 6);
        default_port = 443;
        auth = url + 8;
    } else {
        return DYN_EINVAL;
    }
    auth_end = strchr(auth, '/');
    if (!auth_end) auth_end = auth + strlen(auth);
    if (auth[0] == '[') {
        host_end = memchr(auth, ']', (size_t)(auth_end - auth));
        if (!host_end || host_end == auth + 1) return DYN_EINVAL;
        host_end++;
    } else {
        host_end = memchr(auth, ':', (size_t)(auth_end - auth));
        if (!host_end) host_end = auth_end;
    }
    host_len = (size_t)(host_end - auth);
    if (host_len == 0 || host_len >= sizeof out->host) return DYN_EINVAL;
    if (host_end < auth_end) {
        if (*host_end != ':' || host_end + 1 == auth_end || auth_end - host_end > 6) return DYN_EINVAL;
        for (p = host_end + 1; p < auth_end; p++) {
            if (*p < '0' || *p > '9') return DYN_EINVAL;
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535) return DYN_EINVAL;
        explicit_port = 1;
    }
    path = *auth_end ? auth_end : "/";
    path_len = strlen(path);
    if (path_len >= sizeof out->path) return DYN_EINVAL;
    memcpy(out->host, auth, host_len);
    memcpy(out->path, path, path_len + 1);
    out->port = explicit_port ? port : default_port;
    if (explicit_port && port != default_port)
        snprintf(out->host_header, sizeof out->host_header, "%s:%d", out->host, port);
    else
        snprintf(out->host_header, sizeof out->host_header, "%s", out->host);
    snprintf(out->url, sizeof out->url, "%s://%s%s", out->scheme, out->host_header, out->path);
    return DYN_OK;
}

int dyn_call_config_init(struct dyn_call_config *cfg, const struct dyn_allocator *alloc, const char *endpoint_url,
                         const char *region) {
    size_t i, n;
    int rc;
    memset(cfg, 0, sizeof *cfg);
    cfg->alloc = alloc ? alloc : dyn_default_allocator();
    dyn_buf_init(&cfg->access_key, cfg->alloc);
    dyn_buf_init(&cfg->secret_key, cfg->alloc);
    dyn_buf_init(&cfg->session_token, cfg->alloc);
    dyn_retry_config_default(&cfg->retry);
    /* Distinct configs get distinct jitter even before anyone reseeds them. */
    dyn_rng_seed(&cfg->rng, (uint64_t)(uintptr_t)cfg * UINT64_C(0x9E3779B97F4A7C15));
    cfg->random.fn = dyn_rng_next01;
    cfg->random.ud = &cfg->rng;
    if ((rc = dyn_endpoint_parse(endpoint_url, &cfg->endpoint)) < 0) goto cleanup;
    n = region ? strlen(region) : 0;
    if (n == 0 || n >= sizeof cfg->region) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    for (i = 0; i < n; i++) {
        if ((unsigned char)region[i] <= 0x20 || region[i] == 0x7f || region[i] == '/') {
            rc = DYN_EINVAL;
            goto cleanup;
        }
    }
    memcpy(cfg->region, region, n + 1);
    rc = DYN_OK;
cleanup:
    return rc;
}

int dyn_call_config_set_credentials(struct dyn_call_config *cfg, dyn_slice access_key, dyn_slice secret_key,
                                    dyn_slice session_token) {
    struct dyn_buf ak = DYN_BUF_INIT(cfg->alloc), sk = DYN_BUF_INIT(cfg->alloc), tk = DYN_BUF_INIT(cfg->alloc);
    size_t i;
    int rc = DYN_OK;
    /* Both go out as header values: a control character could split the request. */
    for (i = 0; i < access_key.len; i++) {
        unsigned char c = (unsigned char)access_key.ptr[i];
        /* The access key also goes into the credential scope, where '/' and ',' are separators. */
        if (c <= 0x20 || c == 0x7f || c == '/' || c == ',') rc = DYN_EINVAL;
    }
    for (i = 0; i < session_token.len; i++)
        if ((unsigned char)session_token.ptr[i] < 0x20 || session_token.ptr[i] == 0x7f) rc = DYN_EINVAL;
    if (rc < 0) goto cleanup;
    /* Build all three first so a failure leaves the old credentials in place. */
    if ((rc = dyn_buf_append_slice(&ak, access_key)) < 0) goto cleanup;
    if ((rc = dyn_buf_append_slice(&sk, secret_key)) < 0) goto cleanup;
    if ((rc = dyn_buf_append_slice(&tk, session_token)) < 0) goto cleanup;
    s_buf_wipe_free(&cfg->access_key);
    s_buf_wipe_free(&cfg->secret_key);
    s_buf_wipe_free(&cfg->session_token);
    cfg->access_key = ak;
    cfg->secret_key = sk;
    cfg->session_token = tk;
    dyn_buf_init(&ak, cfg->alloc);
    dyn_buf_init(&sk, cfg->alloc);
    dyn_buf_init(&tk, cfg->alloc);
cleanup:
    s_buf_wipe_free(&ak);
    s_buf_wipe_free(&sk);
    s_buf_wipe_free(&tk);
    return rc;
}

void dyn_call_config_free(struct dyn_call_config *cfg) {
    if (!cfg->alloc) return;
    s_buf_wipe_free(&cfg->access_key);
    s_buf_wipe_free(&cfg->secret_key);
    s_buf_wipe_free(&cfg->session_token);
}

/* ---- the call ---- */

static int s_valid_operation(dyn_slice op) {
    size_t i;
    if (op.len == 0 || op.len > S_OPERATION_MAX) return 0;
    for (i = 0; i < op.len; i++) {
        char c = op.ptr[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return 0;
    }
    return 1;
}

int dyn_call_new(const struct dyn_call_config *cfg, dyn_slice operation, dyn_slice body, struct dyn_call **out) {
    struct dyn_call *call = NULL;
    int rc;
    *out = NULL;
    if (!cfg || !s_valid_operation(operation)) return DYN_EINVAL;
    call = dyn_mem_alloc(cfg->alloc, sizeof *call);
    if (!call) return DYN_ENOMEM;
    memset(call, 0, sizeof *call);
    call->alloc = cfg->alloc;
    call->cfg = cfg;
    call->random = cfg->random;
    call->state = S_READY;
    call->retry_after_ms = -1;
    call->max_attempts = cfg->retry.max_attempts;
    call->use_quota = 1;
    dyn_buf_init(&call->target, cfg->alloc);
    dyn_buf_init(&call->body, cfg->alloc);
    dyn_buf_init(&call->token, cfg->alloc);
    dyn_buf_init(&call->auth, cfg->alloc);
    dyn_buf_init(&call->response, cfg->alloc);
    if ((rc = dyn_buf_append_cstr(&call->target, S_TARGET_PREFIX)) < 0) goto cleanup;
    if ((rc = dyn_buf_append_slice(&call->target, operation)) < 0) goto cleanup;
    /* The awsJson protocol wants "{}" for an empty input. */
    if ((rc = dyn_buf_append_slice(&call->body, body.len ? body : DYN_SLICE_LIT("{}"))) < 0) goto cleanup;
    *out = call;
    call = NULL;
cleanup:
    dyn_call_free(call);
    return rc;
}

void dyn_call_set_policy(struct dyn_call *call, int max_attempts, int use_quota) {
    call->max_attempts = max_attempts < 1 ? 1 : max_attempts;
    call->use_quota = use_quota != 0;
}

int64_t dyn_call_retry_after_ms(const struct dyn_call *call) { return call->retry_after_ms; }

void dyn_call_free(struct dyn_call *call) {
    const struct dyn_allocator *alloc;
    if (!call) return;
    alloc = call->alloc;
    dyn_buf_free(&call->target);
    dyn_buf_free(&call->body);
    s_buf_wipe_free(&call->token);
    dyn_buf_free(&call->auth);
    dyn_buf_free(&call->response);
    dyn_mem_free(alloc, call, sizeof *call);
}

void dyn_call_set_random(struct dyn_call *call, struct dyn_random random) { call->random = random; }

static void s_finish_error(struct dyn_call *call, int status, int retry_class);
static void s_clear_error(struct dyn_call *call);

static struct dyn_header s_header(const char *name, dyn_slice value) {
    struct dyn_header h;
    h.name = dyn_slice_cstr(name);
    h.value = value;
    return h;
}

/* Signs a fresh request into the call's buffers and describes it in step. */
static int s_sign(struct dyn_call *call, int64_t now_unix_ms, struct dyn_step *step) {
    const struct dyn_call_config *cfg = call->cfg;
    struct dyn_header signed_headers[5];
    struct dyn_sigv4_input in;
    size_t n = 0;
    int64_t secs = now_unix_ms >= 0 ? now_unix_ms / 1000 : -((999 - now_unix_ms) / 1000);
    int rc;
    dyn_buf_reset(&call->auth);
    if (call->token.ptr) s_wipe(call->token.ptr, call->token.cap);
    dyn_buf_reset(&call->token);
    if ((rc = dyn_buf_append_slice(&call->token, dyn_buf_slice(&cfg->session_token))) < 0) goto cleanup;
    dyn_sigv4_amz_date(secs, call->amz_date);

    signed_headers[n++] = s_header("host", dyn_slice_cstr(cfg->endpoint.host_header));
    signed_headers[n++] = s_header("content-type", DYN_SLICE_LIT(S_CONTENT_TYPE));
    signed_headers[n++] = s_header("x-amz-date", dyn_slice_make(call->amz_date, 16));
    signed_headers[n++] = s_header("x-amz-target", dyn_buf_slice(&call->target));
    if (call->token.len) signed_headers[n++] = s_header("x-amz-security-token", dyn_buf_slice(&call->token));

    memset(&in, 0, sizeof in);
    in.method = DYN_SLICE_LIT("POST");
    in.path = dyn_slice_cstr(cfg->endpoint.path);
    in.query = DYN_SLICE_EMPTY;
    in.headers = signed_headers;
    in.n_headers = n;
    in.payload = dyn_buf_slice(&call->body);
    in.region = dyn_slice_cstr(cfg->region);
    in.service = DYN_SLICE_LIT(S_SERVICE);
    in.access_key = dyn_buf_slice(&cfg->access_key);
    in.secret_key = dyn_buf_slice(&cfg->secret_key);
    in.token = dyn_buf_slice(&call->token);
    in.unix_time = secs;
    if ((rc = dyn_sigv4_authorization_cached(&in, cfg->key_cache, &call->auth)) < 0) goto cleanup;

    /* accept-encoding is sent but not signed: proxies may rewrite it, and the
     * CRC-32 must cover undecoded bytes, which "identity" guarantees. */
    n = 0;
    call->headers[n++] = signed_headers[0];
    call->headers[n++] = signed_headers[1];
    call->headers[n++] = signed_headers[3];
    call->headers[n++] = signed_headers[2];
    if (call->token.len) call->headers[n++] = signed_headers[4];
    call->headers[n++] = s_header("accept-encoding", DYN_SLICE_LIT("identity"));
    call->headers[n++] = s_header("authorization", dyn_buf_slice(&call->auth));
    call->n_headers = n;

    step->kind = DYN_STEP_SEND;
    step->wait_ms = 0;
    step->request.method = "POST";
    step->request.url = cfg->endpoint.url;
    step->request.headers = call->headers;
    step->request.n_headers = call->n_headers;
    step->request.body = dyn_buf_slice(&call->body);
cleanup:
    return rc;
}

int dyn_call_next(struct dyn_call *call, int64_t now_unix_ms, struct dyn_step *step) {
    int rc = DYN_OK;
    memset(step, 0, sizeof *step);
    switch (call->state) {
    case S_DONE: step->kind = DYN_STEP_DONE; goto cleanup;
    case S_SENT: rc = DYN_EINVAL; goto cleanup;
    case S_BACKOFF: {
        double r = call->random.fn ? call->random.fn(call->random.ud) : 0.5;
        /* Even a zero delay is a WAIT step: every retry is announced the same way. */
        step->wait_ms = dyn_retry_backoff_ms(&call->cfg->retry, call->pending_class, call->attempts, r,
                                             call->retry_after_ms);
        step->kind = DYN_STEP_WAIT;
        call->state = S_WAITING;
        goto cleanup;
    }
    case S_WAITING:
        /* The driver did the waiting. Comparing against now_unix_ms would tie
         * backoff to the wall clock, which may jump; drivers time waits with
         * their own (monotonic) timers. */
        call->state = S_READY;
        break;
    default: break;
    }
    rc = s_sign(call, now_unix_ms, step);
    if (rc == DYN_EINVAL) {
        /* Unsignable (no credentials yet, a time out of range): no attempt can succeed, so finish now. */
        memset(step, 0, sizeof *step);
        s_clear_error(call);
        s_set_message(call, "cannot sign the request: missing or malformed credentials, or a bad clock");
        s_finish_error(call, DYN_EINVAL, DYN_RETRY_CLIENT);
        step->kind = DYN_STEP_DONE;
        rc = DYN_OK;
        goto cleanup;
    }
    if (rc < 0) goto cleanup;
    call->attempts++;
    call->state = S_SENT;
cleanup:
    return rc;
}

static void s_finish_error(struct dyn_call *call, int status, int retry_class) {
    call->error.status = status;
    call->error.retry_class = retry_class;
    call->error.attempts = call->attempts;
    call->state = S_DONE;
}

/* Retries a failed attempt if its class, the attempt budget and the quota allow; else finishes. */
static void s_decide(struct dyn_call *call, int status, int retry_class, int64_t retry_after_ms) {
    int cost;
    call->error.retry_class = retry_class;
    call->retry_after_ms = retry_after_ms;
    if (retry_class != DYN_RETRY_THROTTLING && retry_class != DYN_RETRY_TRANSIENT) goto finish;
    if (call->attempts >= call->max_attempts) goto finish;
    if (call->cfg->bucket && call->use_quota) {
        cost = dyn_retry_bucket_acquire(call->cfg->bucket, retry_class);
        if (cost == 0) goto finish;
        call->last_cost = cost;
    }
    call->pending_class = retry_class;
    call->state = S_BACKOFF;
    return;
finish:
    s_finish_error(call, status, retry_class);
}

static void s_clear_error(struct dyn_call *call) {
    memset(&call->error, 0, sizeof call->error);
    call->error.attempts = call->attempts;
}

/*
 * Reads code and message of an error document: the code from
 * x-amzn-errortype, else the body's "code", else "__type"; the message from
 * "message" or "Message". Returns DYN_OK or DYN_ENOMEM; absent fields are fine.
 */
static int s_parse_error_doc(struct dyn_call *call, dyn_slice errortype, dyn_slice body, int *have_message) {
    struct dyn_buf tmp = DYN_BUF_INIT(call->alloc);
    dyn_slice code = s_sanitize_code(errortype);
    int rc = DYN_OK;
    *have_message = 0;
    if (code.len == 0 && body.len) {
        rc = dyn_json_get_string(body, "code", &tmp);
        if (rc == DYN_ENOMEM) goto cleanup;
        if (rc != DYN_OK || s_sanitize_code(dyn_buf_slice(&tmp)).len == 0) {
            dyn_buf_reset(&tmp);
            rc = dyn_json_get_string(body, "__type", &tmp);
            if (rc == DYN_ENOMEM) goto cleanup;
        }
        if (rc == DYN_OK) code = s_sanitize_code(dyn_buf_slice(&tmp));
    }
    s_set_field(call, call->error.aws_type, sizeof call->error.aws_type, code);
    dyn_buf_reset(&tmp);
    rc = DYN_OK;
    if (body.len) {
        rc = dyn_json_get_string(body, "message", &tmp);
        if (rc == DYN_EINVAL) {
            dyn_buf_reset(&tmp);
            rc = dyn_json_get_string(body, "Message", &tmp);
        }
        if (rc == DYN_ENOMEM) goto cleanup;
        if (rc == DYN_OK) {
            s_set_field(call, call->error.message, sizeof call->error.message, dyn_buf_slice(&tmp));
            *have_message = 1;
        }
        rc = DYN_OK;
    }
cleanup:
    dyn_buf_free(&tmp);
    return rc;
}

/* dyn_call_feed; `owned` (may be NULL) holds the body and may be taken. */
static int s_feed(struct dyn_call *call, long http_status, const struct dyn_header *headers, size_t n_headers,
                  dyn_slice body, struct dyn_buf *owned) {
    dyn_slice crc_text, request_id, errortype, retry_after;
    int have_crc, have_rid, have_type, have_ra, have_message = 0;
    int64_t retry_after_ms = -1;
    char text[96];
    int rc = DYN_OK;
    if (call->state != S_SENT) return DYN_EINVAL;
    if (!body.ptr) body = DYN_SLICE_EMPTY;
    crc_text = s_find_header(headers, n_headers, "x-amz-crc32", &have_crc);
    request_id = s_find_header(headers, n_headers, "x-amzn-requestid", &have_rid);
    errortype = s_find_header(headers, n_headers, "x-amzn-errortype", &have_type);
    retry_after = s_find_header(headers, n_headers, "x-amz-retry-after", &have_ra);
    if (have_ra) retry_after_ms = s_parse_uint(retry_after, INT64_C(86400000));

    s_clear_error(call);
    call->error.http_status = http_status;
    if (have_rid) s_set_field(call, call->error.request_id, sizeof call->error.request_id, request_id);

    if (have_crc) {
        int64_t want = s_parse_uint(crc_text, INT64_C(0xFFFFFFFF));
        uint32_t got = dyn_crc32(0, body.ptr, body.len);
        if (want < 0 || (uint32_t)want != got) {
            snprintf(text, sizeof text, "x-amz-crc32 mismatch: header %.*s, body %lu",
                     (int)(crc_text.len > 20 ? 20 : crc_text.len), crc_text.ptr, (unsigned long)got);
            s_set_message(call, text);
            s_decide(call, DYN_ECRC, DYN_RETRY_TRANSIENT, retry_after_ms);
            goto cleanup;
        }
    }

    if (http_status >= 200 && http_status < 300) {
        dyn_buf_reset(&call->response);
        if (owned) {
            struct dyn_buf mine = call->response;
            call->response = *owned;
            *owned = mine;
        } else if ((rc = dyn_buf_append_slice(&call->response, body)) < 0) {
            goto cleanup;
        }
        if (call->cfg->bucket && call->use_quota) dyn_retry_bucket_release(call->cfg->bucket, call->last_cost);
        call->error.retry_class = DYN_RETRY_OK;
        call->error.status = DYN_OK;
        call->state = S_DONE;
        goto cleanup;
    }

    if ((rc = s_parse_error_doc(call, have_type ? errortype : DYN_SLICE_EMPTY, body, &have_message)) < 0)
        goto cleanup;
    if (!have_message) {
        snprintf(text, sizeof text, "unexpected http status %ld", http_status);
        s_set_message(call, text);
    }
    s_decide(call, call->error.aws_type[0] ? DYN_EAWS : DYN_EHTTP,
             dyn_retry_classify(http_status, dyn_slice_cstr(call->error.aws_type), DYN_OK), retry_after_ms);
cleanup:
    return rc;
}

int dyn_call_feed(struct dyn_call *call, long http_status, const struct dyn_header *headers, size_t n_headers,
                  dyn_slice body) {
    return s_feed(call, http_status, headers, n_headers, body, NULL);
}

int dyn_call_feed_buf(struct dyn_call *call, long http_status, const struct dyn_header *headers, size_t n_headers,
                      struct dyn_buf *body) {
    return s_feed(call, http_status, headers, n_headers, dyn_buf_slice(body), body);
}

int dyn_call_feed_transport_error(struct dyn_call *call, int status, const char *message) {
    if (call->state != S_SENT) return DYN_EINVAL;
    if (status != DYN_ETIMEOUT) status = DYN_ETRANSPORT;
    s_clear_error(call);
    s_set_message(call, message && *message ? message : dyn_status_str(status));
    s_decide(call, status, dyn_retry_classify(0, DYN_SLICE_EMPTY, status), -1);
    return DYN_OK;
}

void dyn_call_abort(struct dyn_call *call, int status, const char *message) {
    if (call->state == S_DONE) return;
    s_clear_error(call);
    s_set_message(call, message && *message ? message : dyn_status_str(status));
    s_finish_error(call, status < 0 ? status : DYN_EINVAL, DYN_RETRY_CLIENT);
}

int dyn_call_is_done(const struct dyn_call *call) { return call->state == S_DONE; }

int dyn_call_status(const struct dyn_call *call) { return call->state == S_DONE ? call->error.status : DYN_EINVAL; }

dyn_slice dyn_call_body(const struct dyn_call *call) {
    if (call->state != S_DONE || call->error.status != DYN_OK) return DYN_SLICE_EMPTY;
    return dyn_buf_slice(&call->response);
}

void dyn_call_take_body(struct dyn_call *call, struct dyn_buf *out) {
    const struct dyn_allocator *alloc = call->response.alloc;
    *out = call->response;
    dyn_buf_init(&call->response, alloc);
}

const struct dyn_error *dyn_call_error(const struct dyn_call *call) { return &call->error; }

int dyn_call_attempts(const struct dyn_call *call) { return call->attempts; }
