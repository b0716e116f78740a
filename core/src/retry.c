/* Retry classification, full-jitter backoff and the retry quota; see dynamo/retry.h. */
#include "dynamo/retry.h"

#include <math.h>

/* botocore standard mode's _THROTTLED_ERROR_CODES (research note section 10). */
static const char *const s_throttling_codes[] = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
};

/*
 * Transient by code, whatever the status: the timeout codes of standard mode,
 * the one DynamoDB error its model marks retryable, and the server-side
 * failures in case a proxy rewrote their 5xx status.
 */
static const char *const s_transient_codes[] = {
    "RequestTimeout",
    "RequestTimeoutException",
    "ReplicatedWriteConflictException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
};

static int s_in_list(dyn_slice code, const char *const *list, size_t n) {
    size_t i;
    if (code.len == 0) return 0;
    for (i = 0; i < n; i++)
        if (dyn_slice_eq_cstr(code, list[i])) return 1;
    return 0;
}

const char *dyn_retry_class_name(int retry_class) {
    switch (retry_class) {
    case DYN_RETRY_OK: return "ok";
    case DYN_RETRY_THROTTLING: return "throttling";
    case DYN_RETRY_TRANSIENT: return "transient";
    default: return "client";
    }
}

int dyn_retry_is_throttling_code(dyn_slice aws_code) {
    return s_in_list(aws_code, s_throttling_codes, sizeof s_throttling_codes / sizeof s_throttling_codes[0]);
}

int dyn_retry_classify(long http_status, dyn_slice aws_code, int local_status) {
    if (local_status == DYN_ETRANSPORT || local_status == DYN_ETIMEOUT || local_status == DYN_ECRC)
        return DYN_RETRY_TRANSIENT;
    if (local_status != DYN_OK) return DYN_RETRY_CLIENT;
    if (http_status >= 200 && http_status < 300) return DYN_RETRY_OK;
    if (dyn_retry_is_throttling_code(aws_code)) return DYN_RETRY_THROTTLING;
    if (s_in_list(aws_code, s_transient_codes, sizeof s_transient_codes / sizeof s_transient_codes[0]))
        return DYN_RETRY_TRANSIENT;
    switch (http_status) {
    case 500:
    case 502:
    case 503:
    case 504: return DYN_RETRY_TRANSIENT;
    case 429: return aws_code.len == 0 ? DYN_RETRY_THROTTLING : DYN_RETRY_CLIENT;
    default: return DYN_RETRY_CLIENT;
    }
}

void dyn_retry_config_default(struct dyn_retry_config *cfg) {
    cfg->max_attempts = DYN_RETRY_DEFAULT_MAX_ATTEMPTS;
    cfg->transient_base_ms = DYN_RETRY_DEFAULT_TRANSIENT_BASE_MS;
    cfg->throttle_base_ms = DYN_RETRY_DEFAULT_THROTTLE_BASE_MS;
    cfg->cap_ms = DYN_RETRY_DEFAULT_CAP_MS;
}

uint32_t dyn_retry_backoff_ms(const struct dyn_retry_config *cfg, int retry_class, int attempt, double r,
                              int64_t retry_after_ms) {
    double base = retry_class == DYN_RETRY_THROTTLING ? (double)cfg->throttle_base_ms : (double)cfg->transient_base_ms;
    double ceiling, delay;
    uint32_t out;
    if (attempt < 1) attempt = 1;
    if (!(r >= 0.0)) r = 0.0; /* also catches NaN */
    if (r >= 1.0) r = nextafter(1.0, 0.0);
    /* Past 2^62 the product is far above any uint32 cap, so stop growing there. */
    ceiling = ldexp(base, attempt > 63 ? 62 : attempt - 1);
    if (ceiling > (double)cfg->cap_ms) ceiling = (double)cfg->cap_ms;
    delay = floor(r * ceiling);
    out = (uint32_t)delay;
    if (retry_after_ms >= 0) {
        uint64_t lo = out, hi = (uint64_t)out + DYN_RETRY_AFTER_MAX_EXTRA_MS;
        uint64_t ra = (uint64_t)retry_after_ms;
        if (ra < lo) ra = lo;
        if (ra > hi) ra = hi;
        out = ra > UINT32_MAX ? UINT32_MAX : (uint32_t)ra;
    }
    return out;
}

void dyn_rng_seed(struct dyn_rng *rng, uint64_t seed) { rng->state = seed; }

double dyn_rng_next01(void *ud) {
    struct dyn_rng *rng = ud;
    uint64_t z = (rng->state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    /* The top 53 bits give every double in [0, 1) that has an exact step of 2^-53. */
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

void dyn_retry_bucket_init(struct dyn_retry_bucket *bucket, int capacity) {
    bucket->capacity = capacity > 0 ? capacity : DYN_RETRY_BUCKET_CAPACITY;
    bucket->tokens = bucket->capacity;
}

int dyn_retry_bucket_acquire(struct dyn_retry_bucket *bucket, int retry_class) {
    int cost;
    if (retry_class == DYN_RETRY_THROTTLING)
        cost = DYN_RETRY_COST_THROTTLING;
    else if (retry_class == DYN_RETRY_TRANSIENT)
        cost = DYN_RETRY_COST_TRANSIENT;
    else
        return 0;
    if (bucket->tokens < cost) return 0;
    bucket->tokens -= cost;
    return cost;
}

void dyn_retry_bucket_release(struct dyn_retry_bucket *bucket, int last_cost) {
    int add = last_cost > 0 ? last_cost : DYN_RETRY_NO_RETRY_INCREMENT;
    bucket->tokens = bucket->tokens > bucket->capacity - add ? bucket->capacity : bucket->tokens + add;
}
