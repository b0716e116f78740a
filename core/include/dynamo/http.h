/*
 * dynamo/http.h - the libcurl driver: runs dyn_call state machines over
 * persistent HTTP connections, several at once.
 *
 * One dyn_http owns a curl multi handle and a pool of `concurrency` reusable
 * easy handles. Connections stay in the multi handle's cache between runs
 * (keep-alive; one TLS handshake serves many requests). TLS peer and host
 * verification are always on. Responses are never decompressed (requests
 * carry accept-encoding: identity) so x-amz-crc32 covers the bytes received.
 *
 * Not thread-safe: one dyn_http is driven by one thread at a time. libcurl
 * callbacks never reach Lua or any caller code.
 */
#ifndef DYNAMO_HTTP_H
#define DYNAMO_HTTP_H

#include "dynamo/call.h"
#include "dynamo/op.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dyn_http_config {
    long timeout_ms;         /* whole transfer (CURLOPT_TIMEOUT_MS), >= 1; default 10000 */
    long connect_timeout_ms; /* CURLOPT_CONNECTTIMEOUT_MS, >= 1; default 3000 */
    int concurrency;         /* transfers in flight at most, 1..1024; default 8 */
};

#define DYN_HTTP_DEFAULT_TIMEOUT_MS 10000L
#define DYN_HTTP_DEFAULT_CONNECT_TIMEOUT_MS 3000L
#define DYN_HTTP_DEFAULT_CONCURRENCY 8
#define DYN_HTTP_MAX_CONCURRENCY 1024

void dyn_http_config_default(struct dyn_http_config *cfg);

/* Counters since dyn_http_new. */
struct dyn_http_stats {
    uint64_t requests;    /* transfers started */
    uint64_t connections; /* new connections opened (sum of CURLINFO_NUM_CONNECTS) */
    uint64_t retries;     /* transfers that were a second or later attempt of their call */
    uint64_t waits;       /* times the driver slept for sockets (one per answer at most) */
};

struct dyn_http;

/*
 * Creates a driver. alloc NULL means the default allocator. Returns DYN_OK,
 * DYN_EINVAL (config out of range), DYN_ENOMEM (also when libcurl cannot
 * initialise). *out is NULL on failure.
 */
int dyn_http_new(const struct dyn_http_config *cfg, const struct dyn_allocator *alloc, struct dyn_http **out);
/* Closes every connection and frees the driver (NULL is fine). */
void dyn_http_destroy(struct dyn_http *http);

/*
 * Drives calls[0..n) (distinct calls) until every one is DONE, with at most `concurrency`
 * transfers in flight. A call's backoff (WAIT) occupies no transfer slot;
 * calls start in array order. Signing uses the wall clock; waits use the
 * monotonic clock. The calls' config must stay unchanged during the run.
 *
 * Returns DYN_OK when every call finished, whatever their own outcome (read
 * each with dyn_call_status). On DYN_ENOMEM (or DYN_EINVAL for a call that
 * was already waiting for a response) every unfinished call is ended with
 * dyn_call_abort and the status is returned.
 */
int dyn_http_run(struct dyn_http *http, struct dyn_call *const *calls, size_t n);

/*
 * Drives an op (dynamo/op.h: a batch, a set of pages) until it is DONE,
 * with at most `concurrency` of its calls active at once; a call backing off
 * holds its place but no connection. Returns DYN_OK when the op finished
 * (its own result says how its work went), else DYN_ENOMEM or DYN_ETRANSPORT
 * (the driver itself failed) after ending the op with op->abort.
 */
int dyn_http_drive(struct dyn_http *http, struct dyn_op *op);

void dyn_http_get_stats(const struct dyn_http *http, struct dyn_http_stats *out);

/*
 * Hands back a response buffer whose body has been read (see
 * dyn_call_take_body): the driver keeps a few for the next responses, so a
 * steady stream of pages reuses memory instead of allocating and freeing a
 * large block per response. *buf is left holding no memory.
 */
void dyn_http_recycle(struct dyn_http *http, struct dyn_buf *buf);

/* Wall-clock milliseconds since the epoch, for drivers that sign requests. */
int64_t dyn_http_now_unix_ms(void);

#ifdef __cplusplus
}
#endif
#endif
