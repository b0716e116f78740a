/*
 * dynamo/retry.h - classify a finished attempt, compute the backoff before the
 * next one, and share a retry quota between the calls of one client.
 *
 * Pure: no I/O, no clock, no global state. Randomness comes from an injected
 * source so every delay is reproducible in tests. The policy is the AWS SDK
 * "standard" mode with DynamoDB tuning (research/dynamodb_wire.md sections
 * 10 and 11):
 *
 *   delay = r * min(cap, base * 2^(attempt - 1)),  r in [0, 1)   (full jitter)
 *
 * with base 25 ms after a transient error, 1000 ms after throttling, cap 20 s;
 * a server's x-amz-retry-after (ms) is honoured, clamped to [delay, delay + 5 s].
 */
#ifndef DYNAMO_RETRY_H
#define DYNAMO_RETRY_H

#include "dynamo/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a finished attempt was. Stored in struct dyn_error.retry_class. */
enum dyn_retry_class {
    DYN_RETRY_OK = 0,         /* 2xx with a good checksum: nothing to retry */
    DYN_RETRY_THROTTLING = 1, /* throttled by the service: retry with the long base */
    DYN_RETRY_TRANSIENT = 2,  /* 5xx, timeouts, broken connections, bad checksum */
    DYN_RETRY_CLIENT = 3      /* anything else: retrying cannot help */
};

/* "ok", "throttling", "transient", "client"; "client" for unknown values. */
const char *dyn_retry_class_name(int retry_class);

/*
 * Classifies one attempt.
 *   http_status: the HTTP status, or 0 when no response arrived;
 *   aws_code:    the error code already stripped of its namespace and suffix
 *                ("ThrottlingException"), may be empty;
 *   local_status: DYN_OK, or DYN_ETRANSPORT / DYN_ETIMEOUT when the transport
 *                failed, DYN_ECRC when x-amz-crc32 did not match the body.
 * Throttling codes win over the HTTP status (DynamoDB throttles with 400);
 * 500/502/503/504 and the request-timeout codes are transient; HTTP 429 with
 * no code counts as throttling; any other non-2xx status is a client error.
 */
int dyn_retry_classify(long http_status, dyn_slice aws_code, int local_status);

/* True for the codes AWS SDKs treat as throttling (ThrottlingException, ...). */
int dyn_retry_is_throttling_code(dyn_slice aws_code);

struct dyn_retry_config {
    int max_attempts;           /* total attempts including the first, >= 1; default 4 */
    uint32_t transient_base_ms; /* default 25 */
    uint32_t throttle_base_ms;  /* default 1000 */
    uint32_t cap_ms;            /* default 20000 */
};

#define DYN_RETRY_DEFAULT_MAX_ATTEMPTS 4
#define DYN_RETRY_DEFAULT_TRANSIENT_BASE_MS 25u
#define DYN_RETRY_DEFAULT_THROTTLE_BASE_MS 1000u
#define DYN_RETRY_DEFAULT_CAP_MS 20000u
/* x-amz-retry-after may push a delay at most this far past the computed one. */
#define DYN_RETRY_AFTER_MAX_EXTRA_MS 5000u

void dyn_retry_config_default(struct dyn_retry_config *cfg);

/*
 * The delay in ms before the attempt that follows failed attempt number
 * `attempt` (1 for the first attempt). r must be in [0, 1); values outside are
 * clamped. retry_after_ms is the server's x-amz-retry-after, or negative when
 * absent. Never overflows: the exponential is computed in floating point and
 * capped before jitter.
 */
uint32_t dyn_retry_backoff_ms(const struct dyn_retry_config *cfg, int retry_class, int attempt, double r,
                              int64_t retry_after_ms);

/* ---- injected randomness ---- */

/* Returns a uniform double in [0, 1). */
typedef double (*dyn_random_fn)(void *ud);

struct dyn_random {
    dyn_random_fn fn;
    void *ud;
};

/* A small deterministic PRNG (splitmix64) usable as a dyn_random source. */
struct dyn_rng {
    uint64_t state;
};

void dyn_rng_seed(struct dyn_rng *rng, uint64_t seed);
/* dyn_random_fn over a struct dyn_rng passed as ud. */
double dyn_rng_next01(void *rng);

/* ---- retry quota (token bucket), one per client ---- */

#define DYN_RETRY_BUCKET_CAPACITY 500
#define DYN_RETRY_COST_TRANSIENT 14
#define DYN_RETRY_COST_THROTTLING 5
/* Added back after a call that succeeded without retrying. */
#define DYN_RETRY_NO_RETRY_INCREMENT 1

/*
 * Every retry takes tokens; when too few are left the call fails instead of
 * retrying, so a client facing a broken service stops amplifying load. Not
 * thread-safe: one bucket belongs to one client driven from one thread.
 */
struct dyn_retry_bucket {
    int capacity;
    int tokens;
};

/* capacity <= 0 selects DYN_RETRY_BUCKET_CAPACITY; the bucket starts full. */
void dyn_retry_bucket_init(struct dyn_retry_bucket *bucket, int capacity);

/*
 * Takes the cost of one retry after an error of class retry_class (14
 * transient, 5 throttling). Returns the tokens taken (> 0), or 0 when the
 * bucket holds fewer than that (then nothing is taken: do not retry) or the
 * class is not retryable.
 */
int dyn_retry_bucket_acquire(struct dyn_retry_bucket *bucket, int retry_class);

/*
 * Called when a call succeeds: gives back last_cost (the tokens its latest
 * retry took), or DYN_RETRY_NO_RETRY_INCREMENT when it did not retry
 * (last_cost 0). Never exceeds the capacity.
 */
void dyn_retry_bucket_release(struct dyn_retry_bucket *bucket, int last_cost);

#ifdef __cplusplus
}
#endif
#endif
