/*
 * Tests for dynamo/batch.h, driven by a fake server in this file that keeps
 * items by key identity and answers the batch's requests, with faults chosen
 * per test. A driver loop here keeps up to `conc` calls pending and answers
 * the oldest first, on a simulated monotonic clock.
 */
#include "dynamo/batch.h"
#include "dynamo/crypto.h"
#include "dynamo/key.h"
#include "testing.h"

#define MAX_ITEMS 2048

enum fault { F_NONE, F_500, F_THROTTLE, F_TIMEOUT, F_NOT_FOUND, F_PARTIAL, F_BAD_JSON };

struct server {
    /* the store: identity -> item JSON */
    char *ids[MAX_ITEMS];
    size_t id_lens[MAX_ITEMS];
    char *items[MAX_ITEMS];
    int n;
    int requests;
    int ok_first;      /* answer this many requests well, then apply `fault` */
    enum fault fault;  /* for every request after ok_first */
    int fault_count;   /* only this many requests get `fault` (0: every one) */
    int partial_every; /* F_PARTIAL: leave member k unprocessed when k % partial_every == 0, once per key */
    const char *reject_key; /* a request holding this key text gets a ValidationException */
    int max_members, last_members;
    long elapsed_per_answer; /* simulated ms an answer takes */
    char seen_unprocessed[MAX_ITEMS];
};

static struct dyn_retry_bucket s_bucket;
static double s_r = 0.5;
static double fixed_random(void *ud) { return *(double *)ud; }

static void setup(struct dyn_call_config *cfg, const struct dyn_allocator *alloc, int max_attempts) {
    struct dyn_random rnd;
    CHECK_EQ_INT(dyn_call_config_init(cfg, alloc, "http://127.0.0.1:8000", "us-east-1"), DYN_OK);
    CHECK_EQ_INT(dyn_call_config_set_credentials(cfg, DYN_SLICE_LIT("AKIDEXAMPLE"), DYN_SLICE_LIT("secret"),
                                                 DYN_SLICE_EMPTY),
                 DYN_OK);
    cfg->retry.max_attempts = max_attempts;
    dyn_retry_bucket_init(&s_bucket, 0);
    cfg->bucket = &s_bucket;
    s_r = 0.5;
    rnd.fn = fixed_random;
    rnd.ud = &s_r;
    cfg->random = rnd;
}

static struct dyn_batch *new_batch(struct dyn_call_config *cfg, int kind, int two) {
    struct dyn_batch_options o;
    struct dyn_batch *b = NULL;
    dyn_batch_options_default(&o, kind);
    o.table = DYN_SLICE_LIT("t");
    o.pk = DYN_SLICE_LIT("pk");
    if (two) o.sk = DYN_SLICE_LIT("sk");
    CHECK_EQ_INT(dyn_batch_new(cfg, &o, &b), DYN_OK);
    return b;
}

/* Key JSON and identity of string key "k<i>". */
static void key_of(int i, char *json, size_t jn, struct dyn_buf *id) {
    char v[32];
    struct dyn_key_part p;
    snprintf(v, sizeof v, "k%d", i);
    snprintf(json, jn, "{\"pk\":{\"S\":\"%s\"}}", v);
    p.type = 'S';
    p.bytes = dyn_slice_cstr(v);
    dyn_buf_reset(id);
    CHECK_EQ_INT(dyn_key_id(&p, NULL, id), DYN_OK);
}

static int add_put(struct dyn_batch *b, int i, const char *value) {
    char key[64], item[256];
    struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
    int rc;
    key_of(i, key, sizeof key, &id);
    snprintf(item, sizeof item, "{\"pk\":{\"S\":\"k%d\"},\"v\":{\"S\":\"%s\"}}", i, value);
    rc = dyn_batch_put(b, dyn_buf_slice(&id), dyn_slice_cstr(item), NULL);
    dyn_buf_free(&id);
    return rc;
}

static int add_key(struct dyn_batch *b, int i, int get) {
    char key[64];
    struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
    int rc;
    key_of(i, key, sizeof key, &id);
    rc = get ? dyn_batch_get(b, dyn_buf_slice(&id), dyn_slice_cstr(key))
             : dyn_batch_delete(b, dyn_buf_slice(&id), dyn_slice_cstr(key));
    dyn_buf_free(&id);
    return rc;
}

/* ---- the fake server ---- */

static int store_find(struct server *s, dyn_slice id) {
    int i;
    for (i = 0; i < s->n; i++)
        if (s->id_lens[i] == id.len && memcmp(s->ids[i], id.ptr, id.len) == 0) return i;
    return -1;
}

static void store_put(struct server *s, dyn_slice id, dyn_slice item) {
    int i = store_find(s, id);
    if (i < 0) {
        i = s->n++;
        s->ids[i] = malloc(id.len);
        memcpy(s->ids[i], id.ptr, id.len);
        s->id_lens[i] = id.len;
    } else {
        free(s->items[i]);
    }
    s->items[i] = malloc(item.len + 1);
    memcpy(s->items[i], item.ptr, item.len);
    s->items[i][item.len] = '\0';
}

static void store_delete(struct server *s, dyn_slice id) {
    int i = store_find(s, id);
    if (i < 0) return;
    free(s->ids[i]);
    free(s->items[i]);
    s->n--;
    s->ids[i] = s->ids[s->n];
    s->id_lens[i] = s->id_lens[s->n];
    s->items[i] = s->items[s->n];
}

static void server_free(struct server *s) {
    int i;
    for (i = 0; i < s->n; i++) {
        free(s->ids[i]);
        free(s->items[i]);
    }
    s->n = 0;
}

/* The object starting at p (a '{'), by brace count: test data holds no braces in strings. */
static dyn_slice object_at(const char *p) {
    int depth = 0;
    const char *q = p;
    do {
        if (*q == '{') depth++;
        if (*q == '}') depth--;
        q++;
    } while (depth > 0 && *q);
    return dyn_slice_make(p, (size_t)(q - p));
}

static int seen_slot(struct server *s, dyn_slice id) {
    /* a tiny hash of identities already left unprocessed once */
    uint32_t h = dyn_crc32(0, id.ptr, id.len) % MAX_ITEMS;
    if (s->seen_unprocessed[h]) return 1;
    s->seen_unprocessed[h] = 1;
    return 0;
}

/* Answers one request body; writes status and body. */
static long serve(struct server *s, dyn_slice req, int *transport_error, struct dyn_buf *out) {
    const char *p = req.ptr, *end = req.ptr + req.len;
    int get = strstr(req.ptr, "\"Keys\":[") != NULL, members = 0, first_un = 1, first_resp = 1;
    struct dyn_buf un = DYN_BUF_INIT(dyn_default_allocator()), resp = DYN_BUF_INIT(dyn_default_allocator());
    struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
    enum fault f = s->requests < s->ok_first ? F_NONE : s->fault;
    if (s->fault_count > 0 && s->requests >= s->ok_first + s->fault_count) f = F_NONE;
    s->requests++;
    long status = 200;
    *transport_error = 0;
    dyn_buf_reset(out);
    if (s->reject_key && strstr(req.ptr, s->reject_key)) {
        dyn_buf_append_cstr(out, "{\"__type\":\"com.amazon.coral.validate#ValidationException\",\"message\":\"bad key\"}");
        status = 400;
        goto done;
    }
    switch (f) {
    case F_500:
        dyn_buf_append_cstr(out, "{\"__type\":\"com.amazon.coral.service#InternalServerError\",\"message\":\"boom\"}");
        status = 500;
        goto done;
    case F_THROTTLE:
        dyn_buf_append_cstr(out, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\",\"message\":\"slow\"}");
        status = 400;
        goto done;
    case F_NOT_FOUND:
        dyn_buf_append_cstr(out, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException\","
                                 "\"message\":\"Requested resource not found\"}");
        status = 400;
        goto done;
    case F_TIMEOUT: *transport_error = DYN_ETIMEOUT; goto done;
    case F_BAD_JSON: dyn_buf_append_cstr(out, "{\"UnprocessedItems\":"); goto done;
    default: break;
    }
    while (p < end) {
        const char *put = strstr(p, "{\"PutRequest\":{\"Item\":"), *del = strstr(p, "{\"DeleteRequest\":{\"Key\":");
        const char *at;
        dyn_slice obj;
        int is_put;
        if (get) {
            at = members == 0 ? strstr(p, "\"Keys\":[") + 8 : p;
            if (*at != '{') break;
            is_put = 0;
        } else {
            if (!put && !del) break;
            is_put = put && (!del || put < del);
            at = is_put ? put + 22 : del + 24;
        }
        obj = object_at(at);
        p = obj.ptr + obj.len + (get ? 1 : 2); /* past "," or "}}" */
        dyn_buf_reset(&id);
        CHECK_EQ_INT(dyn_key_id_from_item(obj, DYN_SLICE_LIT("pk"), DYN_SLICE_EMPTY, &id), DYN_OK);
        if (f == F_PARTIAL && members % s->partial_every == 0 && !seen_slot(s, dyn_buf_slice(&id))) {
            if (!first_un) dyn_buf_putc(&un, ',');
            first_un = 0;
            if (get) {
                dyn_buf_append_slice(&un, obj);
            } else {
                dyn_buf_append_cstr(&un, is_put ? "{\"PutRequest\":{\"Item\":" : "{\"DeleteRequest\":{\"Key\":");
                dyn_buf_append_slice(&un, obj);
                dyn_buf_append_cstr(&un, "}}");
            }
        } else if (get) {
            int i = store_find(s, dyn_buf_slice(&id));
            if (i >= 0) {
                if (!first_resp) dyn_buf_putc(&resp, ',');
                first_resp = 0;
                dyn_buf_append_cstr(&resp, s->items[i]);
            }
        } else if (is_put) {
            store_put(s, dyn_buf_slice(&id), obj);
        } else {
            store_delete(s, dyn_buf_slice(&id));
        }
        members++;
    }
    s->last_members = members;
    if (members > s->max_members) s->max_members = members;
    if (get) {
        dyn_buf_append_cstr(out, "{\"Responses\":{\"t\":[");
        dyn_buf_append_slice(out, dyn_buf_slice(&resp));
        dyn_buf_append_cstr(out, "]},\"UnprocessedKeys\":{");
        if (!first_un) {
            dyn_buf_append_cstr(out, "\"t\":{\"Keys\":[");
            dyn_buf_append_slice(out, dyn_buf_slice(&un));
            dyn_buf_append_cstr(out, "]}");
        }
        dyn_buf_append_cstr(out, "}}");
    } else {
        dyn_buf_append_cstr(out, "{\"UnprocessedItems\":{");
        if (!first_un) {
            dyn_buf_append_cstr(out, "\"t\":[");
            dyn_buf_append_slice(out, dyn_buf_slice(&un));
            dyn_buf_append_cstr(out, "]");
        }
        dyn_buf_append_cstr(out, "}}");
    }
done:
    dyn_buf_free(&un);
    dyn_buf_free(&resp);
    dyn_buf_free(&id);
    return status;
}

/* ---- the driver ---- */

struct run {
    int sends, waits, max_pending;
    int64_t now;         /* simulated monotonic ms */
    char last_body[4096]; /* the start of the latest request body */
    int body_mark;       /* when a SEND's body contains `mark` while calls are pending, counted here */
    const char *mark;
};

/* Runs the op with up to conc calls pending; returns the status of the run (DYN_OK or a failure). */
static int drive(struct dyn_op *op, struct server *s, int conc, struct run *run) {
    struct dyn_call *pending[64];
    char *sent[64]; /* each pending call's request body */
    size_t sent_len[64];
    int n = 0, rc = DYN_OK, i;
    struct dyn_buf body = DYN_BUF_INIT(dyn_default_allocator());
    const char *mark = run->mark;
    memset(run, 0, sizeof *run);
    run->mark = mark;
    for (;;) {
        struct dyn_op_step step;
        if (n < conc) {
            if ((rc = op->next(op, 1700000000000, run->now, &step)) < 0) break;
            if (step.kind == DYN_OP_DONE) {
                CHECK_EQ_INT(n, 0);
                break;
            }
            if (step.kind == DYN_OP_SEND) {
                struct dyn_step cs;
                /* a driver that runs out of memory gives up: the caller aborts the op */
                if ((rc = dyn_call_next(step.call, 1700000000000, &cs)) < 0) break;
                CHECK_EQ_INT(cs.kind, DYN_STEP_SEND);
                snprintf(run->last_body, sizeof run->last_body, "%.*s", (int)cs.request.body.len, cs.request.body.ptr);
                if (run->mark && n > 0 && strstr(run->last_body, run->mark)) run->body_mark++;
                sent[n] = malloc(cs.request.body.len + 1);
                memcpy(sent[n], cs.request.body.ptr, cs.request.body.len);
                sent[n][cs.request.body.len] = '\0';
                sent_len[n] = cs.request.body.len;
                pending[n++] = step.call;
                run->sends++;
                if (n > run->max_pending) run->max_pending = n;
                continue;
            }
            if (step.kind == DYN_OP_WAIT && n == 0) {
                run->now += step.wait_ms;
                run->waits++;
                continue;
            }
            CHECK(n > 0); /* IDLE, or WAIT with calls pending: answer one */
            if (n == 0) break;
        }
        {
            struct dyn_call *call = pending[0];
            char *req = sent[0];
            size_t req_len = sent_len[0];
            int terr;
            long status;
            memmove(&pending[0], &pending[1], (size_t)(n - 1) * sizeof *pending);
            memmove(&sent[0], &sent[1], (size_t)(n - 1) * sizeof *sent);
            memmove(&sent_len[0], &sent_len[1], (size_t)(n - 1) * sizeof *sent_len);
            n--;
            status = serve(s, dyn_slice_make(req, req_len), &terr, &body);
            free(req);
            run->now += s->elapsed_per_answer;
            if (terr) {
                CHECK_EQ_INT(dyn_call_feed_transport_error(call, terr, "no answer"), DYN_OK);
            } else {
                char crc[16];
                struct dyn_header h[1];
                snprintf(crc, sizeof crc, "%lu", (unsigned long)dyn_crc32(0, body.ptr, body.len));
                h[0].name = DYN_SLICE_LIT("x-amz-crc32");
                h[0].value = dyn_slice_cstr(crc);
                if ((rc = dyn_call_feed(call, status, h, 1, dyn_buf_slice(&body))) < 0) break;
            }
            CHECK(dyn_call_is_done(call));
            if ((rc = op->feed(op, call, run->now)) < 0) break;
        }
    }
    for (i = 0; i < n; i++) free(sent[i]);
    dyn_buf_free(&body);
    return rc;
}

static int count_done(struct dyn_batch *b, int *uncertain) {
    size_t k;
    int done = 0;
    struct dyn_batch_slot_info info;
    if (uncertain) *uncertain = 0;
    for (k = 0; k < dyn_batch_slots(b); k++) {
        CHECK_EQ_INT(dyn_batch_slot(b, k, &info), DYN_OK);
        if (info.done) done++;
        else {
            CHECK(info.cause != NULL);
            if (uncertain && info.uncertain) (*uncertain)++;
        }
    }
    return done;
}

/* ---- cases ---- */

TEST(writes_are_chunked_by_count_and_all_done) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_stats st;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 60; i++) CHECK_EQ_INT(add_put(b, i, "v"), DYN_OK);
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK_EQ_INT(run.sends, 3);
    CHECK_EQ_INT(s.max_members, 25);
    CHECK_EQ_INT(s.last_members, 10);
    CHECK_EQ_INT(s.n, 60);
    CHECK_EQ_INT(count_done(b, NULL), 60);
    CHECK_EQ_INT(dyn_batch_status(b), DYN_OK);
    CHECK(dyn_batch_cause(b) == NULL);
    dyn_batch_get_stats(b, &st);
    CHECK_EQ_INT(st.requests, 3);
    /* the body is the whole request, table name escaped as JSON */
    CHECK(strncmp(run.last_body, "{\"RequestItems\":{\"t\":[{\"PutRequest\":{\"Item\":{\"pk\":{\"S\":\"k50\"}", 60) == 0);
    /* adding after the op ran is refused */
    CHECK_EQ_INT(add_put(b, 99, "late"), DYN_EINVAL);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(duplicate_writes_last_wins_and_reads_once) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_slot_info info;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    CHECK_EQ_INT(add_put(b, 1, "first"), DYN_OK);
    CHECK_EQ_INT(add_put(b, 2, "other"), DYN_OK);
    CHECK_EQ_INT(add_put(b, 1, "last"), DYN_OK);
    CHECK_EQ_INT(dyn_batch_slots(b), 3);
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK_EQ_INT(s.max_members, 2); /* one key once per request */
    CHECK_EQ_INT(s.n, 2);
    for (i = 0; i < s.n; i++)
        if (strstr(s.items[i], "k1")) CHECK(strstr(s.items[i], "\"last\"") != NULL);
    CHECK_EQ_INT(count_done(b, NULL), 3);
    dyn_batch_free(b);

    /* reads: three slots of one key ask once and all get the item */
    b = new_batch(&cfg, DYN_BATCH_GET, 0);
    CHECK_EQ_INT(add_key(b, 1, 1), DYN_OK);
    CHECK_EQ_INT(add_key(b, 3, 1), DYN_OK);
    CHECK_EQ_INT(add_key(b, 1, 1), DYN_OK);
    CHECK_EQ_INT(add_key(b, 1, 1), DYN_OK);
    CHECK_EQ_INT(add_put(b, 5, "x"), DYN_EINVAL); /* a put in a read batch */
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK_EQ_INT(s.last_members, 2);
    CHECK(strstr(run.last_body, "{\"RequestItems\":{\"t\":{\"Keys\":[{\"pk\":{\"S\":\"k1\"}},{\"pk\":{\"S\":\"k3\"}}]}}}") != NULL);
    for (i = 0; i < 4; i++) {
        CHECK_EQ_INT(dyn_batch_slot(b, (size_t)i, &info), DYN_OK);
        CHECK(info.done);
        CHECK_EQ_INT(info.found, i != 1);
        if (i != 1) CHECK_EQ_MEM(info.item.ptr, info.item.len, "{\"pk\":{\"S\":\"k1\"},\"v\":{\"S\":\"last\"}}", 34);
    }
    CHECK_EQ_INT(dyn_batch_slot(b, 4, &info), DYN_EINVAL);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(consistent_reads_and_deletes) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_options o;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 10; i++) add_put(b, i, "v");
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    dyn_batch_free(b);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 10; i += 2) CHECK_EQ_INT(add_key(b, i, 0), DYN_OK);
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK(strstr(run.last_body, "{\"DeleteRequest\":{\"Key\":{\"pk\":{\"S\":\"k0\"}}}") != NULL);
    CHECK_EQ_INT(s.n, 5);
    dyn_batch_free(b);
    dyn_batch_options_default(&o, DYN_BATCH_GET);
    o.table = DYN_SLICE_LIT("t");
    o.pk = DYN_SLICE_LIT("pk");
    o.consistent_read = 1;
    o.per_request = 3;
    CHECK_EQ_INT(dyn_batch_new(&cfg, &o, &b), DYN_OK);
    for (i = 0; i < 10; i++) add_key(b, i, 1);
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK_EQ_INT(run.sends, 4);
    CHECK(strstr(run.last_body, "],\"ConsistentRead\":true}}}") != NULL);
    {
        struct dyn_batch_slot_info info;
        int found = 0;
        for (i = 0; i < 10; i++) {
            dyn_batch_slot(b, (size_t)i, &info);
            CHECK(info.done);
            found += info.found;
            CHECK_EQ_INT(info.found, i % 2);
        }
        CHECK_EQ_INT(found, 5);
    }
    dyn_batch_free(b);
    /* bad options */
    o.per_request = 101;
    CHECK_EQ_INT(dyn_batch_new(&cfg, &o, &b), DYN_EINVAL);
    CHECK(b == NULL);
    o.per_request = 0;
    o.pk = DYN_SLICE_EMPTY;
    CHECK_EQ_INT(dyn_batch_new(&cfg, &o, &b), DYN_EINVAL);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

/* A string of n escaped control characters: 6 bytes of JSON per byte of DynamoDB size. */
static char *escaped_item(int i, size_t n) {
    char *item = malloc(n * 6 + 64), *o;
    size_t k;
    o = item + sprintf(item, "{\"pk\":{\"S\":\"k%d\"},\"v\":{\"S\":\"", i);
    for (k = 0; k < n; k++) {
        memcpy(o, "\\u0001", 6);
        o += 6;
    }
    strcpy(o, "\"}}");
    return item;
}

TEST(requests_stay_under_16_mb) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 30; i++) {
        char *item = escaped_item(i, 200000); /* 1.2 MB of JSON, 200 KB in DynamoDB's count */
        char key[64];
        struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
        size_t size = 0;
        key_of(i, key, sizeof key, &id);
        CHECK_EQ_INT(dyn_batch_put(b, dyn_buf_slice(&id), dyn_slice_cstr(item), &size), DYN_OK);
        CHECK_EQ_INT(size, 200000 + 2 + (i < 10 ? 2 : 3) + 1); /* "pk" "k<i>" "v" value */
        dyn_buf_free(&id);
        free(item);
    }
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK_EQ_INT(run.sends, 3);
    CHECK_EQ_INT(s.max_members, 13);
    CHECK_EQ_INT(s.n, 30);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(items_over_400_kb_are_refused) {
    struct dyn_call_config cfg;
    struct dyn_batch *b;
    struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
    char key[64], *item;
    size_t size = 0, n;
    setup(&cfg, NULL, 4);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    key_of(1, key, sizeof key, &id);
    /* 409600 in all: pk(2) + "k1"(2) + v(1) + the string */
    n = 409600 - 5;
    item = malloc(n + 64);
    sprintf(item, "{\"pk\":{\"S\":\"k1\"},\"v\":{\"S\":\"");
    memset(item + strlen(item), 'x', n);
    strcpy(item + 27 + n, "\"}}");
    CHECK_EQ_INT(dyn_batch_put(b, dyn_buf_slice(&id), dyn_slice_cstr(item), &size), DYN_OK);
    CHECK_EQ_INT(size, 409600);
    free(item);
    n++;
    item = malloc(n + 64);
    sprintf(item, "{\"pk\":{\"S\":\"k1\"},\"v\":{\"S\":\"");
    memset(item + strlen(item), 'x', n);
    strcpy(item + 27 + n, "\"}}");
    CHECK_EQ_INT(dyn_batch_put(b, dyn_buf_slice(&id), dyn_slice_cstr(item), &size), DYN_ERANGE);
    CHECK_EQ_INT(size, 409601);
    CHECK_EQ_INT(dyn_batch_slots(b), 1);
    free(item);
    dyn_buf_free(&id);
    dyn_batch_free(b);
    dyn_call_config_free(&cfg);
}

struct size_case {
    const char *json;
    size_t size;
};

TEST(item_size_follows_dynamodb_rules) {
    static const struct size_case cases[] = {
        {"{\"a\":{\"S\":\"xyz\"}}", 4},
        {"{\"a\":{\"S\":\"\\u00e9\"}}", 3},
        {"{\"a\":{\"N\":\"123\"}}", 1 + 3},
        {"{\"a\":{\"N\":\"-0.00100\"}}", 1 + 2},
        {"{\"a\":{\"BOOL\":true},\"b\":{\"NULL\":true}}", 4},
        {"{\"a\":{\"B\":\"AAEC\"}}", 4},
        {"{\"a\":{\"B\":\"AA==\"}}", 2},
        {"{\"l\":{\"L\":[{\"S\":\"ab\"},{\"N\":\"1\"}]}}", 1 + 3 + 3 + 3},
        {"{\"l\":{\"L\":[]}}", 4},
        {"{\"m\":{\"M\":{\"x\":{\"S\":\"y\"}}}}", 1 + 3 + 2 + 1},
        {"{\"s\":{\"SS\":[\"a\",\"bc\"]},\"n\":{\"NS\":[\"1\",\"22\"]}}", 1 + 3 + 1 + 2 + 2},
    };
    size_t i, size;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size = 0;
        CHECK_EQ_INT(dyn_batch_item_size(dyn_slice_cstr(cases[i].json), NULL, &size), DYN_OK);
        if (size != cases[i].size) fprintf(stderr, "case %zu: %s\n", i, cases[i].json);
        CHECK_EQ_INT(size, cases[i].size);
    }
    CHECK_EQ_INT(dyn_batch_item_size(DYN_SLICE_LIT("{\"a\":{\"Q\":1}}"), NULL, &size), DYN_EINVAL);
    CHECK_EQ_INT(dyn_batch_item_size(DYN_SLICE_LIT("{\"a\":"), NULL, &size), DYN_EJSON);
}

TEST(unprocessed_entries_go_into_the_next_request_while_others_fly) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_stats st;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    s.fault = F_PARTIAL;
    s.partial_every = 5; /* members 0, 5, 10, 15, 20 of each request come back once */
    s.elapsed_per_answer = 20; /* longer than the first backoff: a retry is due while others fly */
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 200; i++) CHECK_EQ_INT(add_put(b, i, "v"), DYN_OK);
    run.mark = "\"k0\"";
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 4, &run), DYN_OK);
    CHECK_EQ_INT(s.n, 200);
    CHECK_EQ_INT(count_done(b, NULL), 200);
    dyn_batch_get_stats(b, &st);
    CHECK_EQ_INT(st.unprocessed, 40);
    /* each group handed back goes out in the next request, with new entries while there are any */
    CHECK(st.requests >= 8 + 2 && st.requests <= 8 + 8);
    /* k0 came back from the first request and went out again while 3 others were still pending */
    CHECK_EQ_INT(run.body_mark, 1);
    CHECK_EQ_INT(run.max_pending, 4);
    dyn_batch_free(b);

    /* reads: UnprocessedKeys likewise */
    memset(s.seen_unprocessed, 0, sizeof s.seen_unprocessed);
    b = new_batch(&cfg, DYN_BATCH_GET, 0);
    for (i = 0; i < 250; i++) CHECK_EQ_INT(add_key(b, i, 1), DYN_OK);
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 4, &run), DYN_OK);
    {
        struct dyn_batch_slot_info info;
        int found = 0;
        for (i = 0; i < 250; i++) {
            dyn_batch_slot(b, (size_t)i, &info);
            CHECK(info.done);
            found += info.found;
        }
        CHECK_EQ_INT(found, 200);
    }
    dyn_batch_get_stats(b, &st);
    CHECK_EQ_INT(st.unprocessed, 20 + 20 + 10);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

/* Which slots are not done, as a string of 0/1, and their causes' codes. */
static void not_done_map(struct dyn_batch *b, char *out, size_t n) {
    size_t k;
    struct dyn_batch_slot_info info;
    for (k = 0; k < n && k < dyn_batch_slots(b); k++) {
        dyn_batch_slot(b, k, &info);
        out[k] = info.done ? '1' : '0';
    }
    out[k] = '\0';
}

TEST(attempts_exhausted_lists_exactly_what_is_not_done) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_slot_info info;
    char map[201];
    int i, uncertain;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 3);
    s.ok_first = 2;
    s.fault = F_500;
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 200; i++) CHECK_EQ_INT(add_put(b, i, "v"), DYN_OK);
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 2, &run), DYN_OK);
    /* the first two requests (50 entries) were written; nothing else */
    CHECK_EQ_INT(s.n, 50);
    CHECK_EQ_INT(count_done(b, &uncertain), 50);
    not_done_map(b, map, 200);
    for (i = 0; i < 200; i++) CHECK_EQ_INT(map[i] == '1', i < 50);
    /* the entries sent got a 500 (maybe written: uncertain), the rest never left */
    dyn_batch_slot(b, 60, &info);
    CHECK(!info.done);
    CHECK_EQ_INT(info.attempts, 3);
    CHECK(info.uncertain);
    CHECK_EQ_STR(info.cause->aws_type, "InternalServerError");
    dyn_batch_slot(b, 199, &info);
    CHECK(!info.done);
    CHECK_EQ_INT(info.attempts, 0);
    CHECK(!info.uncertain);
    CHECK_EQ_STR(info.cause->aws_type, "InternalServerError");
    CHECK_EQ_INT(uncertain, 50);
    CHECK_EQ_INT(dyn_batch_status(b), DYN_EAWS);
    CHECK_EQ_STR(dyn_batch_cause(b)->aws_type, "InternalServerError");
    /* after the first exhausted entry nothing new went out: 2 good + 2 x 3 attempts */
    CHECK_EQ_INT(run.sends, 2 + 2 * 3);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(unprocessed_every_time_runs_out_of_attempts) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_slot_info info;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 2);
    s.fault = F_PARTIAL;
    s.partial_every = 1; /* everything unprocessed, once per key */
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 10; i++) add_put(b, i, "v");
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 2, &run), DYN_OK);
    CHECK_EQ_INT(count_done(b, NULL), 10); /* the second attempt went through */
    dyn_batch_free(b);
    /* with one attempt, the unprocessed entries are the account */
    cfg.retry.max_attempts = 1;
    memset(s.seen_unprocessed, 0, sizeof s.seen_unprocessed);
    server_free(&s);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 10; i++) add_put(b, i, "v");
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 2, &run), DYN_OK);
    CHECK_EQ_INT(count_done(b, NULL), 0);
    dyn_batch_slot(b, 3, &info);
    CHECK_EQ_STR(info.cause->aws_type, "Unprocessed");
    CHECK(!info.uncertain);
    CHECK_EQ_INT(s.n, 0);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(an_error_no_retry_mends_stops_at_once) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    s.fault = F_NOT_FOUND;
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 100; i++) add_put(b, i, "v");
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 1, &run), DYN_OK);
    CHECK_EQ_INT(run.sends, 1);
    CHECK_EQ_INT(count_done(b, NULL), 0);
    CHECK_EQ_STR(dyn_batch_cause(b)->aws_type, "ResourceNotFoundException");
    CHECK_EQ_INT(dyn_batch_cause(b)->http_status, 400);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(a_validation_error_about_one_record_stops_only_that_record) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_slot_info info;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 4);
    s.reject_key = "\"k7\"";
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 60; i++) add_put(b, i, "v");
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 2, &run), DYN_OK);
    CHECK_EQ_INT(s.n, 59);
    CHECK_EQ_INT(count_done(b, NULL), 59);
    dyn_batch_slot(b, 7, &info);
    CHECK(!info.done);
    CHECK_EQ_STR(info.cause->aws_type, "ValidationException");
    CHECK_EQ_INT(info.attempts, 1);
    CHECK_EQ_INT(dyn_batch_status(b), DYN_EAWS);
    /* 3 requests, the failing one again as 25 of one each */
    CHECK_EQ_INT(run.sends, 3 + 25);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(a_stalled_server_fails_the_batch_in_about_one_calls_time) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    int i, attempts = 4;
    long timeout = 10000;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, attempts);
    s.fault = F_TIMEOUT;
    s.elapsed_per_answer = 0;
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 800; i++) add_put(b, i, "v");
    run.mark = NULL;
    /* 8 in flight time out together: the clock moves one timeout per 8 answers */
    s.elapsed_per_answer = timeout / 8;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
    CHECK_EQ_INT(count_done(b, NULL), 0);
    CHECK_EQ_INT(dyn_batch_status(b), DYN_ETIMEOUT);
    /* one call fails after attempts x timeout plus its backoff; the batch within 1.5x of that */
    CHECK(run.now <= (int64_t)(1.5 * (double)(attempts * timeout)));
    CHECK(run.sends <= 8 * attempts);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

/* A source that gives a different value on each draw. */
static double stepping_random(void *ud) {
    double *r = ud;
    *r += 0.37;
    if (*r >= 1.0) *r -= 1.0;
    return *r;
}

TEST(a_failed_request_goes_out_again_whole) {
    /* its members back off together: one request again, not one per member
       spread over the backoff (each of which would hold new work back) */
    static const enum fault faults[] = {F_THROTTLE, F_500, F_TIMEOUT};
    size_t f;
    for (f = 0; f < sizeof faults / sizeof faults[0]; f++) {
        struct dyn_call_config cfg;
        struct server s;
        struct run run;
        struct dyn_batch *b;
        struct dyn_random rnd;
        double r = 0.1;
        int i;
        memset(&s, 0, sizeof s);
        setup(&cfg, NULL, 4);
        rnd.fn = stepping_random;
        rnd.ud = &r;
        cfg.random = rnd;
        s.fault = faults[f];
        s.fault_count = 1;
        b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
        for (i = 0; i < 25; i++) CHECK_EQ_INT(add_put(b, i, "v"), DYN_OK);
        run.mark = NULL;
        CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 8, &run), DYN_OK);
        CHECK_EQ_INT(run.sends, 2);
        CHECK_EQ_INT(s.last_members, 25);
        CHECK_EQ_INT(s.n, 25);
        CHECK_EQ_INT(count_done(b, NULL), 25);
        dyn_batch_free(b);
        server_free(&s);
        dyn_call_config_free(&cfg);
    }
}

TEST(the_retry_quota_bounds_retries) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 50);
    dyn_retry_bucket_init(&s_bucket, 30); /* two transient retries at 14 tokens */
    s.fault = F_500;
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 25; i++) add_put(b, i, "v");
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 1, &run), DYN_OK);
    CHECK_EQ_INT(run.sends, 3);
    CHECK_EQ_INT(count_done(b, NULL), 0);
    CHECK_EQ_INT(s_bucket.tokens, 2);
    dyn_batch_free(b);
    /* a success after a retry refunds it */
    dyn_retry_bucket_init(&s_bucket, 30);
    s.fault = F_THROTTLE;
    s.ok_first = 0;
    s.requests = 0;
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 25; i++) add_put(b, i, "v");
    s.fault = F_NONE;
    s.ok_first = 1000;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 1, &run), DYN_OK);
    CHECK_EQ_INT(s_bucket.tokens, 30);
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(broken_answers_are_retried) {
    struct dyn_call_config cfg;
    struct server s;
    struct run run;
    struct dyn_batch *b;
    struct dyn_batch_slot_info info;
    int i;
    memset(&s, 0, sizeof s);
    setup(&cfg, NULL, 2);
    s.fault = F_BAD_JSON;
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 5; i++) add_put(b, i, "v");
    run.mark = NULL;
    CHECK_EQ_INT(drive(dyn_batch_op(b), &s, 1, &run), DYN_OK);
    CHECK_EQ_INT(run.sends, 2);
    dyn_batch_slot(b, 0, &info);
    CHECK(!info.done);
    CHECK_EQ_STR(info.cause->aws_type, "InvalidResponse");
    dyn_batch_free(b);
    server_free(&s);
    dyn_call_config_free(&cfg);
}

TEST(abort_lists_everything_not_done) {
    struct dyn_call_config cfg;
    struct dyn_batch *b;
    struct dyn_op *op;
    struct dyn_op_step step;
    struct dyn_batch_slot_info info;
    int i;
    setup(&cfg, NULL, 4);
    b = new_batch(&cfg, DYN_BATCH_WRITE, 0);
    for (i = 0; i < 30; i++) add_put(b, i, "v");
    op = dyn_batch_op(b);
    CHECK_EQ_INT(op->next(op, 1700000000000, 0, &step), DYN_OK);
    CHECK_EQ_INT(step.kind, DYN_OP_SEND);
    CHECK_EQ_INT(op->feed(op, step.call, 0), DYN_EINVAL); /* not done yet */
    op->abort(op, DYN_ENOMEM, "driver gave up");
    CHECK_EQ_INT(op->next(op, 1700000000000, 0, &step), DYN_OK);
    CHECK_EQ_INT(step.kind, DYN_OP_DONE);
    CHECK_EQ_INT(count_done(b, NULL), 0);
    dyn_batch_slot(b, 0, &info);
    CHECK(info.uncertain);
    CHECK_EQ_STR(info.cause->message, "driver gave up");
    dyn_batch_slot(b, 29, &info);
    CHECK(!info.uncertain);
    CHECK_EQ_INT(dyn_batch_status(b), DYN_ENOMEM);
    dyn_batch_free(b);
    dyn_call_config_free(&cfg);
}

/* Every allocation of a batch with a re-queue fails in turn: no crash, no leak, a full account. */
TEST(allocation_failure_at_every_step) {
    struct dyn_allocator fa = {testing_failing_alloc, NULL};
    int budget, finished = 0;
    for (budget = 0; budget < 400 && !finished; budget++) {
        struct dyn_call_config cfg;
        struct server s;
        struct run run;
        struct dyn_batch *b = NULL;
        struct dyn_batch_options o;
        int i, rc = DYN_OK, added = 0;
        memset(&s, 0, sizeof s);
        s.fault = F_PARTIAL;
        s.partial_every = 7;
        testing_alloc_budget = 1000;
        setup(&cfg, &fa, 4);
        testing_alloc_budget = budget;
        dyn_batch_options_default(&o, DYN_BATCH_WRITE);
        o.table = DYN_SLICE_LIT("t");
        o.pk = DYN_SLICE_LIT("pk");
        if (dyn_batch_new(&cfg, &o, &b) == DYN_OK) {
            for (i = 0; i < 40 && rc == DYN_OK; i++) {
                rc = add_put(b, i, "v");
                if (rc == DYN_OK) added++;
            }
            CHECK(rc == DYN_OK || rc == DYN_ENOMEM);
            run.mark = NULL;
            rc = drive(dyn_batch_op(b), &s, 3, &run);
            if (rc == DYN_ENOMEM) {
                /* a driver that cannot go on ends the op */
                dyn_batch_op(b)->abort(dyn_batch_op(b), DYN_ENOMEM, NULL);
            }
            {
                int done = count_done(b, NULL);
                CHECK(done <= added);
                CHECK_EQ_INT(dyn_batch_slots(b), added);
                if (done == 40) finished = 1;
                /* nothing done is missing from the store, nothing in the store is unaccounted */
                CHECK(s.n >= done);
            }
            dyn_batch_free(b);
        }
        server_free(&s);
        dyn_call_config_free(&cfg);
    }
    CHECK(finished);
}

int main(void) {
    RUN(writes_are_chunked_by_count_and_all_done);
    RUN(duplicate_writes_last_wins_and_reads_once);
    RUN(consistent_reads_and_deletes);
    RUN(requests_stay_under_16_mb);
    RUN(items_over_400_kb_are_refused);
    RUN(item_size_follows_dynamodb_rules);
    RUN(unprocessed_entries_go_into_the_next_request_while_others_fly);
    RUN(attempts_exhausted_lists_exactly_what_is_not_done);
    RUN(unprocessed_every_time_runs_out_of_attempts);
    RUN(an_error_no_retry_mends_stops_at_once);
    RUN(a_validation_error_about_one_record_stops_only_that_record);
    RUN(a_stalled_server_fails_the_batch_in_about_one_calls_time);
    RUN(a_failed_request_goes_out_again_whole);
    RUN(the_retry_quota_bounds_retries);
    RUN(broken_answers_are_retried);
    RUN(abort_lists_everything_not_done);
    RUN(allocation_failure_at_every_step);
    return testing_done();
}
