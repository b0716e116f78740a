/*
 * dynamo/call.h - the sans-IO state machine of one DynamoDB operation.
 *
 * A call turns (operation, JSON body) into signed HTTP requests, reads the
 * responses it is fed, retries with backoff, and ends with a body or an
 * error record. It never does I/O and never reads a clock: any driver (the
 * libcurl runner in dynamo/http.h, or a Lua host transport) runs it:
 *
 *   dyn_call_new(cfg, op, body, &call);
 *   for (;;) {
 *       dyn_call_next(call, now_unix_ms, &step);
 *       if (step.kind == DYN_STEP_DONE) break;
 *       if (step.kind == DYN_STEP_WAIT) { sleep(step.wait_ms); continue; }
 *       ... send step.request ...
 *       dyn_call_feed(call, status, headers, n, body);      or
 *       dyn_call_feed_transport_error(call, DYN_ETIMEOUT, "no answer");
 *   }
 *   dyn_call_status(call) == DYN_OK ? dyn_call_body(call) : dyn_call_error(call)
 *
 * Every attempt is signed afresh (new x-amz-date). Secrets (secret key,
 * session token) never appear in an error record; they are replaced by "***"
 * if a server or transport message echoes them.
 */
#ifndef DYNAMO_CALL_H
#define DYNAMO_CALL_H

#include "dynamo/buf.h"
#include "dynamo/retry.h"
#include "dynamo/sigv4.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- endpoint ---- */

#define DYN_ENDPOINT_HOST_MAX 256
#define DYN_ENDPOINT_PATH_MAX 256

/* An endpoint URL parsed once: http(s)://host[:port][/path]. */
struct dyn_endpoint {
    char scheme[6];                       /* "http" or "https" (lowercased) */
    char host[DYN_ENDPOINT_HOST_MAX];     /* as written; IPv6 literals keep their brackets */
    int port;                             /* explicit, else 80 / 443 */
    char path[DYN_ENDPOINT_PATH_MAX];     /* starts with '/'; "/" when the URL has none */
    char host_header[DYN_ENDPOINT_HOST_MAX + 16]; /* the Host value: host, plus ":port" if not default */
    char url[DYN_ENDPOINT_HOST_MAX + DYN_ENDPOINT_PATH_MAX + 32]; /* normalised URL requests go to */
};

/*
 * Parses url. Rejects (DYN_EINVAL) other schemes, user info, query strings,
 * fragments, empty hosts, bad ports, control characters or spaces, and parts
 * longer than the fixed fields.
 */
int dyn_endpoint_parse(const char *url, struct dyn_endpoint *out);

/* ---- shared configuration ---- */

/*
 * Everything a call needs from its client. Owned by the client and shared by
 * all its calls, which borrow it: it must outlive them, and must not change
 * while a driver runs them. Credentials are read each time a request is
 * signed, so dyn_call_config_set_credentials takes effect at the next attempt.
 */
struct dyn_call_config {
    const struct dyn_allocator *alloc;
    struct dyn_endpoint endpoint;
    char region[64];
    struct dyn_buf access_key;
    struct dyn_buf secret_key;    /* wiped before it is freed */
    struct dyn_buf session_token; /* empty: no x-amz-security-token header */
    struct dyn_retry_config retry;
    struct dyn_retry_bucket *bucket;          /* borrowed; NULL = no retry quota */
    struct dyn_sigv4_key_cache *key_cache;    /* borrowed; NULL = derive the key every time */
    struct dyn_random random;                 /* defaults to &rng below; fn NULL means r = 0.5 */
    struct dyn_rng rng;                       /* seeded from the config's address; reseed for determinism */
};

/*
 * Initialises cfg (retry defaults, empty credentials, no bucket, no cache) and
 * parses the endpoint. Returns DYN_OK, DYN_EINVAL (bad URL, empty or overlong
 * region). alloc NULL means the default allocator. After a failure cfg needs
 * no dyn_call_config_free, though calling it is harmless.
 */
int dyn_call_config_init(struct dyn_call_config *cfg, const struct dyn_allocator *alloc, const char *endpoint_url,
                         const char *region);
/*
 * Replaces the credentials (token may be empty; an empty access key means
 * "none yet" and makes calls end with DYN_EINVAL). Returns DYN_OK, DYN_EINVAL
 * (a space, control character, '/' or ',' in the access key, a control
 * character in the token: both travel as header values) or DYN_ENOMEM; on
 * failure the old credentials are kept.
 */
int dyn_call_config_set_credentials(struct dyn_call_config *cfg, dyn_slice access_key, dyn_slice secret_key,
                                    dyn_slice session_token);
/* Wipes and frees the credentials. */
void dyn_call_config_free(struct dyn_call_config *cfg);

/* ---- the call ---- */

/*
 * An error record with fixed-size fields, so that reporting an error never
 * allocates. Strings are NUL-terminated, truncated on a UTF-8 boundary.
 */
struct dyn_error {
    long http_status;     /* 0 when no response arrived */
    char aws_type[64];    /* "ValidationException" (namespace and ':' suffix removed); "" if none */
    char message[256];
    char request_id[64];  /* x-amzn-RequestId, "" if none */
    int retry_class;      /* enum dyn_retry_class of the last attempt */
    int status;           /* DYN_EAWS, DYN_EHTTP, DYN_ETRANSPORT, DYN_ETIMEOUT, DYN_ECRC, DYN_EINVAL, DYN_ENOMEM */
    int attempts;         /* attempts made */
};

enum dyn_step_kind {
    DYN_STEP_SEND = 1, /* send step.request, then feed the outcome */
    DYN_STEP_WAIT = 2, /* wait step.wait_ms, then call dyn_call_next again */
    DYN_STEP_DONE = 3  /* finished: read the result */
};

struct dyn_request {
    const char *method;               /* "POST" */
    const char *url;                  /* NUL-terminated */
    const struct dyn_header *headers; /* lowercase names; values are NUL-terminated too */
    size_t n_headers;
    dyn_slice body;
};

struct dyn_step {
    int kind;          /* enum dyn_step_kind */
    uint32_t wait_ms;  /* DYN_STEP_WAIT */
    struct dyn_request request; /* DYN_STEP_SEND: borrowed from the call, valid until its next dyn_call_* */
};

struct dyn_call;

/*
 * Creates a call for `operation` ("GetItem": 1-64 ASCII letters and digits)
 * with the JSON `body` (copied; empty means "{}"). cfg is borrowed (see
 * above). Returns DYN_OK, DYN_EINVAL, DYN_ENOMEM; *out is NULL on failure.
 */
int dyn_call_new(const struct dyn_call_config *cfg, dyn_slice operation, dyn_slice body, struct dyn_call **out);
/* Frees the call (NULL is fine). Does not touch the config. */
void dyn_call_free(struct dyn_call *call);

/*
 * Advances the call at wall-clock time now_unix_ms:
 *  - SEND: a freshly signed request; the call now expects one feed;
 *  - WAIT: back off for wait_ms, then call again: the next call sends. The
 *    call trusts its driver to have waited and never compares clocks, since
 *    now_unix_ms is a wall clock that may jump. Every retry is preceded by
 *    exactly one WAIT, possibly of 0 ms;
 *  - DONE: finished (also on every later call).
 * The backoff's random number is drawn here, when the wait starts.
 * A request that cannot be signed (no credentials, a clock outside years
 * 0000-9999) ends the call with status DYN_EINVAL, as a DONE step.
 * Returns DYN_OK, DYN_ENOMEM (the call can be retried or freed), or DYN_EINVAL
 * when a response is still expected.
 */
int dyn_call_next(struct dyn_call *call, int64_t now_unix_ms, struct dyn_step *step);

/*
 * Feeds the response to the last SEND: HTTP status, response headers (names
 * in any case; only x-amz-crc32, x-amzn-requestid, x-amzn-errortype and
 * x-amz-retry-after are read) and the raw body. Checks the CRC-32, parses an
 * error document, classifies, and decides to retry or finish. Returns DYN_OK,
 * DYN_EINVAL (no request outstanding), DYN_ENOMEM.
 */
int dyn_call_feed(struct dyn_call *call, long http_status, const struct dyn_header *headers, size_t n_headers,
                  dyn_slice body);

/*
 * As dyn_call_feed with the body in a buffer the call may take: a successful
 * body moves into the call without a copy, and *body receives the call's
 * previous (empty) response buffer in exchange. Otherwise *body is untouched.
 */
int dyn_call_feed_buf(struct dyn_call *call, long http_status, const struct dyn_header *headers, size_t n_headers,
                      struct dyn_buf *body);

/*
 * Feeds a failure to get any response: status is DYN_ETRANSPORT or
 * DYN_ETIMEOUT (anything else counts as DYN_ETRANSPORT); message may be NULL.
 * Returns DYN_OK or DYN_EINVAL (no request outstanding).
 */
int dyn_call_feed_transport_error(struct dyn_call *call, int status, const char *message);

/*
 * Ends the call at once with `status` (e.g. DYN_ENOMEM when a driver gives up)
 * and message, unless it is already done. Cannot fail.
 */
void dyn_call_abort(struct dyn_call *call, int status, const char *message);

/*
 * Overrides the retry policy of this call: at most max_attempts attempts (the
 * config's by default; 1 = no retry), and whether its retries take from the
 * config's quota and a success refunds it (1 by default). An operation that
 * retries the work itself (dynamo/batch.h) makes its calls try once, outside
 * the quota, so there is one policy and not two stacked.
 */
void dyn_call_set_policy(struct dyn_call *call, int max_attempts, int use_quota);

/* The server's x-amz-retry-after of the last failed attempt in ms, or -1. */
int64_t dyn_call_retry_after_ms(const struct dyn_call *call);

/* Replaces the random source for this call only (cfg->random by default). */
void dyn_call_set_random(struct dyn_call *call, struct dyn_random random);

int dyn_call_is_done(const struct dyn_call *call);
/* After DONE: DYN_OK or the error status (also in dyn_call_error()->status). */
int dyn_call_status(const struct dyn_call *call);
/* The successful response body; empty before DONE or on error. Borrowed from the call. */
dyn_slice dyn_call_body(const struct dyn_call *call);
/*
 * Moves the response buffer out of the call into *out (which must hold no
 * memory), once the body has been read: its memory can serve another
 * response. dyn_call_body is empty afterwards.
 */
void dyn_call_take_body(struct dyn_call *call, struct dyn_buf *out);
/* The error record (status DYN_OK and empty strings on success). */
const struct dyn_error *dyn_call_error(const struct dyn_call *call);
/* Attempts sent so far. */
int dyn_call_attempts(const struct dyn_call *call);

#ifdef __cplusplus
}
#endif
#endif
