/*
 * dyn_pager: Query/Scan pages, limits and positions, run by a fake driver
 * that answers each request from a script of canned exchanges.
 *
 * A script entry names the request body it expects, byte for byte, so every
 * check of a page request (ExclusiveStartKey, Limit, Segment) is an exact
 * comparison: a request nobody scripted fails the test. The driver keeps up
 * to `concurrency` calls in flight, answers them oldest or newest first, and
 * checks on the way that a stream never has two requests out at once; the
 * consumer checks that it never finds two pages of one stream waiting.
 */
#include "dynamo/crypto.h"
#include "dynamo/pager.h"
#include "testing.h"

#include <stdarg.h>
#include <stdio.h>

#define T0 INT64_C(1704164645000)

/* ---- fixtures ---- */

/* The query body every stream starts from, without its closing brace. */
#define Q "{\"TableName\":\"t\",\"KeyConditionExpression\":\"pk = :p\",\"ExpressionAttributeValues\":{\":p\":{\"S\":\"a\"}}"
#define SCAN "{\"TableName\":\"t\""
/* Keys as a server may write them: escapes, a surrogate pair, odd spacing,
   a number beyond any double, nested containers. Carried back byte for byte. */
#define K1 "{\"pk\":{\"S\":\"a\"},\"sk\":{\"S\":\"q\\\"u\\\\o\\u00e9\\ud83d\\ude00\\/\"}}"
#define K2 "{ \"pk\" : {\"S\":\"a\"},\n \"sk\" : {\"N\":\"-123456789012345678901234567890.123456789E+100\"} }"
#define K3 "{\"pk\":{\"S\":\"a\"},\"sk\":{\"L\":[{\"N\":\"1\"},{\"M\":{}}]},\"raw\":123456789012345678901234567890e-999}"
#define ESK(k) ",\"ExclusiveStartKey\":" k

#define ITEMS2 "\"Items\":[{\"pk\":{\"S\":\"a\"}},{\"pk\":{\"S\":\"b\"}}]"

static double zero_random(void *ud) {
    (void)ud;
    return 0.0;
}

static void setup(struct dyn_call_config *cfg, const struct dyn_allocator *a) {
    struct dyn_random rnd;
    int budget = testing_alloc_budget;
    testing_alloc_budget = 1 << 30;
    CHECK_EQ_INT(dyn_call_config_init(cfg, a, "http://127.0.0.1:8000", "us-east-1"), DYN_OK);
    CHECK_EQ_INT(dyn_call_config_set_credentials(cfg, DYN_SLICE_LIT("AK"), DYN_SLICE_LIT("SK"), DYN_SLICE_EMPTY),
                 DYN_OK);
    rnd.fn = zero_random;
    rnd.ud = NULL;
    cfg->random = rnd; /* every backoff is 0 ms */
    testing_alloc_budget = budget;
}

static struct dyn_pager_stream stream_of(const char *op, const char *body, uint64_t limit, uint32_t page_size) {
    struct dyn_pager_stream s;
    memset(&s, 0, sizeof s);
    s.operation = dyn_slice_cstr(op);
    s.body = dyn_slice_cstr(body);
    s.limit = limit;
    s.page_size = page_size;
    return s;
}

/* ---- allocation failure walk: retry a step that ran out of memory ---- */

/* In a walk, a step that fails with DYN_ENOMEM gets memory back and is
   asked again: the pager must have stayed as it was. */
static int s_walk;
static int s_failures;
#define TRY(rc, expr)                                                    \
    do {                                                                 \
        (rc) = (expr);                                                   \
        if ((rc) == DYN_ENOMEM && s_walk) {                              \
            s_failures++;                                                \
            testing_alloc_budget = 1 << 30;                              \
            continue;                                                    \
        }                                                                \
        break;                                                           \
    } while (1)

/* ---- the fake driver ---- */

struct exchange {
    int stream;           /* the stream the request must come from (checked for one in flight) */
    const char *request;  /* exact body */
    long status;
    const char *response;
    int used;
};

#define MAX_FLIGHT 16
#define MAX_STREAMS 8

struct fake {
    struct dyn_pager *pager;
    struct exchange *script;
    size_t n_script;
    int concurrency;
    int newest_first;                     /* answer the newest call first */
    struct dyn_call *flight[MAX_FLIGHT];
    struct exchange *asked[MAX_FLIGHT];
    int n;
    int out[MAX_STREAMS];                 /* requests in flight per stream */
    int max_flight;
    struct dyn_buf log;                   /* "send", "page", "error", "pos" lines */
    const struct dyn_allocator *pos_alloc; /* for the position texts */
    int positions;                        /* log the position after each page */
};

static void fake_init(struct fake *f, struct dyn_pager *p, struct exchange *script, size_t n_script) {
    memset(f, 0, sizeof *f);
    f->pager = p;
    f->script = script;
    f->n_script = n_script;
    f->concurrency = 4;
    dyn_buf_init(&f->log, dyn_default_allocator());
    f->pos_alloc = dyn_default_allocator();
}

static void fake_free(struct fake *f) {
    dyn_buf_free(&f->log);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void logf_(struct fake *f, const char *fmt, ...) {
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    CHECK_EQ_INT(dyn_buf_append_cstr(&f->log, text), DYN_OK);
}

static struct exchange *find_exchange(struct fake *f, dyn_slice body) {
    size_t i;
    for (i = 0; i < f->n_script; i++)
        if (!f->script[i].used && dyn_slice_eq_cstr(body, f->script[i].request)) {
            f->script[i].used = 1;
            return &f->script[i];
        }
    fprintf(stderr, "unscripted request: %.*s\n", (int)body.len, body.ptr);
    CHECK(0); /* every request is in the script */
    return NULL;
}

/* Signs the call's next attempt and finds its exchange. */
static struct exchange *send_one(struct fake *f, struct dyn_call *call) {
    struct dyn_step st;
    int rc;
    TRY(rc, dyn_call_next(call, T0, &st));
    CHECK_EQ_INT(rc, DYN_OK);
    CHECK_EQ_INT(st.kind, DYN_STEP_SEND);
    if (st.kind != DYN_STEP_SEND) return NULL;
    return find_exchange(f, st.request.body);
}

static void start(struct fake *f, struct dyn_call *call) {
    struct exchange *e = send_one(f, call);
    CHECK(f->n < MAX_FLIGHT);
    f->flight[f->n] = call;
    f->asked[f->n] = e;
    f->n++;
    if (f->n > f->max_flight) f->max_flight = f->n;
    if (e) {
        logf_(f, "send %d %s\n", e->stream, e->request);
        f->out[e->stream]++;
        CHECK(f->out[e->stream] == 1); /* one request in flight per stream */
    }
}

/* Feeds status and body, with x-amz-crc32 and a request id. */
static int feed_response(struct dyn_call *call, long status, const char *body) {
    char crc[16];
    struct dyn_header h[2];
    snprintf(crc, sizeof crc, "%lu", (unsigned long)dyn_crc32(0, body, strlen(body)));
    h[0].name = DYN_SLICE_LIT("x-amz-crc32");
    h[0].value = dyn_slice_cstr(crc);
    h[1].name = DYN_SLICE_LIT("x-amzn-RequestId");
    h[1].value = DYN_SLICE_LIT("RID");
    return dyn_call_feed(call, status, h, 2, dyn_slice_cstr(body));
}

/* Answers call k until it is done (its retries are answered from the script
   too), then hands it back to the pager. */
static void answer(struct fake *f, int k) {
    struct dyn_call *call = f->flight[k];
    struct exchange *e = f->asked[k];
    struct dyn_op *op = dyn_pager_op(f->pager);
    int rc, stream = e ? e->stream : -1;
    for (;;) {
        struct dyn_step st;
        if (!e) {
            dyn_call_abort(call, DYN_EINVAL, "unscripted");
            break;
        }
        TRY(rc, feed_response(call, e->status, e->response));
        CHECK_EQ_INT(rc, DYN_OK);
        if (dyn_call_is_done(call)) break;
        TRY(rc, dyn_call_next(call, T0, &st));
        CHECK_EQ_INT(st.kind, DYN_STEP_WAIT); /* the call backs off itself */
        e = send_one(f, call);
        if (e) logf_(f, "retry %d\n", e->stream);
    }
    TRY(rc, op->feed(op, call, 0));
    CHECK_EQ_INT(rc, DYN_OK);
    if (stream >= 0) f->out[stream]--;
    f->n--;
    memmove(&f->flight[k], &f->flight[k + 1], (size_t)(f->n - k) * sizeof f->flight[0]);
    memmove(&f->asked[k], &f->asked[k + 1], (size_t)(f->n - k) * sizeof f->asked[0]);
}

/* One round: drives the op until it says DONE. Returns the steps seen, as
   letters (S send, I idle, D done). */
static void drive(struct fake *f, char *steps, size_t cap) {
    struct dyn_op *op = dyn_pager_op(f->pager);
    size_t ns = 0;
    int guard;
    for (guard = 0; guard < 1000; guard++) {
        struct dyn_op_step st;
        int rc;
        st.kind = DYN_OP_IDLE;
        while (f->n < f->concurrency) {
            TRY(rc, op->next(op, T0, 0, &st));
            CHECK_EQ_INT(rc, DYN_OK);
            if (steps && ns + 1 < cap) steps[ns++] = st.kind == DYN_OP_SEND ? 'S' : st.kind == DYN_OP_IDLE ? 'I' : 'D';
            CHECK(st.kind != DYN_OP_WAIT);
            if (st.kind != DYN_OP_SEND) break;
            start(f, st.call);
        }
        if (st.kind == DYN_OP_DONE) {
            CHECK_EQ_INT(f->n, 0);
            break;
        }
        if (f->n == 0) {
            fprintf(stderr, "IDLE with nothing in flight\n");
            CHECK(0);
            break;
        }
        answer(f, f->newest_first ? f->n - 1 : 0);
    }
    if (steps) steps[ns] = '\0';
}

static void log_position(struct fake *f) {
    struct dyn_buf pos = DYN_BUF_INIT(f->pos_alloc);
    int rc;
    TRY(rc, dyn_pager_position_json(f->pager, &pos));
    CHECK_EQ_INT(rc, DYN_OK);
    logf_(f, "pos %s\n", pos.len ? pos.ptr : "");
    dyn_buf_free(&pos);
}

/* Takes every waiting page: at most one per stream between two rounds. */
static void consume(struct fake *f) {
    struct dyn_pager_page pg;
    int seen[MAX_STREAMS] = {0};
    while (dyn_pager_take(f->pager, &pg)) {
        CHECK(pg.stream < MAX_STREAMS);
        if (pg.stream >= MAX_STREAMS) break;
        CHECK_EQ_INT(seen[pg.stream], 0); /* one page per stream waits at most */
        seen[pg.stream] = 1;
        if (pg.status == DYN_OK) {
            CHECK(pg.body.len > 0);
            logf_(f, "page %d take %d/%d scanned %d%s\n", (int)pg.stream, (int)pg.take, (int)pg.count,
                  (int)pg.scanned_count, pg.last ? " last" : "");
        } else {
            CHECK_EQ_INT(pg.body.len, 0);
            logf_(f, "error %d %s %s %ld %s\n", (int)pg.stream, dyn_status_name(pg.status), pg.error.aws_type,
                  pg.error.http_status, pg.error.message);
        }
        dyn_buf_free(&pg.body);
        if (f->positions) log_position(f);
    }
    CHECK_EQ_INT(pg.body.len, 0);
}

/* Rounds until the pager is finished. */
static void run(struct fake *f) {
    int guard;
    for (guard = 0; guard < 100; guard++) {
        consume(f);
        if (dyn_pager_finished(f->pager)) break;
        drive(f, NULL, 0);
    }
    CHECK(dyn_pager_finished(f->pager));
}

static void check_all_used(struct exchange *script, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (!script[i].used) fprintf(stderr, "never asked: %s\n", script[i].request);
        CHECK(script[i].used);
    }
}

#define CHECK_LOG(f, want) CHECK_EQ_MEM((f)->log.ptr, (f)->log.len, (want), strlen(want))
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- tests ---- */

TEST(single_query_over_three_pages_carries_keys_byte_exact) {
    struct exchange script[] = {
        {0, Q "}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 ",\"ScannedCount\":3}", 0},
        {0, Q ESK(K1) "}", 200, "{\"LastEvaluatedKey\":" K2 ",\"ScannedCount\":2,\"Count\":2," ITEMS2 "}", 0},
        {0, Q ESK(K2) "}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K3 ",\"ScannedCount\":2}", 0},
        {0, Q ESK(K3) "}", 200, "{\"Count\":1,\"Items\":[{}],\"ScannedCount\":1}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Query", Q "}", 0, 0);
    struct dyn_pager_stats stats;
    struct fake f;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
    fake_init(&f, p, script, N(script));
    f.positions = 1;
    run(&f);
    CHECK_LOG(&f, "send 0 " Q "}\n"
                  "page 0 take 2/2 scanned 3\n"
                  "pos {\"streams\":[{\"key\":" K1 ",\"count\":2}]}\n"
                  "send 0 " Q ESK(K1) "}\n"
                  "page 0 take 2/2 scanned 2\n"
                  "pos {\"streams\":[{\"key\":" K2 ",\"count\":4}]}\n"
                  "send 0 " Q ESK(K2) "}\n"
                  "page 0 take 2/2 scanned 2\n"
                  "pos {\"streams\":[{\"key\":" K3 ",\"count\":6}]}\n"
                  "send 0 " Q ESK(K3) "}\n"
                  "page 0 take 1/1 scanned 1 last\n"
                  "pos {\"streams\":[{\"done\":true,\"count\":7}]}\n");
    check_all_used(script, N(script));
    CHECK(dyn_pager_stream_done(p, 0));
    CHECK_EQ_INT(dyn_pager_status(p), DYN_OK);
    dyn_pager_get_stats(p, &stats);
    CHECK_EQ_INT(stats.requests, 4);
    CHECK_EQ_INT(stats.pages, 4);
    CHECK_EQ_INT(stats.count, 7);
    CHECK_EQ_INT(stats.scanned, 8);
    CHECK_EQ_INT(stats.taken, 7);
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* The Limit member of the first request, for each way limits combine. */
struct limit_case {
    const char *body;    /* the stream body */
    uint64_t limit;      /* the stream's */
    uint32_t page_size;
    uint64_t overall;
    uint64_t count;      /* items taken before (a resumed stream) */
    const char *want;    /* the first request; NULL: nothing is sent */
};

TEST(limit_member_of_a_request) {
    static const struct limit_case cases[] = {
        {Q "}", 0, 0, 0, 0, Q "}"},
        {Q "}", 5, 0, 0, 0, Q ",\"Limit\":5}"},
        {Q "}", 0, 2, 0, 0, Q ",\"Limit\":2}"},
        {Q "}", 5, 2, 0, 0, Q ",\"Limit\":2}"},
        {Q "}", 3, 10, 0, 0, Q ",\"Limit\":3}"},
        {Q "}", 0, 0, 4, 0, Q ",\"Limit\":4}"},
        {Q "}", 10, 0, 4, 0, Q ",\"Limit\":4}"},
        {Q "}", 3, 0, 4, 0, Q ",\"Limit\":3}"},
        {Q "}", 10, 0, 0, 7, Q ",\"Limit\":3}"},
        {Q "}", 10, 0, 0, 10, NULL},
        {Q "}", 0, 0, 5, 5, NULL},
        {Q "}", UINT64_C(3000000000), 0, 0, 0, Q ",\"Limit\":2147483647}"},
        {Q "}", 0, 4000000000u, 0, 0, Q ",\"Limit\":2147483647}"},
        /* a filter: Limit would count evaluated items, so only page_size sets one */
        {Q ",\"FilterExpression\":\"x > :p\"}", 5, 0, 0, 0, Q ",\"FilterExpression\":\"x > :p\"}"},
        {Q ",\"FilterExpression\":\"x > :p\"}", 5, 10, 0, 0, Q ",\"FilterExpression\":\"x > :p\",\"Limit\":5}"},
        {Q ",\"FilterExpression\":\"x > :p\"}", 0, 10, 3, 0, Q ",\"FilterExpression\":\"x > :p\",\"Limit\":3}"},
        {SCAN ",\"ScanFilter\":{}}", 5, 0, 0, 0, SCAN ",\"ScanFilter\":{}}"},
        /* an empty body object and odd spacing: members join without a stray comma */
        {"{}", 0, 0, 0, 0, "{}"},
        {" { } ", 5, 0, 0, 0, " { \"Limit\":5}"},
        {"{\"TableName\" : \"t\" \n}", 0, 7, 0, 0, "{\"TableName\" : \"t\" \n,\"Limit\":7}"},
    };
    size_t i;
    for (i = 0; i < N(cases); i++) {
        struct dyn_call_config cfg;
        struct dyn_pager *p;
        struct dyn_pager_stream s = stream_of("Query", cases[i].body, cases[i].limit, cases[i].page_size);
        struct dyn_op_step st;
        struct dyn_step cs;
        struct dyn_op *op;
        setup(&cfg, NULL);
        s.count = cases[i].count;
        CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
        CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
        CHECK_EQ_INT(dyn_pager_set_limit(p, cases[i].overall), DYN_OK);
        op = dyn_pager_op(p);
        CHECK_EQ_INT(op->next(op, T0, 0, &st), DYN_OK);
        if (!cases[i].want) {
            if (st.kind != DYN_OP_DONE) fprintf(stderr, "limit case %u\n", (unsigned)i);
            CHECK_EQ_INT(st.kind, DYN_OP_DONE);
            CHECK(dyn_pager_finished(p));
        } else {
            CHECK_EQ_INT(st.kind, DYN_OP_SEND);
            CHECK_EQ_INT(dyn_call_next(st.call, T0, &cs), DYN_OK);
            if (!dyn_slice_eq_cstr(cs.request.body, cases[i].want)) fprintf(stderr, "limit case %u\n", (unsigned)i);
            CHECK_EQ_MEM(cs.request.body.ptr, cs.request.body.len, cases[i].want, strlen(cases[i].want));
            op->abort(op, DYN_EINVAL, "test over"); /* the pager frees the call */
        }
        dyn_pager_free(p);
        dyn_call_config_free(&cfg);
    }
}

/* What one page gives the consumer, by limits and by what the server sent. */
struct take_case {
    uint64_t limit, overall;
    int count, has_lek;
    int take, last;   /* the page as taken */
    int finished;     /* the pager after that page */
    const char *pos;  /* its position */
};

TEST(take_and_last_of_a_page) {
    static const struct take_case cases[] = {
        {0, 0, 3, 1, 3, 0, 0, "{\"streams\":[{\"key\":" K1 ",\"count\":3}]}"},
        {0, 0, 3, 0, 3, 1, 1, "{\"streams\":[{\"done\":true,\"count\":3}]}"},
        {5, 0, 3, 1, 3, 0, 0, "{\"streams\":[{\"key\":" K1 ",\"count\":3}]}"},
        {3, 0, 3, 1, 3, 1, 1, "{\"streams\":[{\"done\":true,\"count\":3}]}"},  /* limit reached on a page edge */
        {2, 0, 3, 1, 2, 1, 1, "{\"streams\":[{\"done\":true,\"count\":2}]}"},  /* the server ignored Limit */
        {0, 2, 3, 1, 2, 1, 1, "{\"streams\":[{\"done\":true,\"count\":2}]}"},  /* cut by the overall limit */
        {0, 3, 3, 1, 3, 0, 1, "{\"streams\":[{\"key\":" K1 ",\"count\":3}]}"}, /* overall edge: resumable */
        {4, 2, 3, 0, 2, 1, 1, "{\"streams\":[{\"done\":true,\"count\":2}]}"},
    };
    size_t i;
    for (i = 0; i < N(cases); i++) {
        struct dyn_call_config cfg;
        struct dyn_pager *p;
        struct dyn_pager_stream s = stream_of("Scan", SCAN "}", cases[i].limit, 0);
        struct dyn_op_step st;
        struct dyn_step cs;
        struct dyn_op *op;
        struct dyn_pager_page pg;
        struct dyn_buf pos = DYN_BUF_INIT(NULL);
        char body[512];
        setup(&cfg, NULL);
        snprintf(body, sizeof body, "{\"Items\":[],\"Count\":%d%s}", cases[i].count,
                 cases[i].has_lek ? ",\"LastEvaluatedKey\":" K1 : "");
        CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
        CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
        CHECK_EQ_INT(dyn_pager_set_limit(p, cases[i].overall), DYN_OK);
        op = dyn_pager_op(p);
        CHECK_EQ_INT(op->next(op, T0, 0, &st), DYN_OK);
        CHECK_EQ_INT(st.kind, DYN_OP_SEND);
        CHECK_EQ_INT(dyn_call_next(st.call, T0, &cs), DYN_OK);
        CHECK_EQ_INT(feed_response(st.call, 200, body), DYN_OK);
        CHECK_EQ_INT(op->feed(op, st.call, 0), DYN_OK);
        CHECK_EQ_INT(dyn_pager_take(p, &pg), 1);
        if (pg.take != (uint64_t)cases[i].take || pg.last != cases[i].last) fprintf(stderr, "take case %u\n", (unsigned)i);
        CHECK_EQ_INT(pg.status, DYN_OK);
        CHECK_EQ_INT(pg.take, cases[i].take);
        CHECK_EQ_INT(pg.count, cases[i].count);
        CHECK_EQ_INT(pg.last, cases[i].last);
        CHECK_EQ_MEM(pg.body.ptr, pg.body.len, body, strlen(body));
        CHECK_EQ_INT(dyn_pager_finished(p), cases[i].finished);
        CHECK_EQ_INT(dyn_pager_position_json(p, &pos), DYN_OK);
        CHECK_EQ_MEM(pos.ptr, pos.len, cases[i].pos, strlen(cases[i].pos));
        if (!cases[i].finished) {
            CHECK_EQ_INT(op->next(op, T0, 0, &st), DYN_OK);
            CHECK_EQ_INT(st.kind, DYN_OP_SEND);
            op->abort(op, DYN_EINVAL, NULL);
        }
        dyn_buf_free(&pos);
        dyn_buf_free(&pg.body);
        dyn_pager_free(p);
        dyn_call_config_free(&cfg);
    }
}

/* Limit = what is left, page after page; page_size caps it. */
TEST(limit_and_page_size_across_pages) {
    struct exchange script[] = {
        {0, Q ",\"Limit\":5}", 200, "{\"Count\":3,\"Items\":[{},{},{}],\"LastEvaluatedKey\":" K1 "}", 0},
        {0, Q ",\"Limit\":2" ESK(K1) "}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K2 "}", 0},
        {1, SCAN ",\"Limit\":2}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}", 0},
        {1, SCAN ",\"Limit\":2" ESK(K1) "}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K2 "}", 0},
        {1, SCAN ",\"Limit\":1" ESK(K2) "}", 200, "{\"Count\":1,\"Items\":[{}],\"LastEvaluatedKey\":" K3 "}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream a = stream_of("Query", Q "}", 5, 0), b = stream_of("Scan", SCAN "}", 5, 2);
    struct fake f;
    struct dyn_pager_position pos;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &a), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &b), DYN_OK);
    CHECK_EQ_INT(dyn_pager_stream_count(p), 2);
    fake_init(&f, p, script, N(script));
    run(&f);
    check_all_used(script, N(script));
    CHECK_EQ_INT(dyn_pager_stream_position(p, 0, &pos), DYN_OK);
    CHECK(pos.done && pos.count == 5 && pos.key.len == 0); /* the limit, on a page edge */
    CHECK_EQ_INT(dyn_pager_stream_position(p, 1, &pos), DYN_OK);
    CHECK(pos.done && pos.count == 5);
    CHECK_EQ_INT(dyn_pager_stream_position(p, 2, &pos), DYN_EINVAL);
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* query_many: per-stream limits and an overall one. Every stream starts at
   once; pages count in arrival order, and a page that arrives after the
   overall limit was reached is dropped unread. */
TEST(per_stream_and_overall_limits) {
    struct exchange script[] = {
        {0, Q ",\"Limit\":2}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}", 0},
        {1, SCAN ",\"Limit\":4}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K2 "}", 0},
        {2, "{\"TableName\":\"u\",\"Limit\":3}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K3 "}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream a = stream_of("Query", Q "}", 2, 0), b = stream_of("Scan", SCAN "}", 0, 0),
                            c = stream_of("Scan", "{\"TableName\":\"u\"}", 3, 0);
    struct dyn_pager_stats stats;
    struct fake f;
    char steps[32];
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &a), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &b), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &c), DYN_OK);
    CHECK_EQ_INT(dyn_pager_set_limit(p, 4), DYN_OK);
    fake_init(&f, p, script, N(script));
    f.positions = 1;
    drive(&f, steps, sizeof steps);
    CHECK_EQ_STR(steps, "SSSIIID");
    CHECK_EQ_INT(f.max_flight, 3);
    CHECK(dyn_pager_stream_done(p, 2)); /* its page came too late: the limit was reached */
    CHECK(!dyn_pager_stream_done(p, 0));
    run(&f);
    CHECK_LOG(&f, "send 0 " Q ",\"Limit\":2}\n"
                  "send 1 " SCAN ",\"Limit\":4}\n"
                  "send 2 {\"TableName\":\"u\",\"Limit\":3}\n"
                  "page 0 take 2/2 scanned 0 last\n"
                  "pos {\"streams\":[{\"done\":true,\"count\":2},{\"count\":0},{\"count\":0}]}\n"
                  "page 1 take 2/2 scanned 0\n"
                  "pos {\"streams\":[{\"done\":true,\"count\":2},{\"key\":" K2 ",\"count\":2},{\"count\":0}]}\n");
    dyn_pager_get_stats(p, &stats);
    CHECK_EQ_INT(stats.pages, 3);
    CHECK_EQ_INT(stats.taken, 4);
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* Parallel scan: one stream per segment, all in flight together, pages
   handed out as they arrive (here newest first). */
TEST(parallel_scan_segments) {
    struct exchange script[] = {
        {0, SCAN ",\"Segment\":0,\"TotalSegments\":3}", 200,
         "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}", 0},
        {1, SCAN ",\"Segment\":1,\"TotalSegments\":3}", 200, "{\"Count\":1,\"Items\":[{}]}", 0},
        {2, SCAN ",\"Segment\":2,\"TotalSegments\":3}", 200,
         "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K2 "}", 0},
        {0, SCAN ESK(K1) ",\"Segment\":0,\"TotalSegments\":3}", 200, "{\"Count\":2," ITEMS2 "}", 0},
        {2, SCAN ESK(K2) ",\"Segment\":2,\"TotalSegments\":3}", 200, "{\"Count\":3,\"Items\":[{},{},{}]}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
    struct fake f;
    char steps[32];
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 3), DYN_OK);
    CHECK_EQ_INT(dyn_pager_stream_count(p), 3);
    fake_init(&f, p, script, N(script));
    f.newest_first = 1;
    f.positions = 1;
    drive(&f, steps, sizeof steps);
    CHECK_EQ_STR(steps, "SSSIIID");
    CHECK_EQ_INT(f.max_flight, 3);
    run(&f);
    check_all_used(script, N(script));
    CHECK_LOG(&f, "send 0 " SCAN ",\"Segment\":0,\"TotalSegments\":3}\n"
                  "send 1 " SCAN ",\"Segment\":1,\"TotalSegments\":3}\n"
                  "send 2 " SCAN ",\"Segment\":2,\"TotalSegments\":3}\n"
                  "page 2 take 2/2 scanned 0\n"
                  "pos {\"streams\":[{\"count\":0},{\"count\":0},{\"key\":" K2 ",\"count\":2}]}\n"
                  "page 1 take 1/1 scanned 0 last\n"
                  "pos {\"streams\":[{\"count\":0},{\"done\":true,\"count\":1},{\"key\":" K2 ",\"count\":2}]}\n"
                  "page 0 take 2/2 scanned 0\n"
                  "pos {\"streams\":[{\"key\":" K1 ",\"count\":2},{\"done\":true,\"count\":1},{\"key\":" K2
                  ",\"count\":2}]}\n"
                  "send 0 " SCAN ESK(K1) ",\"Segment\":0,\"TotalSegments\":3}\n"
                  "send 2 " SCAN ESK(K2) ",\"Segment\":2,\"TotalSegments\":3}\n"
                  "page 2 take 3/3 scanned 0 last\n"
                  "pos {\"streams\":[{\"key\":" K1 ",\"count\":2},{\"done\":true,\"count\":1},{\"done\":true,"
                  "\"count\":5}]}\n"
                  "page 0 take 2/2 scanned 0 last\n"
                  "pos {\"streams\":[{\"done\":true,\"count\":4},{\"done\":true,\"count\":1},{\"done\":true,"
                  "\"count\":5}]}\n");
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* An overall limit across segments: each first request asks for all that
   is left; the pages are counted as they arrive until the limit is met. */
TEST(parallel_scan_with_an_overall_limit) {
    struct exchange script[] = {
        {0, SCAN ",\"Limit\":5,\"Segment\":0,\"TotalSegments\":3}", 200,
         "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}", 0},
        {1, SCAN ",\"Limit\":5,\"Segment\":1,\"TotalSegments\":3}", 200, "{\"Count\":1,\"Items\":[{}]}", 0},
        {2, SCAN ",\"Limit\":5,\"Segment\":2,\"TotalSegments\":3}", 200,
         "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K2 "}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
    struct fake f;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 3), DYN_OK);
    CHECK_EQ_INT(dyn_pager_set_limit(p, 5), DYN_OK);
    fake_init(&f, p, script, N(script));
    f.newest_first = 1;
    run(&f);
    check_all_used(script, N(script));
    CHECK_LOG(&f, "send 0 " SCAN ",\"Limit\":5,\"Segment\":0,\"TotalSegments\":3}\n"
                  "send 1 " SCAN ",\"Limit\":5,\"Segment\":1,\"TotalSegments\":3}\n"
                  "send 2 " SCAN ",\"Limit\":5,\"Segment\":2,\"TotalSegments\":3}\n"
                  "page 2 take 2/2 scanned 0\n"
                  "page 1 take 1/1 scanned 0 last\n"
                  "page 0 take 2/2 scanned 0\n");
    /* the limit fell on a page edge: nothing more comes, yet both unfinished
       segments stay resumable */
    CHECK(dyn_pager_stream_done(p, 0) && dyn_pager_stream_done(p, 2));
    {
        struct dyn_buf pos = DYN_BUF_INIT(NULL);
        const char *want = "{\"streams\":[{\"key\":" K1 ",\"count\":2},{\"done\":true,\"count\":1},{\"key\":" K2
                           ",\"count\":2}]}";
        CHECK_EQ_INT(dyn_pager_position_json(p, &pos), DYN_OK);
        CHECK_EQ_MEM(pos.ptr, pos.len, want, strlen(want));
        dyn_buf_free(&pos);
    }
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* ---- stepping by hand ---- */

static int next_kind(struct dyn_op *op, struct dyn_call **call) {
    struct dyn_op_step st;
    CHECK_EQ_INT(op->next(op, T0, 0, &st), DYN_OK);
    if (call) *call = st.call;
    return st.kind;
}

/* The next step must be SEND with this body; returns its call, signed. */
static struct dyn_call *expect_send(struct dyn_op *op, const char *want) {
    struct dyn_call *call = NULL;
    struct dyn_step cs;
    CHECK_EQ_INT(next_kind(op, &call), DYN_OP_SEND);
    if (!call) return NULL;
    CHECK_EQ_INT(dyn_call_next(call, T0, &cs), DYN_OK);
    CHECK_EQ_MEM(cs.request.body.ptr, cs.request.body.len, want, strlen(want));
    return call;
}

static void reply(struct dyn_op *op, struct dyn_call *call, long status, const char *body) {
    if (!call) return;
    CHECK_EQ_INT(feed_response(call, status, body), DYN_OK);
    CHECK(dyn_call_is_done(call));
    CHECK_EQ_INT(op->feed(op, call, 0), DYN_OK);
}

static size_t take_stream(struct dyn_pager *p, int *last) {
    struct dyn_pager_page pg;
    CHECK_EQ_INT(dyn_pager_take(p, &pg), 1);
    CHECK_EQ_INT(pg.status, DYN_OK);
    dyn_buf_free(&pg.body);
    if (last) *last = pg.last;
    return pg.stream;
}

/* IDLE while something is out, DONE when nothing is out and nothing can
   start; a stream with a waiting page sends again only once it is taken. */
TEST(idle_and_done_around_one_page_per_stream) {
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream a = stream_of("Query", Q "}", 0, 0), b = stream_of("Scan", SCAN "}", 0, 0);
    struct dyn_pager_page pg;
    struct dyn_op *op;
    struct dyn_call *c0, *c1, *c2;
    int last;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &a), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &b), DYN_OK);
    op = dyn_pager_op(p);
    c0 = expect_send(op, Q "}");
    c1 = expect_send(op, SCAN "}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE);
    CHECK_EQ_INT(op->feed(op, c0, 0), DYN_EINVAL); /* not done yet */
    CHECK_EQ_INT(op->feed(op, (struct dyn_call *)&cfg, 0), DYN_EINVAL); /* not one of its calls */
    CHECK_EQ_INT(op->feed(op, NULL, 0), DYN_EINVAL);
    reply(op, c0, 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}");
    CHECK_EQ_INT(op->feed(op, c0, 0), DYN_EINVAL); /* handed back already */
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE); /* stream 0 waits for its consumer */
    CHECK(!dyn_pager_finished(p));
    reply(op, c1, 200, "{\"Count\":1,\"Items\":[{}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE); /* stays so until pages are taken */
    CHECK(!dyn_pager_finished(p));
    CHECK(!dyn_pager_stream_done(p, 1)); /* its last page still waits */
    CHECK_EQ_INT(take_stream(p, &last), 0); /* arrival order */
    CHECK(!last);
    c2 = expect_send(op, Q ESK(K1) "}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE);
    CHECK_EQ_INT(take_stream(p, &last), 1);
    CHECK(last);
    CHECK(dyn_pager_stream_done(p, 1));
    CHECK(!dyn_pager_stream_done(p, 0));
    CHECK(!dyn_pager_stream_done(p, 9));
    reply(op, c2, 200, "{\"Count\":1,\"Items\":[{}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(take_stream(p, &last), 0);
    CHECK(last);
    CHECK(dyn_pager_finished(p));
    CHECK_EQ_INT(dyn_pager_take(p, &pg), 0);
    CHECK(pg.body.ptr == NULL);
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* max_pages: a window over many streams, for query_many over many queries. */
TEST(max_pages_bounds_pages_out_and_waiting) {
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
    struct dyn_op *op;
    struct dyn_call *c0, *c1, *c2;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 4), DYN_OK);
    CHECK_EQ_INT(dyn_pager_set_max_pages(p, 2), DYN_OK);
    op = dyn_pager_op(p);
    c0 = expect_send(op, SCAN ",\"Segment\":0,\"TotalSegments\":4}");
    c1 = expect_send(op, SCAN ",\"Segment\":1,\"TotalSegments\":4}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE);
    reply(op, c1, 200, "{\"Count\":1,\"Items\":[{}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE); /* one out, one waiting: the window is full */
    reply(op, c0, 200, "{\"Count\":1,\"Items\":[{}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(take_stream(p, NULL), 1);
    c2 = expect_send(op, SCAN ",\"Segment\":2,\"TotalSegments\":4}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE);
    reply(op, c2, 200, "{\"Count\":1,\"Items\":[{}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(take_stream(p, NULL), 0);
    CHECK_EQ_INT(take_stream(p, NULL), 2);
    reply(op, expect_send(op, SCAN ",\"Segment\":3,\"TotalSegments\":4}"), 200, "{\"Count\":1,\"Items\":[{}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(take_stream(p, NULL), 3);
    CHECK(dyn_pager_finished(p));
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* A 500 is retried by the page's call; a 400 ends its stream only, and
   reaches the consumer in arrival order after the pages before it. */
TEST(failed_page_ends_only_its_stream) {
    struct exchange script[] = {
        {0, Q "}", 500, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#InternalServerError\"}", 0},
        {0, Q "}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}", 0},
        {1, SCAN "}", 400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ValidationException\","
                           "\"message\":\"bad key\"}", 0},
        {0, Q ESK(K1) "}", 200, "{\"Count\":1,\"Items\":[{}]}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream a = stream_of("Query", Q "}", 0, 0), b = stream_of("Scan", SCAN "}", 0, 0);
    struct dyn_pager_stats stats;
    struct fake f;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &a), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &b), DYN_OK);
    fake_init(&f, p, script, N(script));
    f.positions = 1;
    run(&f);
    check_all_used(script, N(script));
    CHECK_LOG(&f, "send 0 " Q "}\n"
                  "send 1 " SCAN "}\n"
                  "retry 0\n"
                  "page 0 take 2/2 scanned 0\n"
                  "pos {\"streams\":[{\"key\":" K1 ",\"count\":2},{\"count\":0}]}\n"
                  "error 1 EAWS ValidationException 400 bad key\n"
                  "pos {\"streams\":[{\"key\":" K1 ",\"count\":2},{\"count\":0}]}\n"
                  "send 0 " Q ESK(K1) "}\n"
                  "page 0 take 1/1 scanned 0 last\n"
                  "pos {\"streams\":[{\"done\":true,\"count\":3},{\"count\":0}]}\n");
    CHECK_EQ_INT(dyn_pager_status(p), DYN_EAWS);
    CHECK_EQ_STR(dyn_pager_error(p)->aws_type, "ValidationException");
    CHECK_EQ_STR(dyn_pager_error(p)->request_id, "RID");
    CHECK(dyn_pager_stream_done(p, 1));
    dyn_pager_get_stats(p, &stats);
    CHECK_EQ_INT(stats.requests, 3); /* pages asked for; the retry is the call's */
    CHECK_EQ_INT(stats.pages, 2);
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* A 2xx body that is not a Query/Scan response fails its stream with DYN_EJSON. */
TEST(broken_pages_fail_with_ejson) {
    static const struct {
        const char *body, *message;
    } cases[] = {
        {"not json", "invalid Scan response: unexpected character at byte 0"},
        {"[1]", "invalid Scan response: expected a response object at byte 0"},
        {"{\"Items\":[]}", "invalid Scan response: the response has no Count at byte 0"},
        {"{\"Count\":-1}", "invalid Scan response: expected a count at byte 9"},
        {"{\"Count\":1.5}", "invalid Scan response: expected a count at byte 9"},
        {"{\"Count\":\"1\"}", "invalid Scan response: expected a count at byte 10"},
        {"{\"Count\":1,\"LastEvaluatedKey\":[]}", "invalid Scan response: expected an object at byte 30"},
        {"{\"Count\":1,\"Items\":[{}]", "invalid Scan response: unexpected end of input at byte 23"},
        {"{\"Count\":1} x", "invalid Scan response: unexpected data after the document at byte 12"},
    };
    size_t i;
    for (i = 0; i < N(cases); i++) {
        struct dyn_call_config cfg;
        struct dyn_pager *p;
        struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
        struct dyn_pager_page pg;
        struct dyn_op *op;
        setup(&cfg, NULL);
        CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
        CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
        op = dyn_pager_op(p);
        reply(op, expect_send(op, SCAN "}"), 200, cases[i].body);
        CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
        CHECK_EQ_INT(dyn_pager_status(p), DYN_EJSON);
        CHECK_EQ_INT(dyn_pager_take(p, &pg), 1);
        CHECK_EQ_INT(pg.status, DYN_EJSON);
        CHECK_EQ_INT(pg.error.status, DYN_EJSON);
        CHECK_EQ_INT(pg.error.http_status, 200);
        CHECK_EQ_INT(pg.error.retry_class, DYN_RETRY_CLIENT);
        if (strcmp(pg.error.message, cases[i].message) != 0) fprintf(stderr, "broken case %u\n", (unsigned)i);
        CHECK_EQ_STR(pg.error.message, cases[i].message);
        CHECK_EQ_STR(dyn_pager_error(p)->message, cases[i].message);
        CHECK(dyn_pager_finished(p));
        dyn_pager_free(p);
        dyn_call_config_free(&cfg);
    }
}

/* The end of Items is found from the document's end when the AttributeValue
   form allows it, else by walking Items: the same page either way. */
TEST(items_skipped_from_the_end_or_walked) {
    static const struct {
        const char *body;
        const char *key; /* the LastEvaluatedKey read, or NULL */
        int count, scanned;
    } cases[] = {
        /* DynamoDB's order, lists and sets inside Items */
        {"{\"Count\":2,\"Items\":[{\"a\":{\"L\":[{\"S\":\"x\"},{\"L\":[]}]}},{\"b\":{\"SS\":[\"p\",\"q\"]}}],"
         "\"LastEvaluatedKey\":" K1 ",\"ScannedCount\":7}", K1, 2, 7},
        /* dynalite's order: Items last */
        {"{\"ScannedCount\":3,\"LastEvaluatedKey\":" K3 ",\"Count\":1,\"Items\":[{\"n\":{\"NS\":[\"1\"]}}]}", K3, 1, 3},
        /* a later member with an array value: walked */
        {"{\"Count\":1,\"Items\":[{\"l\":{\"L\":[]}}],\"Extra\":[1,[2]],\"LastEvaluatedKey\":" K1 "}", K1, 1, 0},
        {"{\"Count\":1,\"Items\":[{}],\"LastEvaluatedKey\":" K2 ",\"Extra\":[]}", K2, 1, 0},
        /* a ']' inside a string of Items: walked */
        {"{\"Count\":1,\"Items\":[{\"s\":{\"S\":\"a],\\\"Count\\\":9,\\\\\"}}],\"ScannedCount\":1}", NULL, 1, 1},
        /* strings after Items ending in escapes, nested objects, literals, spaces everywhere */
        {" {\n \"Count\" : 1 ,\n \"Items\" : [ { \"a\" : { \"L\" : [ ] } } ] ,\n \"ConsumedCapacity\" : "
         "{ \"TableName\" : \"t\\\\\" , \"x\" : [ \"\\\"]\" ] , \"y\" : null , \"z\" : true } ,"
         " \"LastEvaluatedKey\" : " K2 " , \"ScannedCount\" : 4 }\n", K2, 1, 4},
        {"{\"Items\":[],\"Count\":0,\"LastEvaluatedKey\":null}", NULL, 0, 0},
    };
    size_t i;
    for (i = 0; i < N(cases); i++) {
        struct dyn_call_config cfg;
        struct dyn_pager *p;
        struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
        struct dyn_pager_page pg;
        struct dyn_pager_position pos;
        struct dyn_op *op;
        setup(&cfg, NULL);
        CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
        CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
        op = dyn_pager_op(p);
        reply(op, expect_send(op, SCAN "}"), 200, cases[i].body);
        if (dyn_pager_status(p) != DYN_OK) fprintf(stderr, "items case %u: %s\n", (unsigned)i, dyn_pager_error(p)->message);
        CHECK_EQ_INT(dyn_pager_status(p), DYN_OK);
        if (cases[i].count) {
            CHECK_EQ_INT(dyn_pager_take(p, &pg), 1);
            CHECK_EQ_INT(pg.count, cases[i].count);
            CHECK_EQ_INT(pg.scanned_count, cases[i].scanned);
            CHECK_EQ_INT(pg.last, cases[i].key == NULL);
            dyn_buf_free(&pg.body);
        }
        CHECK_EQ_INT(dyn_pager_stream_position(p, 0, &pos), DYN_OK);
        if (cases[i].key) CHECK_EQ_MEM(pos.key.ptr, pos.key.len, cases[i].key, strlen(cases[i].key));
        else CHECK(pos.done && pos.key.len == 0);
        dyn_pager_free(p);
        dyn_call_config_free(&cfg);
    }
}

/* A page with Count 0 has nothing to take: the consumer never sees it, the
   position moves past it and the stream goes on in the same round. */
TEST(empty_pages_move_on_in_the_same_round) {
    struct exchange script[] = {
        {0, SCAN "}", 200, "{\"Count\":0,\"Items\":[],\"ScannedCount\":40,\"LastEvaluatedKey\":" K1 "}", 0},
        {0, SCAN ESK(K1) "}", 200, "{\"Count\":0,\"Items\":[],\"ScannedCount\":40,\"LastEvaluatedKey\":" K2 "}", 0},
        {0, SCAN ESK(K2) "}", 200, "{\"Count\":2," ITEMS2 ",\"ScannedCount\":40,\"LastEvaluatedKey\":" K3 "}", 0},
        {0, SCAN ESK(K3) "}", 200, "{\"Count\":0,\"Items\":[],\"ScannedCount\":5}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
    struct dyn_pager_position pos;
    struct dyn_pager_stats stats;
    struct fake f;
    char steps[32];
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
    fake_init(&f, p, script, N(script));
    drive(&f, steps, sizeof steps);
    CHECK_EQ_STR(steps, "SISISID");
    CHECK_EQ_INT(dyn_pager_stream_position(p, 0, &pos), DYN_OK);
    CHECK_EQ_MEM(pos.key.ptr, pos.key.len, K2, strlen(K2)); /* past the empty pages, before the waiting one */
    CHECK_EQ_INT(pos.count, 0);
    run(&f);
    check_all_used(script, N(script));
    CHECK_EQ_INT(dyn_pager_stream_position(p, 0, &pos), DYN_OK);
    CHECK(pos.done && pos.count == 2 && pos.key.len == 0);
    dyn_pager_get_stats(p, &stats);
    CHECK_EQ_INT(stats.pages, 4);
    CHECK_EQ_INT(stats.scanned, 125);
    CHECK_EQ_INT(stats.taken, 2);
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* ---- positions ---- */

/* The position after each page, given to a new pager, makes the same next
   request as the pager that wrote it. */
TEST(position_after_each_page_resumes_with_the_same_request) {
    static const char *const pages[] = {
        "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}",
        "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K2 "}",
        "{\"Count\":1,\"Items\":[{}],\"LastEvaluatedKey\":" K3 "}",
    };
    static const char *const want[] = {
        Q ",\"Limit\":2}",
        Q ",\"Limit\":2" ESK(K1) "}",
        Q ",\"Limit\":1" ESK(K2) "}",
    };
    static const char *const positions[] = {
        "{\"streams\":[{\"key\":" K1 ",\"count\":2}]}",
        "{\"streams\":[{\"key\":" K2 ",\"count\":4}]}",
        "{\"streams\":[{\"done\":true,\"count\":5}]}",
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Query", Q "}", 5, 2);
    struct dyn_buf pos = DYN_BUF_INIT(NULL);
    struct dyn_op *op;
    size_t k;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
    op = dyn_pager_op(p);
    for (k = 0; k < N(pages); k++) {
        struct dyn_pager *q;
        struct dyn_op *qop;
        struct dyn_pager_position at;
        int last;
        reply(op, expect_send(op, want[k]), 200, pages[k]);
        CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
        /* a waiting page does not move the position */
        dyn_buf_reset(&pos);
        CHECK_EQ_INT(dyn_pager_position_json(p, &pos), DYN_OK);
        CHECK_EQ_STR(pos.ptr, k ? positions[k - 1] : "{\"streams\":[{\"count\":0}]}");
        take_stream(p, &last);
        CHECK_EQ_INT(last, k == 2);
        dyn_buf_reset(&pos);
        CHECK_EQ_INT(dyn_pager_position_json(p, &pos), DYN_OK);
        CHECK_EQ_STR(pos.ptr, positions[k]);
        CHECK_EQ_INT(dyn_pager_stream_position(p, 0, &at), DYN_OK);
        CHECK_EQ_INT(at.count, k == 2 ? 5 : 2 * (k + 1));
        /* a new pager from that text */
        CHECK_EQ_INT(dyn_pager_new(&cfg, &q), DYN_OK);
        CHECK_EQ_INT(dyn_pager_add(q, &s), DYN_OK);
        CHECK_EQ_INT(dyn_pager_resume(q, dyn_buf_slice(&pos)), DYN_OK);
        qop = dyn_pager_op(q);
        if (k + 1 < N(pages)) {
            expect_send(qop, want[k + 1]);
            qop->abort(qop, DYN_EINVAL, NULL);
        } else {
            CHECK_EQ_INT(next_kind(qop, NULL), DYN_OP_DONE);
            CHECK(dyn_pager_finished(q));
        }
        dyn_pager_free(q);
    }
    CHECK(dyn_pager_finished(p));
    CHECK_EQ_INT(dyn_pager_resume(p, dyn_buf_slice(&pos)), DYN_EINVAL); /* started */
    dyn_buf_free(&pos);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* A parallel scan resumes per segment; the counts go toward the overall limit. */
TEST(resume_a_parallel_scan) {
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
    struct dyn_op *op;
    const char *pos = "{\"version\":1,\"streams\":[{\"key\":" K1 ",\"count\":2,\"note\":[1,{}]},"
                      "{\"done\":true,\"count\":1},{\"key\":null,\"count\":0,\"done\":false}]}";
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 3), DYN_OK);
    CHECK_EQ_INT(dyn_pager_set_limit(p, 10), DYN_OK);
    CHECK_EQ_INT(dyn_pager_resume(p, dyn_slice_cstr(pos)), DYN_OK);
    op = dyn_pager_op(p);
    expect_send(op, SCAN ",\"Limit\":7" ESK(K1) ",\"Segment\":0,\"TotalSegments\":3}");
    expect_send(op, SCAN ",\"Limit\":7,\"Segment\":2,\"TotalSegments\":3}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_IDLE);
    CHECK(dyn_pager_stream_done(p, 1));
    op->abort(op, DYN_EINVAL, NULL);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* A start given with the stream works as a position does. */
TEST(start_key_and_count_given_with_the_stream) {
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Query", Q "}", 10, 0), done = stream_of("Query", Q "}", 0, 0);
    struct dyn_op *op;
    setup(&cfg, NULL);
    s.start_key = DYN_SLICE_LIT(K2);
    s.count = 4;
    done.done = 1;
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &done), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
    op = dyn_pager_op(p);
    reply(op, expect_send(op, Q ",\"Limit\":6" ESK(K2) "}"), 200, "{\"Count\":6,\"Items\":[]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(take_stream(p, NULL), 1);
    CHECK(dyn_pager_finished(p));
    {
        struct dyn_buf pos = DYN_BUF_INIT(NULL);
        CHECK_EQ_INT(dyn_pager_position_json(p, &pos), DYN_OK);
        CHECK_EQ_STR(pos.ptr, "{\"streams\":[{\"done\":true,\"count\":0},{\"done\":true,\"count\":10}]}");
        dyn_buf_free(&pos);
    }
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

TEST(resume_rejects_what_is_not_a_position) {
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"streams\":{}}",
        "{\"streams\":[]}",
        "{\"streams\":[{},{}]}",
        "{\"streams\":[1]}",
        "{\"streams\":[{\"count\":-1}]}",
        "{\"streams\":[{\"count\":1.5}]}",
        "{\"streams\":[{\"count\":99999999999999999999}]}",
        "{\"streams\":[{\"key\":\"k\"}]}",
        "{\"streams\":[{\"key\":[]}]}",
        "{\"streams\":[{\"done\":1}]}",
        "{\"streams\":[{}],\"streams\":[{}]}",
        "{\"streams\":[{}]} x",
        "{\"streams\":[{\"key\":{\"a\":}}]}",
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Query", Q "}", 0, 0);
    struct dyn_pager_position at;
    size_t i;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
    for (i = 0; i < N(bad); i++) {
        int rc = dyn_pager_resume(p, dyn_slice_cstr(bad[i]));
        if (rc != DYN_EINVAL) fprintf(stderr, "resume case %u\n", (unsigned)i);
        CHECK_EQ_INT(rc, DYN_EINVAL);
    }
    /* nothing changed */
    CHECK_EQ_INT(dyn_pager_stream_position(p, 0, &at), DYN_OK);
    CHECK(!at.done && at.count == 0 && at.key.len == 0);
    expect_send(dyn_pager_op(p), Q "}");
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

/* ---- abort and misuse ---- */

TEST(abort_drops_calls_in_flight_and_keeps_waiting_pages) {
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Scan", SCAN "}", 0, 0);
    struct dyn_pager_page pg;
    struct dyn_buf pos = DYN_BUF_INIT(NULL);
    struct dyn_op *op;
    struct dyn_call *c0, *c1, *c2;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 3), DYN_OK);
    op = dyn_pager_op(p);
    c0 = expect_send(op, SCAN ",\"Segment\":0,\"TotalSegments\":3}");
    c1 = expect_send(op, SCAN ",\"Segment\":1,\"TotalSegments\":3}");
    c2 = expect_send(op, SCAN ",\"Segment\":2,\"TotalSegments\":3}");
    reply(op, c1, 200, "{\"Count\":1,\"Items\":[{}],\"LastEvaluatedKey\":" K1 "}");
    op->abort(op, DYN_ETIMEOUT, "the driver gave up");
    op->abort(op, DYN_ENOMEM, NULL); /* once */
    CHECK(dyn_call_is_done(c0) && dyn_call_status(c0) == DYN_ETIMEOUT);
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    CHECK_EQ_INT(dyn_pager_status(p), DYN_ETIMEOUT);
    CHECK_EQ_STR(dyn_pager_error(p)->message, "the driver gave up");
    CHECK_EQ_INT(op->feed(op, c0, 0), DYN_OK); /* handed back after all: freed */
    CHECK(!dyn_pager_finished(p));
    CHECK_EQ_INT(dyn_pager_take(p, &pg), 1); /* a page that came is still good */
    CHECK_EQ_INT(pg.stream, 1);
    CHECK_EQ_INT(pg.status, DYN_OK);
    dyn_buf_free(&pg.body);
    CHECK(dyn_pager_finished(p));
    CHECK(dyn_pager_stream_done(p, 2));
    CHECK_EQ_INT(dyn_pager_position_json(p, &pos), DYN_OK);
    CHECK_EQ_STR(pos.ptr, "{\"streams\":[{\"count\":0},{\"key\":" K1 ",\"count\":1},{\"count\":0}]}");
    CHECK_EQ_INT(next_kind(op, NULL), DYN_OP_DONE);
    (void)c2; /* still the pager's: freed with it */
    dyn_buf_free(&pos);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
}

TEST(misuse_is_einval) {
    static const char *const bad_bodies[] = {
        "",
        "[]",
        "{",
        "{\"TableName\":\"t\"} x",
        "{\"TableName\":\"t\",\"Limit\":3}",
        "{\"ExclusiveStartKey\":{}}",
        "{\"Segment\":0}",
        "{\"TotalSegments\":2}",
        "{\"\\u004cimit\":3}",
        "\"TableName\"",
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p;
    struct dyn_pager_stream s = stream_of("Query", Q "}", 0, 0);
    size_t i;
    setup(&cfg, NULL);
    CHECK_EQ_INT(dyn_pager_new(NULL, &p), DYN_EINVAL);
    CHECK(p == NULL);
    CHECK_EQ_INT(dyn_pager_new(&cfg, &p), DYN_OK);
    for (i = 0; i < N(bad_bodies); i++) {
        struct dyn_pager_stream b = stream_of("Query", bad_bodies[i], 0, 0);
        int rc = dyn_pager_add(p, &b);
        if (rc != DYN_EINVAL) fprintf(stderr, "body case %u\n", (unsigned)i);
        CHECK_EQ_INT(rc, DYN_EINVAL);
    }
    s.operation = DYN_SLICE_LIT("GetItem");
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_EINVAL);
    s.operation = DYN_SLICE_LIT("Quer");
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_EINVAL);
    s.operation = DYN_SLICE_LIT("Query");
    s.start_key = DYN_SLICE_LIT("[]");
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_EINVAL);
    s.start_key = DYN_SLICE_LIT("{} {}");
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_EINVAL);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 2), DYN_EINVAL); /* a start key for segments */
    s.start_key = DYN_SLICE_EMPTY;
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 0), DYN_EINVAL);
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, DYN_PAGER_MAX_SEGMENTS + 1), DYN_EINVAL);
    s.count = 3;
    CHECK_EQ_INT(dyn_pager_add_segments(p, &s, 2), DYN_EINVAL);
    s.count = 0;
    CHECK_EQ_INT(dyn_pager_stream_count(p), 0); /* nothing was added */
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_OK);
    CHECK_EQ_INT(dyn_pager_resume(p, DYN_SLICE_LIT("{\"streams\":[{},{}]}")), DYN_EINVAL);
    expect_send(dyn_pager_op(p), Q "}");
    CHECK_EQ_INT(dyn_pager_add(p, &s), DYN_EINVAL); /* started */
    CHECK_EQ_INT(dyn_pager_set_limit(p, 3), DYN_EINVAL);
    CHECK_EQ_INT(dyn_pager_set_max_pages(p, 3), DYN_EINVAL);
    dyn_pager_free(p);
    dyn_pager_free(NULL);
    dyn_call_config_free(&cfg);
}

/* ---- running out of memory ---- */

/*
 * One scenario with every kind of step: a query with a limit and a page
 * size, two scan segments resumed from a position, a retried 500, a 400,
 * positions written after each page. Every step that fails with DYN_ENOMEM
 * is asked again once memory is back, and the run must come out exactly as
 * one without failures. Returns the number of failures met.
 */
static int alloc_scenario(const struct dyn_allocator *a, int budget, struct dyn_buf *log) {
    struct exchange script[] = {
        {0, Q ",\"Limit\":2}", 200, "{\"Count\":2," ITEMS2 ",\"LastEvaluatedKey\":" K1 "}", 0},
        {1, SCAN ",\"Segment\":0,\"TotalSegments\":2}", 500, "{\"__type\":\"x#InternalServerError\"}", 0},
        {1, SCAN ",\"Segment\":0,\"TotalSegments\":2}", 200,
         "{\"Count\":1,\"Items\":[{}],\"ScannedCount\":9,\"LastEvaluatedKey\":" K2 "}", 0},
        {2, SCAN ESK(K1) ",\"Segment\":1,\"TotalSegments\":2}", 200,
         "{\"Count\":0,\"Items\":[],\"LastEvaluatedKey\":" K3 "}", 0},
        {2, SCAN ESK(K3) ",\"Segment\":1,\"TotalSegments\":2}", 400, "{\"__type\":\"x#ValidationException\"}", 0},
        {0, Q ",\"Limit\":1" ESK(K1) "}", 200, "{\"Count\":1,\"Items\":[{}],\"LastEvaluatedKey\":" K2 "}", 0},
        {1, SCAN ESK(K2) ",\"Segment\":0,\"TotalSegments\":2}", 200, "{\"Count\":2," ITEMS2 "}", 0},
    };
    struct dyn_call_config cfg;
    struct dyn_pager *p = NULL;
    struct dyn_pager_stream q = stream_of("Query", Q "}", 3, 2), sc = stream_of("Scan", SCAN "}", 0, 0);
    const char *start = "{\"streams\":[{\"count\":0},{\"count\":0},{\"key\":" K1 ",\"count\":1}]}";
    struct fake f;
    int rc;
    setup(&cfg, a);
    s_walk = 1;
    s_failures = 0;
    testing_alloc_budget = budget;
    TRY(rc, dyn_pager_new(&cfg, &p));
    CHECK_EQ_INT(rc, DYN_OK);
    TRY(rc, dyn_pager_add(p, &q));
    CHECK_EQ_INT(rc, DYN_OK);
    TRY(rc, dyn_pager_add_segments(p, &sc, 2));
    CHECK_EQ_INT(rc, DYN_OK);
    TRY(rc, dyn_pager_resume(p, dyn_slice_cstr(start)));
    CHECK_EQ_INT(rc, DYN_OK);
    fake_init(&f, p, script, N(script));
    f.positions = 1;
    f.pos_alloc = a;
    run(&f);
    check_all_used(script, N(script));
    CHECK_EQ_INT(dyn_pager_status(p), DYN_EAWS);
    testing_alloc_budget = 1 << 30;
    s_walk = 0;
    CHECK_EQ_INT(dyn_buf_append_slice(log, dyn_buf_slice(&f.log)), DYN_OK);
    fake_free(&f);
    dyn_pager_free(p);
    dyn_call_config_free(&cfg);
    return s_failures;
}

TEST(every_allocation_failure_is_survived) {
    struct dyn_allocator a = {testing_failing_alloc, NULL};
    struct dyn_buf want = DYN_BUF_INIT(NULL), got = DYN_BUF_INIT(NULL);
    int budget, failures = 1, walked = 0;
    CHECK_EQ_INT(alloc_scenario(&a, 1 << 30, &want), 0);
    for (budget = 0; budget < 2000 && failures; budget++) {
        dyn_buf_reset(&got);
        failures = alloc_scenario(&a, budget, &got);
        if (failures) walked++;
        if (!dyn_slice_eq(dyn_buf_slice(&got), dyn_buf_slice(&want))) fprintf(stderr, "budget %d\n", budget);
        CHECK_EQ_MEM(got.ptr, got.len, want.ptr, want.len);
    }
    CHECK(failures == 0); /* the walk reached a run with memory enough */
    CHECK(walked > 20);
    if (getenv("DYN_TEST_VERBOSE")) printf("allocation walk: %d runs with a failure\n", walked);
    dyn_buf_free(&want);
    dyn_buf_free(&got);
}

int main(void) {
    RUN(single_query_over_three_pages_carries_keys_byte_exact);
    RUN(limit_member_of_a_request);
    RUN(take_and_last_of_a_page);
    RUN(limit_and_page_size_across_pages);
    RUN(per_stream_and_overall_limits);
    RUN(parallel_scan_segments);
    RUN(parallel_scan_with_an_overall_limit);
    RUN(idle_and_done_around_one_page_per_stream);
    RUN(max_pages_bounds_pages_out_and_waiting);
    RUN(failed_page_ends_only_its_stream);
    RUN(broken_pages_fail_with_ejson);
    RUN(items_skipped_from_the_end_or_walked);
    RUN(empty_pages_move_on_in_the_same_round);
    RUN(position_after_each_page_resumes_with_the_same_request);
    RUN(resume_a_parallel_scan);
    RUN(start_key_and_count_given_with_the_stream);
    RUN(resume_rejects_what_is_not_a_position);
    RUN(abort_drops_calls_in_flight_and_keeps_waiting_pages);
    RUN(misuse_is_einval);
    RUN(every_allocation_failure_is_survived);
    return testing_done();
}
