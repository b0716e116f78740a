/* dyn_retry: classification table, full-jitter backoff, x-amz-retry-after, the retry quota, the PRNG. */
#include "dynamo/retry.h"
#include "testing.h"

#include <math.h>

struct class_case {
    long status;
    const char *code;
    int local;
    int want;
};

TEST(classification_table) {
    static const struct class_case cases[] = {
        {200, "", DYN_OK, DYN_RETRY_OK},
        {204, "", DYN_OK, DYN_RETRY_OK},
        {400, "ProvisionedThroughputExceededException", DYN_OK, DYN_RETRY_THROTTLING},
        {400, "ThrottlingException", DYN_OK, DYN_RETRY_THROTTLING},
        {400, "RequestLimitExceeded", DYN_OK, DYN_RETRY_THROTTLING},
        {400, "LimitExceededException", DYN_OK, DYN_RETRY_THROTTLING},
        {400, "TransactionInProgressException", DYN_OK, DYN_RETRY_THROTTLING},
        {400, "TooManyRequestsException", DYN_OK, DYN_RETRY_THROTTLING},
        {400, "SlowDown", DYN_OK, DYN_RETRY_THROTTLING},
        {503, "ThrottlingException", DYN_OK, DYN_RETRY_THROTTLING},
        {429, "", DYN_OK, DYN_RETRY_THROTTLING},
        {500, "", DYN_OK, DYN_RETRY_TRANSIENT},
        {500, "InternalServerError", DYN_OK, DYN_RETRY_TRANSIENT},
        {502, "", DYN_OK, DYN_RETRY_TRANSIENT},
        {503, "", DYN_OK, DYN_RETRY_TRANSIENT},
        {504, "", DYN_OK, DYN_RETRY_TRANSIENT},
        {400, "RequestTimeout", DYN_OK, DYN_RETRY_TRANSIENT},
        {400, "RequestTimeoutException", DYN_OK, DYN_RETRY_TRANSIENT},
        {409, "ReplicatedWriteConflictException", DYN_OK, DYN_RETRY_TRANSIENT},
        {0, "", DYN_ETRANSPORT, DYN_RETRY_TRANSIENT},
        {0, "", DYN_ETIMEOUT, DYN_RETRY_TRANSIENT},
        {200, "", DYN_ECRC, DYN_RETRY_TRANSIENT},
        {400, "ValidationException", DYN_ECRC, DYN_RETRY_TRANSIENT},
        {400, "ValidationException", DYN_OK, DYN_RETRY_CLIENT},
        {400, "ConditionalCheckFailedException", DYN_OK, DYN_RETRY_CLIENT},
        {400, "ResourceNotFoundException", DYN_OK, DYN_RETRY_CLIENT},
        {400, "UnrecognizedClientException", DYN_OK, DYN_RETRY_CLIENT},
        {400, "TransactionCanceledException", DYN_OK, DYN_RETRY_CLIENT},
        {400, "throttlingexception", DYN_OK, DYN_RETRY_CLIENT}, /* codes are case-sensitive */
        {403, "", DYN_OK, DYN_RETRY_CLIENT},
        {404, "", DYN_OK, DYN_RETRY_CLIENT},
        {429, "ValidationException", DYN_OK, DYN_RETRY_CLIENT},
        {501, "", DYN_OK, DYN_RETRY_CLIENT},
        {301, "", DYN_OK, DYN_RETRY_CLIENT},
        {0, "", DYN_EJSON, DYN_RETRY_CLIENT},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dyn_retry_classify(cases[i].status, dyn_slice_cstr(cases[i].code), cases[i].local);
        if (got != cases[i].want)
            fprintf(stderr, "case %u: status %ld code '%s' local %d\n", (unsigned)i, cases[i].status, cases[i].code,
                    cases[i].local);
        CHECK_EQ_INT(got, cases[i].want);
    }
    CHECK_EQ_STR(dyn_retry_class_name(DYN_RETRY_THROTTLING), "throttling");
    CHECK_EQ_STR(dyn_retry_class_name(DYN_RETRY_TRANSIENT), "transient");
    CHECK_EQ_STR(dyn_retry_class_name(DYN_RETRY_CLIENT), "client");
    CHECK_EQ_STR(dyn_retry_class_name(DYN_RETRY_OK), "ok");
    CHECK(dyn_retry_is_throttling_code(DYN_SLICE_LIT("ProvisionedThroughputExceededException")));
    CHECK(!dyn_retry_is_throttling_code(DYN_SLICE_LIT("ProvisionedThroughputExceeded")));
    CHECK(!dyn_retry_is_throttling_code(DYN_SLICE_EMPTY));
}

TEST(defaults) {
    struct dyn_retry_config cfg;
    dyn_retry_config_default(&cfg);
    CHECK_EQ_INT(cfg.max_attempts, 4);
    CHECK_EQ_INT(cfg.transient_base_ms, 25);
    CHECK_EQ_INT(cfg.throttle_base_ms, 1000);
    CHECK_EQ_INT(cfg.cap_ms, 20000);
}

TEST(backoff_exact_values) {
    struct dyn_retry_config cfg;
    dyn_retry_config_default(&cfg);
    /* throttling: r * min(20000, 1000 * 2^(attempt-1)) */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 0.5, -1), 500);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 2, 0.5, -1), 1000);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 3, 0.5, -1), 2000);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 5, 0.5, -1), 8000);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 6, 0.5, -1), 10000); /* capped at 20 s */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 60, 0.25, -1), 5000);
    /* transient: 25 ms base, floor of the product */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 1, 0.5, -1), 12);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 2, 0.5, -1), 25);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 4, 0.75, -1), 150);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 11, 0.9, -1), 18000); /* 25600 -> cap 20000 */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 1, 0.0, -1), 0);
    /* custom bases */
    cfg.transient_base_ms = 100;
    cfg.cap_ms = 300;
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 3, 0.5, -1), 150);
    /* absurd attempt numbers neither overflow nor exceed the cap */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 2000000000, 0.5, -1), 150);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 0, 0.5, -1), 50); /* treated as attempt 1 */
}

TEST(backoff_bounds_with_any_r) {
    struct dyn_retry_config cfg;
    struct dyn_rng rng;
    int attempt, i;
    dyn_retry_config_default(&cfg);
    dyn_rng_seed(&rng, 42);
    for (attempt = 1; attempt <= 12; attempt++) {
        double ceiling_t = 25.0 * (double)(1u << (attempt - 1));
        double ceiling_h = 1000.0 * (double)(1u << (attempt - 1));
        if (ceiling_t > 20000) ceiling_t = 20000;
        if (ceiling_h > 20000) ceiling_h = 20000;
        for (i = 0; i < 200; i++) {
            double r = dyn_rng_next01(&rng);
            uint32_t t = dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, attempt, r, -1);
            uint32_t h = dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, attempt, r, -1);
            CHECK(t < ceiling_t);
            CHECK(h < ceiling_h);
        }
    }
    /* r outside [0, 1) is clamped; NaN counts as 0 */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, -3.0, -1), 0);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 7.0, -1), 999);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, NAN, -1), 0);
}

TEST(retry_after_is_clamped) {
    struct dyn_retry_config cfg;
    dyn_retry_config_default(&cfg);
    /* computed delay 500 (throttling, attempt 1, r 0.5): window [500, 5500] */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 0.5, 2000), 2000);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 0.5, 100), 500);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 0.5, 0), 500);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 0.5, 60000), 5500);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_THROTTLING, 1, 0.5, 5500), 5500);
    /* with r 0 the server's hint still applies, up to 5 s */
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 1, 0.0, 300), 300);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 1, 0.0, 9000), 5000);
    CHECK_EQ_INT(dyn_retry_backoff_ms(&cfg, DYN_RETRY_TRANSIENT, 1, 0.0, INT64_MAX), 5000);
}

TEST(bucket_exhaustion_and_refund) {
    struct dyn_retry_bucket b;
    int i, cost, taken = 0;
    dyn_retry_bucket_init(&b, 0);
    CHECK_EQ_INT(b.capacity, 500);
    CHECK_EQ_INT(b.tokens, 500);
    /* 35 transient retries cost 490; the 36th needs 14 but only 10 are left */
    for (i = 0; i < 35; i++) {
        cost = dyn_retry_bucket_acquire(&b, DYN_RETRY_TRANSIENT);
        CHECK_EQ_INT(cost, 14);
        taken += cost;
    }
    CHECK_EQ_INT(taken, 490);
    CHECK_EQ_INT(b.tokens, 10);
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_TRANSIENT), 0);
    CHECK_EQ_INT(b.tokens, 10); /* a refused retry takes nothing */
    /* throttling retries are cheaper: two fit into 10 */
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_THROTTLING), 5);
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_THROTTLING), 5);
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_THROTTLING), 0);
    CHECK_EQ_INT(b.tokens, 0);
    /* non-retryable classes never take tokens */
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_CLIENT), 0);
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_OK), 0);
    /* success after a retry refunds that retry's cost; success without retry adds 1 */
    dyn_retry_bucket_release(&b, 14);
    CHECK_EQ_INT(b.tokens, 14);
    dyn_retry_bucket_release(&b, 0);
    CHECK_EQ_INT(b.tokens, 15);
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_TRANSIENT), 14);
    CHECK_EQ_INT(b.tokens, 1);
}

TEST(bucket_refund_never_exceeds_capacity) {
    struct dyn_retry_bucket b;
    dyn_retry_bucket_init(&b, 20);
    CHECK_EQ_INT(b.tokens, 20);
    dyn_retry_bucket_release(&b, 0);
    CHECK_EQ_INT(b.tokens, 20);
    CHECK_EQ_INT(dyn_retry_bucket_acquire(&b, DYN_RETRY_THROTTLING), 5);
    dyn_retry_bucket_release(&b, 14);
    CHECK_EQ_INT(b.tokens, 20);
}

TEST(rng_is_deterministic_and_in_range) {
    struct dyn_rng a, b;
    int i, differ = 0;
    double lo = 1.0, hi = 0.0;
    dyn_rng_seed(&a, 7);
    dyn_rng_seed(&b, 7);
    for (i = 0; i < 10000; i++) {
        double x = dyn_rng_next01(&a), y = dyn_rng_next01(&b);
        CHECK(x == y);
        CHECK(x >= 0.0 && x < 1.0);
        if (x < lo) lo = x;
        if (x > hi) hi = x;
    }
    CHECK(lo < 0.01);
    CHECK(hi > 0.99);
    dyn_rng_seed(&b, 8);
    for (i = 0; i < 10; i++)
        if (dyn_rng_next01(&a) != dyn_rng_next01(&b)) differ = 1;
    CHECK(differ);
}

int main(void) {
    RUN(classification_table);
    RUN(defaults);
    RUN(backoff_exact_values);
    RUN(backoff_bounds_with_any_r);
    RUN(retry_after_is_clamped);
    RUN(bucket_exhaustion_and_refund);
    RUN(bucket_refund_never_exceeds_capacity);
    RUN(rng_is_deterministic_and_in_range);
    return testing_done();
}
