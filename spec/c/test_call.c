/* dyn_call: the sans-IO request state machine, driven with fabricated responses. */
#include "dynamo/call.h"
#include "dynamo/crypto.h"
#include "testing.h"

#include <stdio.h>

#define T0 INT64_C(1704164645000) /* 2024-01-02T03:04:05Z */
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN "FQoGZXIvYXdzEXAMPLETOKEN"

static double s_r = 0.5;
static double fixed_random(void *ud) { return *(double *)ud; }

static struct dyn_retry_bucket s_bucket;
static struct dyn_sigv4_key_cache s_cache;

static void setup(struct dyn_call_config *cfg, const char *token) {
    struct dyn_random rnd;
    CHECK_EQ_INT(dyn_call_config_init(cfg, NULL, "http://127.0.0.1:8000", "us-east-1"), DYN_OK);
    CHECK_EQ_INT(dyn_call_config_set_credentials(cfg, DYN_SLICE_LIT("AKIDEXAMPLE"), DYN_SLICE_LIT(SECRET),
                                                 dyn_slice_cstr(token ? token : "")),
                 DYN_OK);
    dyn_retry_bucket_init(&s_bucket, 0);
    dyn_sigv4_key_cache_init(&s_cache);
    cfg->bucket = &s_bucket;
    cfg->key_cache = &s_cache;
    s_r = 0.5;
    rnd.fn = fixed_random;
    rnd.ud = &s_r;
    cfg->random = rnd;
}

static dyn_slice header(const struct dyn_step *step, const char *name) {
    size_t i;
    for (i = 0; i < step->request.n_headers; i++)
        if (dyn_slice_eq_cstr(step->request.headers[i].name, name)) return step->request.headers[i].value;
    return dyn_slice_make(NULL, 0);
}

static int has_header(const struct dyn_step *step, const char *name) { return header(step, name).ptr != NULL; }

#define CHECK_HEADER(step, name, want)                                   \
    do {                                                                 \
        dyn_slice v_ = header((step), (name));                           \
        CHECK(v_.ptr != NULL);                                           \
        if (v_.ptr) CHECK_EQ_MEM(v_.ptr, v_.len, (want), strlen(want));  \
    } while (0)

/* Feeds status + body with a correct x-amz-crc32 and a request id. */
static int feed(struct dyn_call *call, long status, const char *body) {
    char crc[16];
    struct dyn_header h[2];
    snprintf(crc, sizeof crc, "%lu", (unsigned long)dyn_crc32(0, body, strlen(body)));
    h[0].name = DYN_SLICE_LIT("X-Amz-Crc32");
    h[0].value = dyn_slice_cstr(crc);
    h[1].name = DYN_SLICE_LIT("x-amzn-RequestId");
    h[1].value = DYN_SLICE_LIT("REQ123");
    return dyn_call_feed(call, status, h, 2, dyn_slice_cstr(body));
}

static int step_kind(struct dyn_call *call, int64_t now, struct dyn_step *step) {
    CHECK_EQ_INT(dyn_call_next(call, now, step), DYN_OK);
    return step->kind;
}

TEST(success_first_try_with_signed_headers) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    struct dyn_sigv4_input in;
    struct dyn_header sh[4];
    struct dyn_buf want = DYN_BUF_INIT(dyn_default_allocator());
    const char *body = "{\"TableName\":\"users\"}";
    dyn_slice auth;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), dyn_slice_cstr(body), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_STR(step.request.method, "POST");
    CHECK_EQ_STR(step.request.url, "http://127.0.0.1:8000/");
    CHECK_EQ_MEM(step.request.body.ptr, step.request.body.len, body, strlen(body));
    CHECK_HEADER(&step, "host", "127.0.0.1:8000");
    CHECK_HEADER(&step, "content-type", "application/x-amz-json-1.0");
    CHECK_HEADER(&step, "x-amz-target", "DynamoDB_20120810.GetItem");
    CHECK_HEADER(&step, "x-amz-date", "20240102T030405Z");
    CHECK_HEADER(&step, "accept-encoding", "identity");
    CHECK(!has_header(&step, "x-amz-security-token"));
    CHECK_EQ_INT(step.request.n_headers, 6);

    /* The authorization equals an independent signature over the same signed headers. */
    sh[0].name = DYN_SLICE_LIT("host");
    sh[0].value = DYN_SLICE_LIT("127.0.0.1:8000");
    sh[1].name = DYN_SLICE_LIT("content-type");
    sh[1].value = DYN_SLICE_LIT("application/x-amz-json-1.0");
    sh[2].name = DYN_SLICE_LIT("x-amz-date");
    sh[2].value = DYN_SLICE_LIT("20240102T030405Z");
    sh[3].name = DYN_SLICE_LIT("x-amz-target");
    sh[3].value = DYN_SLICE_LIT("DynamoDB_20120810.GetItem");
    memset(&in, 0, sizeof in);
    in.method = DYN_SLICE_LIT("POST");
    in.path = DYN_SLICE_LIT("/");
    in.query = DYN_SLICE_EMPTY;
    in.headers = sh;
    in.n_headers = 4;
    in.payload = dyn_slice_cstr(body);
    in.region = DYN_SLICE_LIT("us-east-1");
    in.service = DYN_SLICE_LIT("dynamodb");
    in.access_key = DYN_SLICE_LIT("AKIDEXAMPLE");
    in.secret_key = DYN_SLICE_LIT(SECRET);
    in.token = DYN_SLICE_EMPTY;
    in.unix_time = T0 / 1000;
    CHECK_EQ_INT(dyn_sigv4_authorization(&in, &want), DYN_OK);
    auth = header(&step, "authorization");
    CHECK_EQ_MEM(auth.ptr, auth.len, want.ptr, want.len);
    CHECK(strstr(want.ptr, "Credential=AKIDEXAMPLE/20240102/us-east-1/dynamodb/aws4_request") != NULL);
    CHECK(strstr(want.ptr, "SignedHeaders=content-type;host;x-amz-date;x-amz-target") != NULL);

    CHECK_EQ_INT(feed(call, 200, "{\"Item\":{}}"), DYN_OK);
    CHECK(dyn_call_is_done(call));
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_DONE);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_DONE); /* stays done */
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK_EQ_MEM(dyn_call_body(call).ptr, dyn_call_body(call).len, "{\"Item\":{}}", 11);
    CHECK_EQ_INT(dyn_call_attempts(call), 1);
    CHECK_EQ_INT(dyn_call_error(call)->retry_class, DYN_RETRY_OK);
    CHECK_EQ_INT(s_bucket.tokens, 500); /* +1 for a success without retry, capped */
    dyn_buf_free(&want);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

/* A body in a buffer: an error response leaves it alone, a success moves it
   into the call without a copy, and take_body moves it out again. */
TEST(feed_buf_takes_a_successful_body_without_copying) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    struct dyn_buf body = DYN_BUF_INIT(NULL), taken;
    const char *ok = "{\"Item\":{\"a\":{\"S\":\"b\"}}}";
    const char *err = "{\"__type\":\"com.amazonaws.dynamodb.v20120810#InternalServerError\"}";
    char *bytes;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(dyn_buf_append(&body, err, strlen(err)), DYN_OK);
    bytes = body.ptr;
    CHECK_EQ_INT(dyn_call_feed_buf(call, 500, NULL, 0, &body), DYN_OK);
    CHECK(body.ptr == bytes); /* untouched */
    CHECK_EQ_INT(body.len, strlen(err));
    CHECK_EQ_INT(step_kind(call, T0 + 100, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step_kind(call, T0 + 2000, &step), DYN_STEP_SEND);
    dyn_buf_reset(&body);
    CHECK_EQ_INT(dyn_buf_append(&body, ok, strlen(ok)), DYN_OK);
    bytes = body.ptr;
    CHECK_EQ_INT(dyn_call_feed_buf(call, 200, NULL, 0, &body), DYN_OK);
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK(dyn_call_body(call).ptr == bytes); /* the same memory */
    CHECK_EQ_MEM(dyn_call_body(call).ptr, dyn_call_body(call).len, ok, strlen(ok));
    CHECK(body.ptr != bytes);
    CHECK_EQ_INT(body.len, 0);
    dyn_call_take_body(call, &taken);
    CHECK(taken.ptr == bytes);
    CHECK_EQ_INT(taken.len, strlen(ok));
    CHECK_EQ_INT(dyn_call_body(call).len, 0);
    dyn_buf_free(&taken);
    dyn_buf_free(&body);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(server_error_then_success_resigns) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    char first_auth[512];
    dyn_slice a;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("PutItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    a = header(&step, "authorization");
    CHECK(a.len < sizeof first_auth);
    memcpy(first_auth, a.ptr, a.len);
    first_auth[a.len] = '\0';
    CHECK_EQ_INT(feed(call, 500, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#InternalServerError\"}"), DYN_OK);
    CHECK(!dyn_call_is_done(call));
    CHECK_EQ_INT(s_bucket.tokens, 500 - 14);
    /* transient backoff: 0.5 * 25 ms */
    CHECK_EQ_INT(step_kind(call, T0 + 100, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step.wait_ms, 12);
    /* the retry is signed afresh with the new time */
    CHECK_EQ_INT(step_kind(call, T0 + 2000, &step), DYN_STEP_SEND);
    CHECK_HEADER(&step, "x-amz-date", "20240102T030407Z");
    a = header(&step, "authorization");
    CHECK(!dyn_slice_eq_cstr(a, first_auth));
    CHECK_EQ_INT(feed(call, 200, "{}"), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0 + 2000, &step), DYN_STEP_DONE);
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK_EQ_INT(dyn_call_attempts(call), 2);
    CHECK_EQ_INT(s_bucket.tokens, 500); /* the retry's 14 tokens come back */
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(throttling_three_times_then_success_with_exact_waits) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    int64_t now = T0;
    uint32_t waits[3];
    int i;
    const char *throttled = "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException\","
                            "\"message\":\"The level of configured provisioned throughput was exceeded\"}";
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("Query"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    for (i = 0; i < 3; i++) {
        CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_SEND);
        CHECK_EQ_INT(feed(call, 400, throttled), DYN_OK);
        CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_WAIT);
        waits[i] = step.wait_ms;
        now += step.wait_ms;
    }
    CHECK_EQ_INT(waits[0], 500);
    CHECK_EQ_INT(waits[1], 1000);
    CHECK_EQ_INT(waits[2], 2000);
    CHECK_EQ_INT(s_bucket.tokens, 500 - 3 * 5);
    CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(feed(call, 200, "{\"Count\":0}"), DYN_OK);
    CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_DONE);
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK_EQ_INT(dyn_call_attempts(call), 4);
    CHECK_EQ_INT(s_bucket.tokens, 500 - 3 * 5 + 5);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(retry_after_header_is_honoured) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    struct dyn_header h[2];
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("Query"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    h[0].name = DYN_SLICE_LIT("x-amzn-errortype");
    h[0].value = DYN_SLICE_LIT("ThrottlingException");
    h[1].name = DYN_SLICE_LIT("X-Amz-Retry-After");
    h[1].value = DYN_SLICE_LIT(" 3000 ");
    CHECK_EQ_INT(dyn_call_feed(call, 400, h, 2, DYN_SLICE_EMPTY), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step.wait_ms, 3000);
    CHECK_EQ_INT(step_kind(call, T0 + 3000, &step), DYN_STEP_SEND);
    h[1].value = DYN_SLICE_LIT("999999");
    CHECK_EQ_INT(dyn_call_feed(call, 400, h, 2, DYN_SLICE_EMPTY), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0 + 3000, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step.wait_ms, 1000 + 5000); /* clamped to the computed delay + 5 s */
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(crc_mismatch_is_retried) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    struct dyn_header h;
    const char *body = "{\"Item\":{\"pk\":{\"S\":\"a\"}}}";
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    h.name = DYN_SLICE_LIT("x-amz-crc32");
    h.value = DYN_SLICE_LIT("12345");
    CHECK_EQ_INT(dyn_call_feed(call, 200, &h, 1, dyn_slice_cstr(body)), DYN_OK);
    CHECK(!dyn_call_is_done(call));
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step.wait_ms, 12);
    CHECK_EQ_INT(step_kind(call, T0 + 12, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(feed(call, 200, body), DYN_OK);
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK_EQ_MEM(dyn_call_body(call).ptr, dyn_call_body(call).len, body, strlen(body));
    CHECK_EQ_INT(dyn_call_attempts(call), 2);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(crc_mismatch_every_time_ends_with_ecrc) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    struct dyn_header h;
    const struct dyn_error *e;
    int64_t now = T0;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    h.name = DYN_SLICE_LIT("x-amz-crc32");
    h.value = DYN_SLICE_LIT("not-a-number");
    while (step_kind(call, now, &step) != DYN_STEP_DONE) {
        if (step.kind == DYN_STEP_WAIT) {
            now += step.wait_ms;
            continue;
        }
        CHECK_EQ_INT(dyn_call_feed(call, 200, &h, 1, DYN_SLICE_LIT("{}")), DYN_OK);
    }
    e = dyn_call_error(call);
    CHECK_EQ_INT(dyn_call_status(call), DYN_ECRC);
    CHECK_EQ_INT(e->status, DYN_ECRC);
    CHECK_EQ_INT(e->retry_class, DYN_RETRY_TRANSIENT);
    CHECK_EQ_INT(e->attempts, 4);
    CHECK_EQ_INT(e->http_status, 200);
    CHECK(strstr(e->message, "x-amz-crc32") != NULL);
    CHECK_EQ_INT(dyn_call_body(call).len, 0);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

struct error_case {
    const char *errortype; /* header or NULL */
    const char *body;
    const char *want_type;
    const char *want_message;
};

TEST(client_errors_surface_at_once_with_code_and_message) {
    static const struct error_case cases[] = {
        {NULL,
         "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ValidationException\",\"message\":\"One or more parameter "
         "values were invalid\"}",
         "ValidationException", "One or more parameter values were invalid"},
        {NULL,
         "{\"__type\":\"com.amazonaws.dynamodb.v20120810#TransactionCanceledException\",\"Message\":\"Transaction "
         "cancelled\"}",
         "TransactionCanceledException", "Transaction cancelled"},
        {"ValidationException:http://internal.amazon.com/coral/com.amazon.coral.validate/",
         "{\"message\":\"from the header\"}", "ValidationException", "from the header"},
        {NULL, "{\"code\":\"ConditionalCheckFailedException\",\"message\":\"The conditional request failed\"}",
         "ConditionalCheckFailedException", "The conditional request failed"},
        {NULL, "{\"__type\":\"ResourceNotFoundException:extra\",\"message\":\"nope\"}", "ResourceNotFoundException",
         "nope"},
        {NULL, "<html>forbidden</html>", "", "unexpected http status 400"},
        {NULL, "", "", "unexpected http status 400"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dyn_call_config cfg;
        struct dyn_call *call;
        struct dyn_step step;
        struct dyn_header h[2];
        const struct dyn_error *e;
        size_t n = 0;
        setup(&cfg, NULL);
        CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("PutItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
        CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
        h[n].name = DYN_SLICE_LIT("x-amzn-requestid");
        h[n++].value = DYN_SLICE_LIT("RID-42");
        if (cases[i].errortype) {
            h[n].name = DYN_SLICE_LIT("X-Amzn-ErrorType");
            h[n++].value = dyn_slice_cstr(cases[i].errortype);
        }
        CHECK_EQ_INT(dyn_call_feed(call, 400, h, n, dyn_slice_cstr(cases[i].body)), DYN_OK);
        CHECK(dyn_call_is_done(call));
        CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_DONE);
        e = dyn_call_error(call);
        if (strcmp(e->aws_type, cases[i].want_type) != 0) fprintf(stderr, "case %u\n", (unsigned)i);
        CHECK_EQ_STR(e->aws_type, cases[i].want_type);
        CHECK_EQ_STR(e->message, cases[i].want_message);
        CHECK_EQ_STR(e->request_id, "RID-42");
        CHECK_EQ_INT(e->status, cases[i].want_type[0] ? DYN_EAWS : DYN_EHTTP);
        CHECK_EQ_INT(e->retry_class, DYN_RETRY_CLIENT);
        CHECK_EQ_INT(e->http_status, 400);
        CHECK_EQ_INT(e->attempts, 1);
        CHECK_EQ_INT(s_bucket.tokens, 500);
        dyn_call_free(call);
        dyn_call_config_free(&cfg);
    }
}

TEST(max_attempts_exhausted_reports_attempts) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    const struct dyn_error *e;
    int64_t now = T0;
    int sends = 0;
    setup(&cfg, NULL);
    cfg.retry.max_attempts = 3;
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("Scan"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    while (step_kind(call, now, &step) != DYN_STEP_DONE) {
        if (step.kind == DYN_STEP_WAIT) {
            now += step.wait_ms;
            continue;
        }
        sends++;
        CHECK_EQ_INT(feed(call, 503, "Service Unavailable"), DYN_OK);
    }
    e = dyn_call_error(call);
    CHECK_EQ_INT(sends, 3);
    CHECK_EQ_INT(e->attempts, 3);
    CHECK_EQ_INT(dyn_call_attempts(call), 3);
    CHECK_EQ_INT(e->status, DYN_EHTTP);
    CHECK_EQ_INT(e->http_status, 503);
    CHECK_EQ_INT(e->retry_class, DYN_RETRY_TRANSIENT);
    CHECK_EQ_STR(e->message, "unexpected http status 503");
    CHECK_EQ_STR(e->request_id, "REQ123");
    CHECK_EQ_INT(s_bucket.tokens, 500 - 2 * 14); /* two retries, no success to refund them */
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(transport_errors_and_timeouts_are_retried) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    const struct dyn_error *e;
    int64_t now = T0;
    setup(&cfg, NULL);
    cfg.retry.max_attempts = 2;
    s_r = 0.0; /* a zero delay is still announced as a WAIT */
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(dyn_call_feed_transport_error(call, DYN_ETRANSPORT, "Connection refused"), DYN_OK);
    CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step.wait_ms, 0);
    CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(dyn_call_feed_transport_error(call, DYN_ETIMEOUT, NULL), DYN_OK);
    CHECK_EQ_INT(step_kind(call, now, &step), DYN_STEP_DONE);
    e = dyn_call_error(call);
    CHECK_EQ_INT(e->status, DYN_ETIMEOUT);
    CHECK_EQ_INT(e->http_status, 0);
    CHECK_EQ_INT(e->retry_class, DYN_RETRY_TRANSIENT);
    CHECK_EQ_INT(e->attempts, 2);
    CHECK_EQ_STR(e->message, "request timed out");
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(empty_bucket_stops_retries) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    setup(&cfg, NULL);
    dyn_retry_bucket_init(&s_bucket, 10); /* less than one transient retry */
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(feed(call, 500, "{}"), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_DONE);
    CHECK_EQ_INT(dyn_call_error(call)->attempts, 1);
    CHECK_EQ_INT(dyn_call_error(call)->retry_class, DYN_RETRY_TRANSIENT);
    CHECK_EQ_INT(s_bucket.tokens, 10);
    dyn_call_free(call);
    /* a throttling retry (5 tokens) still fits */
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(feed(call, 400, "{\"__type\":\"x#ThrottlingException\"}"), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(s_bucket.tokens, 5);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(session_token_is_sent_and_signed) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    dyn_slice auth;
    setup(&cfg, TOKEN);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("ListTables"), DYN_SLICE_EMPTY, &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_HEADER(&step, "x-amz-security-token", TOKEN);
    CHECK_EQ_INT(step.request.n_headers, 7);
    CHECK_EQ_MEM(step.request.body.ptr, step.request.body.len, "{}", 2); /* empty input becomes {} */
    auth = header(&step, "authorization");
    CHECK(auth.ptr != NULL);
    if (auth.ptr) {
        char text[512];
        snprintf(text, sizeof text, "%.*s", (int)auth.len, auth.ptr);
        CHECK(strstr(text, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,") !=
              NULL);
        CHECK(strstr(text, SECRET) == NULL);
    }
    /* new credentials apply to the next attempt */
    s_r = 0.0;
    CHECK_EQ_INT(feed(call, 500, "{}"), DYN_OK);
    CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AKIDOTHER"), DYN_SLICE_LIT("s2"),
                                                 DYN_SLICE_EMPTY),
                 DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0 + 1000, &step), DYN_STEP_WAIT);
    CHECK_EQ_INT(step.wait_ms, 0);
    CHECK_EQ_INT(step_kind(call, T0 + 1000, &step), DYN_STEP_SEND);
    CHECK(!has_header(&step, "x-amz-security-token"));
    auth = header(&step, "authorization");
    CHECK(auth.len > 40 && memcmp(auth.ptr, "AWS4-HMAC-SHA256 Credential=AKIDOTHER/", 38) == 0);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

TEST(no_secret_in_any_error_text) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    const struct dyn_error *e;
    char body[512], msg[256];
    setup(&cfg, TOKEN);
    /* a server that echoes the secret and the token */
    snprintf(body, sizeof body, "{\"__type\":\"x#UnrecognizedClientException\",\"message\":\"bad key " SECRET
                                " with token " TOKEN "\"}");
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(feed(call, 400, body), DYN_OK);
    e = dyn_call_error(call);
    CHECK_EQ_STR(e->message, "bad key *** with token ***");
    CHECK(!contains(e->message, SECRET) && !contains(e->aws_type, SECRET) && !contains(e->request_id, SECRET));
    dyn_call_free(call);

    /* a transport message that carries it */
    cfg.retry.max_attempts = 1;
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    snprintf(msg, sizeof msg, "proxy said %s", SECRET);
    CHECK_EQ_INT(dyn_call_feed_transport_error(call, DYN_ETRANSPORT, msg), DYN_OK);
    e = dyn_call_error(call);
    CHECK_EQ_STR(e->message, "proxy said ***");
    dyn_call_free(call);

    /* a secret straddling the end of the message field is dropped whole */
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    {
        char big[400];
        memset(big, 'a', 250);
        memcpy(big + 250, SECRET, sizeof SECRET); /* with its NUL */
        CHECK_EQ_INT(dyn_call_feed_transport_error(call, DYN_ETRANSPORT, big), DYN_OK);
    }
    e = dyn_call_error(call);
    CHECK_EQ_INT(strlen(e->message), 253);
    CHECK(!contains(e->message, "wJal"));
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(long_messages_truncate_on_utf8_boundary) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    char body[1200];
    size_t n, i;
    const struct dyn_error *e;
    setup(&cfg, NULL);
    n = (size_t)snprintf(body, sizeof body, "{\"__type\":\"x#ValidationException\",\"message\":\"ab");
    for (i = 0; i < 200; i++) n += (size_t)snprintf(body + n, sizeof body - n, "\xc3\xa9"); /* é */
    snprintf(body + n, sizeof body - n, "\"}");
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(feed(call, 400, body), DYN_OK);
    e = dyn_call_error(call);
    /* "ab" + 126 two-byte characters = 254 bytes; the 127th would be split, so it is dropped */
    CHECK_EQ_INT(strlen(e->message), 254);
    CHECK(((unsigned char)e->message[252] & 0xE0) == 0xC0);
    CHECK(((unsigned char)e->message[253] & 0xC0) == 0x80);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(misuse_is_einval) {
    struct dyn_call_config cfg;
    struct dyn_call *call = (struct dyn_call *)&cfg;
    struct dyn_step step;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT(""), DYN_SLICE_EMPTY, &call), DYN_EINVAL);
    CHECK(call == NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("Get Item"), DYN_SLICE_EMPTY, &call), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem\r\nX: y"), DYN_SLICE_EMPTY, &call), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_EMPTY, &call), DYN_OK);
    CHECK_EQ_INT(dyn_call_feed(call, 200, NULL, 0, DYN_SLICE_EMPTY), DYN_EINVAL); /* nothing sent yet */
    CHECK_EQ_INT(dyn_call_feed_transport_error(call, DYN_ETRANSPORT, "x"), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_status(call), DYN_EINVAL); /* not finished */
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    CHECK_EQ_INT(dyn_call_next(call, T0, &step), DYN_EINVAL); /* a response is outstanding */
    CHECK_EQ_INT(dyn_call_feed(call, 200, NULL, 0, DYN_SLICE_EMPTY), DYN_OK);
    CHECK_EQ_INT(dyn_call_feed(call, 200, NULL, 0, DYN_SLICE_EMPTY), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
    CHECK_EQ_INT(dyn_call_body(call).len, 0);
    dyn_call_free(call);
    /* credentials with line breaks would split headers */
    CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AK\r\nX: y"), DYN_SLICE_LIT("s"),
                                                 DYN_SLICE_EMPTY),
                 DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AK"), DYN_SLICE_LIT("s"),
                                                 DYN_SLICE_LIT("tok\n")),
                 DYN_EINVAL);
    CHECK_EQ_MEM(cfg.access_key.ptr, cfg.access_key.len, "AKIDEXAMPLE", 11); /* old ones kept */
    dyn_call_config_free(&cfg);
}

TEST(abort_ends_an_unfinished_call) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_EMPTY, &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
    dyn_call_abort(call, DYN_ENOMEM, NULL);
    CHECK(dyn_call_is_done(call));
    CHECK_EQ_INT(dyn_call_status(call), DYN_ENOMEM);
    CHECK_EQ_STR(dyn_call_error(call)->message, "not enough memory");
    CHECK_EQ_INT(dyn_call_error(call)->attempts, 1);
    dyn_call_abort(call, DYN_ETRANSPORT, "later"); /* no effect once done */
    CHECK_EQ_INT(dyn_call_status(call), DYN_ENOMEM);
    dyn_call_free(call);
    dyn_call_config_free(&cfg);
}

TEST(unsignable_call_ends_with_einval) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "http://127.0.0.1:1", "us-east-1"), DYN_OK);
    CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_EMPTY, &call), DYN_OK);
    CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_DONE); /* no credentials: nothing to send */
    CHECK_EQ_INT(dyn_call_status(call), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_error(call)->attempts, 0);
    CHECK(strstr(dyn_call_error(call)->message, "credentials") != NULL);
    dyn_call_free(call);
    CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AK/1"), DYN_SLICE_LIT("s"), DYN_SLICE_EMPTY),
                 DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AK ID"), DYN_SLICE_LIT("s"), DYN_SLICE_EMPTY),
                 DYN_EINVAL);
    dyn_call_config_free(&cfg);
}

struct endpoint_case {
    const char *url;
    int rc;
    const char *host_header, *full, *path;
    int port;
};

TEST(endpoint_parsing) {
    static const struct endpoint_case cases[] = {
        {"http://127.0.0.1:8000", DYN_OK, "127.0.0.1:8000", "http://127.0.0.1:8000/", "/", 8000},
        {"https://dynamodb.us-east-1.amazonaws.com", DYN_OK, "dynamodb.us-east-1.amazonaws.com",
         "https://dynamodb.us-east-1.amazonaws.com/", "/", 443},
        {"HTTPS://Example.com:443/", DYN_OK, "Example.com", "https://Example.com/", "/", 443},
        {"http://localhost:80", DYN_OK, "localhost", "http://localhost/", "/", 80},
        {"http://[::1]:8000/ddb", DYN_OK, "[::1]:8000", "http://[::1]:8000/ddb", "/ddb", 8000},
        {"http://[::1]", DYN_OK, "[::1]", "http://[::1]/", "/", 80},
        {"ftp://host", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://:8000", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host:", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host:0", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host:65536", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host:80a", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://user:pw@host", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host/?q=1", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host/#frag", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://ho st", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://host\r\nX: y", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"http://[::1", DYN_EINVAL, NULL, NULL, NULL, 0},
        {"127.0.0.1:8000", DYN_EINVAL, NULL, NULL, NULL, 0},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dyn_endpoint ep;
        int rc = dyn_endpoint_parse(cases[i].url, &ep);
        if (rc != cases[i].rc) fprintf(stderr, "endpoint case %s\n", cases[i].url);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == DYN_OK && cases[i].rc == DYN_OK) {
            CHECK_EQ_STR(ep.host_header, cases[i].host_header);
            CHECK_EQ_STR(ep.url, cases[i].full);
            CHECK_EQ_STR(ep.path, cases[i].path);
            CHECK_EQ_INT(ep.port, cases[i].port);
        }
    }
}

TEST(config_validation) {
    struct dyn_call_config cfg;
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "http://h", ""), DYN_EINVAL);
    dyn_call_config_free(&cfg);
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "http://h", NULL), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "http://h", "us east"), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "nope", "us-east-1"), DYN_EINVAL);
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "http://h", "eu-west-3"), DYN_OK);
    CHECK_EQ_STR(cfg.region, "eu-west-3");
    CHECK_EQ_INT(cfg.retry.max_attempts, 4);
    CHECK(cfg.bucket == NULL && cfg.key_cache == NULL && cfg.random.fn != NULL);
    dyn_call_config_free(&cfg);
}

/* The default random source is the config's own PRNG: reseeding makes waits reproducible. */
TEST(default_random_is_seedable) {
    struct dyn_call_config cfg;
    struct dyn_call *call;
    struct dyn_step step;
    uint32_t first[2];
    int round;
    CHECK_EQ_INT(dyn_call_config_init(&cfg, NULL, "http://127.0.0.1:1", "us-east-1"), DYN_OK);
    CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AK"), DYN_SLICE_LIT("SK"), DYN_SLICE_EMPTY),
                 DYN_OK);
    for (round = 0; round < 2; round++) {
        dyn_rng_seed(&cfg.rng, 99);
        CHECK_EQ_INT(dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_EMPTY, &call), DYN_OK);
        CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_SEND);
        CHECK_EQ_INT(dyn_call_feed(call, 400, NULL, 0, DYN_SLICE_LIT("{\"__type\":\"ThrottlingException\"}")),
                     DYN_OK);
        CHECK_EQ_INT(step_kind(call, T0, &step), DYN_STEP_WAIT);
        first[round] = step.wait_ms;
        CHECK(step.wait_ms < 1000);
        dyn_call_free(call);
    }
    CHECK_EQ_INT(first[0], first[1]);
    dyn_call_config_free(&cfg);
}


/* Every allocation failure is reported as DYN_ENOMEM and leaks nothing (checked under ASan/valgrind). */
TEST(allocation_failures_are_enomem) {
    struct dyn_allocator a = {testing_failing_alloc, NULL};
    int budget, saw_enomem = 0, finished = 0;
    for (budget = 0; budget < 40 && !finished; budget++) {
        struct dyn_call_config cfg;
        struct dyn_call *call = NULL;
        struct dyn_step step;
        int rc;
        testing_alloc_budget = 1000;
        CHECK_EQ_INT(dyn_call_config_init(&cfg, &a, "http://127.0.0.1:8000", "us-east-1"), DYN_OK);
        CHECK_EQ_INT(dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AK"), DYN_SLICE_LIT("SK"),
                                                     DYN_SLICE_LIT("TK")),
                     DYN_OK);
        testing_alloc_budget = budget;
        rc = dyn_call_new(&cfg, DYN_SLICE_LIT("GetItem"), DYN_SLICE_LIT("{}"), &call);
        if (rc == DYN_OK) rc = dyn_call_next(call, T0, &step);
        if (rc == DYN_OK) rc = dyn_call_feed(call, 200, NULL, 0, DYN_SLICE_LIT("{\"Item\":{}}"));
        if (rc == DYN_OK) {
            finished = 1;
            CHECK_EQ_INT(dyn_call_status(call), DYN_OK);
        } else {
            CHECK_EQ_INT(rc, DYN_ENOMEM);
            saw_enomem = 1;
        }
        dyn_call_free(call);
        testing_alloc_budget = 1000;
        dyn_call_config_free(&cfg);
    }
    CHECK(saw_enomem);
    CHECK(finished);
}

int main(void) {
    RUN(success_first_try_with_signed_headers);
    RUN(feed_buf_takes_a_successful_body_without_copying);
    RUN(server_error_then_success_resigns);
    RUN(throttling_three_times_then_success_with_exact_waits);
    RUN(retry_after_header_is_honoured);
    RUN(crc_mismatch_is_retried);
    RUN(crc_mismatch_every_time_ends_with_ecrc);
    RUN(client_errors_surface_at_once_with_code_and_message);
    RUN(max_attempts_exhausted_reports_attempts);
    RUN(transport_errors_and_timeouts_are_retried);
    RUN(empty_bucket_stops_retries);
    RUN(session_token_is_sent_and_signed);
    RUN(no_secret_in_any_error_text);
    RUN(long_messages_truncate_on_utf8_boundary);
    RUN(misuse_is_einval);
    RUN(abort_ends_an_unfinished_call);
    RUN(unsignable_call_ends_with_einval);
    RUN(endpoint_parsing);
    RUN(config_validation);
    RUN(default_random_is_seedable);
    RUN(allocation_failures_are_enomem);
    return testing_done();
}
