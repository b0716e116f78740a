/*
 * BatchWriteItem / BatchGetItem as one op over many calls; see dynamo/batch.h.
 *
 * Entries live in one array in the order they were added; their payloads
 * (ids, JSON) in one arena. An open-addressing map from id to entry resolves
 * duplicates when they are added, so a request never holds one key twice.
 * Entries never sent are taken in order through a cursor; entries to retry
 * wait in a list with the monotonic time their backoff ends, and are taken
 * first. The calls the batch makes try once: every retry decision is made
 * here, per entry, so there is one budget of attempts and not two stacked.
 */
#include "dynamo/batch.h"

#include "dynamo/av.h"
#include "dynamo/json.h"
#include "dynamo/key.h"

#include <stdio.h>

enum s_state {
    E_NEW,    /* never sent */
    E_RETRY,  /* waiting in the retry list */
    E_FLIGHT, /* in a request in flight */
    E_DONE,
    E_FAILED
};

struct s_entry {
    size_t id_off, json_off;
    const char *item; /* reads: the found item's text, inside one of b->answers */
    uint32_t id_len, json_len, item_len;
    unsigned char action; /* 'P' put, 'D' delete, 'G' get */
    unsigned char state;
    unsigned char found, uncertain, solo;
    unsigned char after_failure; /* E_RETRY because its request failed (not handed back unprocessed) */
    int attempts;
    int owed;             /* quota tokens its latest retry took, refunded by a later success */
    int cause;            /* index into b->errors, -1: none */
    int req;              /* its request while in flight */
    int64_t not_before;   /* E_RETRY: monotonic ms its backoff ends */
};

struct s_request {
    struct dyn_call *call; /* NULL: free */
    size_t *members;
    size_t n, cap;
};

struct dyn_batch {
    const struct dyn_allocator *alloc;
    const struct dyn_call_config *cfg;
    struct dyn_op op; /* first member not needed: s_of() maps back */
    struct dyn_batch_options opts;
    struct dyn_random random;
    struct dyn_buf names;  /* table, pk, sk */
    struct dyn_buf head;   /* {"RequestItems":{"<table>": */
    struct dyn_buf data;   /* ids and JSON of the entries */
    struct dyn_buf *answers; /* reads: the answers' bodies, which the found items point into */
    size_t n_answers, cap_answers;
    struct dyn_buf body;   /* scratch: the body being built */
    struct dyn_buf id;     /* scratch: an id read from a response */
    struct s_entry *entries;
    size_t n_entries, cap_entries;
    size_t *slots; /* slot -> entry */
    size_t n_slots, cap_slots;
    size_t *map;   /* open addressing: entry + 1, 0 = empty */
    size_t map_cap;
    size_t next_new; /* cursor over entries for E_NEW */
    size_t *retry;   /* entries in E_RETRY, in the order they failed */
    size_t n_retry, cap_retry;
    struct s_request *reqs;
    size_t n_reqs;
    int in_flight;
    int started, stopping, finished;
    int solo_failures; /* solo validation failures in a row */
    struct dyn_error *errors;
    size_t n_errors, cap_errors;
    int cause; /* the batch's cause: index into errors, -1 */
    struct dyn_batch_stats stats;
};

#define S_OF(op) ((struct dyn_batch *)(void *)((char *)(op) - offsetof(struct dyn_batch, op)))

/* ---- small helpers ---- */

static int s_grow(const struct dyn_allocator *a, void **p, size_t *cap, size_t need, size_t size) {
    size_t ncap;
    void *np;
    if (need <= *cap) return DYN_OK;
    ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / size) return DYN_ENOMEM;
        ncap *= 2;
    }
    np = dyn_mem_realloc(a, *p, *cap * size, ncap * size);
    if (!np) return DYN_ENOMEM;
    *p = np;
    *cap = ncap;
    return DYN_OK;
}

static uint64_t s_hash(dyn_slice s) {
    uint64_t h = UINT64_C(14695981039346656037);
    size_t i;
    for (i = 0; i < s.len; i++) h = (h ^ (unsigned char)s.ptr[i]) * UINT64_C(1099511628211);
    return h ^ (h >> 29);
}

static dyn_slice s_entry_id(const struct dyn_batch *b, const struct s_entry *e) {
    return dyn_slice_make(b->data.ptr + e->id_off, e->id_len);
}

static dyn_slice s_entry_json(const struct dyn_batch *b, const struct s_entry *e) {
    return dyn_slice_make(b->data.ptr + e->json_off, e->json_len);
}

/* The map slot holding id, or the empty slot where it would go. */
static size_t s_map_find(const struct dyn_batch *b, dyn_slice id) {
    size_t mask = b->map_cap - 1, i = (size_t)s_hash(id) & mask;
    while (b->map[i]) {
        const struct s_entry *e = &b->entries[b->map[i] - 1];
        if (dyn_slice_eq(s_entry_id(b, e), id)) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int s_map_grow(struct dyn_batch *b) {
    size_t ncap = b->map_cap ? b->map_cap * 2 : 64, i, *old = b->map, ocap = b->map_cap;
    size_t *nm = dyn_mem_alloc(b->alloc, ncap * sizeof *nm);
    if (!nm) return DYN_ENOMEM;
    memset(nm, 0, ncap * sizeof *nm);
    b->map = nm;
    b->map_cap = ncap;
    for (i = 0; i < ocap; i++)
        if (old[i]) b->map[s_map_find(b, s_entry_id(b, &b->entries[old[i] - 1]))] = old[i];
    dyn_mem_free(b->alloc, old, ocap * sizeof *old);
    return DYN_OK;
}

/* Records an error for later reports; returns its index or -1 (no memory: the batch cause is used). */
static int s_keep_error(struct dyn_batch *b, const struct dyn_error *err) {
    if (s_grow(b->alloc, (void **)&b->errors, &b->cap_errors, b->n_errors + 1, sizeof *b->errors) < 0) return -1;
    b->errors[b->n_errors] = *err;
    return (int)b->n_errors++;
}

static void s_set_error(struct dyn_error *err, int status, int retry_class, const char *type, const char *message) {
    memset(err, 0, sizeof *err);
    err->status = status;
    err->retry_class = retry_class;
    snprintf(err->aws_type, sizeof err->aws_type, "%s", type);
    snprintf(err->message, sizeof err->message, "%s", message);
}

/* Stops the batch: nothing new goes out. The first stop's reason stays, unless a later one is kept as "last". */
static void s_stop(struct dyn_batch *b, int cause) {
    b->stopping = 1;
    if (cause >= 0) b->cause = cause;
}

/* ---- options and lifecycle ---- */

void dyn_batch_options_default(struct dyn_batch_options *opts, int kind) {
    memset(opts, 0, sizeof *opts);
    opts->kind = kind;
    opts->table = DYN_SLICE_EMPTY;
    opts->pk = DYN_SLICE_EMPTY;
    opts->sk = DYN_SLICE_EMPTY;
}

static void s_op_abort(struct dyn_op *op, int status, const char *message);
static int s_op_next(struct dyn_op *op, int64_t now_unix_ms, int64_t now_mono_ms, struct dyn_op_step *step);
static int s_op_feed(struct dyn_op *op, struct dyn_call *call, int64_t now_mono_ms);

int dyn_batch_new(const struct dyn_call_config *cfg, const struct dyn_batch_options *opts, struct dyn_batch **out) {
    struct dyn_batch *b;
    size_t max = opts && opts->kind == DYN_BATCH_GET ? DYN_BATCH_MAX_KEYS : DYN_BATCH_MAX_WRITES;
    int rc;
    *out = NULL;
    if (!cfg || !opts || (opts->kind != DYN_BATCH_WRITE && opts->kind != DYN_BATCH_GET) || opts->table.len == 0 ||
        opts->pk.len == 0 || opts->per_request > max || opts->max_attempts < 0)
        return DYN_EINVAL;
    b = dyn_mem_alloc(cfg->alloc, sizeof *b);
    if (!b) return DYN_ENOMEM;
    memset(b, 0, sizeof *b);
    b->alloc = cfg->alloc;
    b->cfg = cfg;
    b->random = cfg->random;
    b->cause = -1;
    b->op.next = s_op_next;
    b->op.feed = s_op_feed;
    b->op.abort = s_op_abort;
    dyn_buf_init(&b->names, cfg->alloc);
    dyn_buf_init(&b->head, cfg->alloc);
    dyn_buf_init(&b->data, cfg->alloc);
    dyn_buf_init(&b->body, cfg->alloc);
    dyn_buf_init(&b->id, cfg->alloc);
    b->opts = *opts;
    if (!b->opts.per_request) b->opts.per_request = max;
    if (!b->opts.max_attempts) b->opts.max_attempts = cfg->retry.max_attempts > 0 ? cfg->retry.max_attempts : 1;
    /* the options' slices now point into names */
    if ((rc = dyn_buf_reserve(&b->names, opts->table.len + opts->pk.len + opts->sk.len)) < 0) goto fail;
    dyn_buf_append_slice(&b->names, opts->table);
    dyn_buf_append_slice(&b->names, opts->pk);
    dyn_buf_append_slice(&b->names, opts->sk);
    b->opts.table = dyn_slice_make(b->names.ptr, opts->table.len);
    b->opts.pk = dyn_slice_make(b->names.ptr + opts->table.len, opts->pk.len);
    b->opts.sk = dyn_slice_make(b->names.ptr + opts->table.len + opts->pk.len, opts->sk.len);
    if ((rc = dyn_buf_append_cstr(&b->head, "{\"RequestItems\":{")) < 0) goto fail;
    if ((rc = dyn_json_write_string(&b->head, b->opts.table)) < 0) goto fail;
    if ((rc = dyn_buf_putc(&b->head, ':')) < 0) goto fail;
    *out = b;
    return DYN_OK;
fail:
    dyn_batch_free(b);
    return rc;
}

void dyn_batch_free(struct dyn_batch *b) {
    size_t i;
    if (!b) return;
    for (i = 0; i < b->n_reqs; i++) {
        dyn_call_free(b->reqs[i].call);
        dyn_mem_free(b->alloc, b->reqs[i].members, b->reqs[i].cap * sizeof(size_t));
    }
    dyn_mem_free(b->alloc, b->reqs, b->n_reqs * sizeof *b->reqs);
    dyn_buf_free(&b->names);
    dyn_buf_free(&b->head);
    dyn_buf_free(&b->data);
    for (i = 0; i < b->n_answers; i++) dyn_buf_free(&b->answers[i]);
    dyn_mem_free(b->alloc, b->answers, b->cap_answers * sizeof *b->answers);
    dyn_buf_free(&b->body);
    dyn_buf_free(&b->id);
    dyn_mem_free(b->alloc, b->entries, b->cap_entries * sizeof *b->entries);
    dyn_mem_free(b->alloc, b->slots, b->cap_slots * sizeof *b->slots);
    dyn_mem_free(b->alloc, b->map, b->map_cap * sizeof *b->map);
    dyn_mem_free(b->alloc, b->retry, b->cap_retry * sizeof *b->retry);
    dyn_mem_free(b->alloc, b->errors, b->cap_errors * sizeof *b->errors);
    dyn_mem_free(b->alloc, b, sizeof *b);
}

struct dyn_op *dyn_batch_op(struct dyn_batch *b) { return &b->op; }
void dyn_batch_set_random(struct dyn_batch *b, struct dyn_random random) { b->random = random; }
size_t dyn_batch_slots(const struct dyn_batch *b) { return b->n_slots; }
int dyn_batch_kind(const struct dyn_batch *b) { return b->opts.kind; }
void dyn_batch_get_stats(const struct dyn_batch *b, struct dyn_batch_stats *out) { *out = b->stats; }

/* ---- adding entries ---- */

static int s_add(struct dyn_batch *b, unsigned char action, dyn_slice id, dyn_slice json) {
    size_t at, data_len = b->data.len, e_index;
    struct s_entry *e;
    int rc;
    if (b->started) return DYN_EINVAL;
    if ((action == 'G') != (b->opts.kind == DYN_BATCH_GET)) return DYN_EINVAL;
    if (id.len == 0 || id.len > UINT32_MAX || json.len > UINT32_MAX) return DYN_EINVAL;
    if ((rc = s_grow(b->alloc, (void **)&b->slots, &b->cap_slots, b->n_slots + 1, sizeof *b->slots)) < 0) return rc;
    if ((b->n_entries + 1) * 2 > b->map_cap && (rc = s_map_grow(b)) < 0) return rc;
    at = s_map_find(b, id);
    if (b->map[at]) {
        e_index = b->map[at] - 1;
        e = &b->entries[e_index];
        if (action != 'G') {
            /* the last write wins: the entry now carries this payload (and action) */
            if ((rc = dyn_buf_append_slice(&b->data, json)) < 0) return rc;
            e->json_off = data_len;
            e->json_len = (uint32_t)json.len;
            e->action = action;
        }
        b->slots[b->n_slots++] = e_index;
        return DYN_OK;
    }
    if ((rc = s_grow(b->alloc, (void **)&b->entries, &b->cap_entries, b->n_entries + 1, sizeof *b->entries)) < 0)
        return rc;
    if ((rc = dyn_buf_reserve(&b->data, id.len + json.len)) < 0) return rc;
    dyn_buf_append_slice(&b->data, id);
    dyn_buf_append_slice(&b->data, json);
    e_index = b->n_entries++;
    e = &b->entries[e_index];
    memset(e, 0, sizeof *e);
    e->id_off = data_len;
    e->id_len = (uint32_t)id.len;
    e->json_off = data_len + id.len;
    e->json_len = (uint32_t)json.len;
    e->action = action;
    e->state = E_NEW;
    e->cause = -1;
    e->req = -1;
    b->map[at] = e_index + 1;
    b->slots[b->n_slots++] = e_index;
    return DYN_OK;
}

int dyn_batch_put(struct dyn_batch *b, dyn_slice id, dyn_slice item_json, size_t *size) {
    /* An item's DynamoDB size never exceeds its JSON length (names and values
       are there in full, plus quotes, type letters and base64), so only a
       long text needs counting. */
    if (size) *size = item_json.len;
    if (item_json.len > DYN_BATCH_MAX_ITEM_SIZE) {
        size_t n = 0;
        int rc = dyn_batch_item_size(item_json, b->alloc, &n);
        if (rc < 0) return rc;
        if (size) *size = n;
        if (n > DYN_BATCH_MAX_ITEM_SIZE) return DYN_ERANGE;
    }
    return s_add(b, 'P', id, item_json);
}

int dyn_batch_delete(struct dyn_batch *b, dyn_slice id, dyn_slice key_json) { return s_add(b, 'D', id, key_json); }
int dyn_batch_get(struct dyn_batch *b, dyn_slice id, dyn_slice key_json) { return s_add(b, 'G', id, key_json); }

/* ---- building requests ---- */

static size_t s_entry_cost(const struct dyn_batch *b, const struct s_entry *e) {
    return (size_t)e->json_len + (b->opts.kind == DYN_BATCH_GET ? 1 : 32);
}

static int s_append_member(struct dyn_batch *b, const struct s_entry *e, int first) {
    struct dyn_buf *o = &b->body;
    int rc = DYN_OK;
    if (!first && (rc = dyn_buf_putc(o, ',')) < 0) return rc;
    if (e->action == 'G') return dyn_buf_append_slice(o, s_entry_json(b, e));
    if ((rc = dyn_buf_append_cstr(o, e->action == 'P' ? "{\"PutRequest\":{\"Item\":" : "{\"DeleteRequest\":{\"Key\":")) < 0)
        return rc;
    if ((rc = dyn_buf_append_slice(o, s_entry_json(b, e))) < 0) return rc;
    return dyn_buf_append(o, "}}", 2);
}

static struct s_request *s_free_request(struct dyn_batch *b, int *index) {
    size_t i;
    struct s_request *grown;
    for (i = 0; i < b->n_reqs; i++)
        if (!b->reqs[i].call) break;
    if (i == b->n_reqs) {
        grown = dyn_mem_realloc(b->alloc, b->reqs, b->n_reqs * sizeof *b->reqs, (b->n_reqs + 1) * sizeof *b->reqs);
        if (!grown) return NULL;
        b->reqs = grown;
        memset(&b->reqs[b->n_reqs], 0, sizeof *b->reqs);
        b->n_reqs++;
    }
    *index = (int)i;
    return &b->reqs[i];
}

/*
 * Chooses the members of the next request: retries whose backoff is over
 * first (a solo entry goes alone), then entries never sent. While an entry
 * of a failed request still backs off nothing new is taken, so a failing
 * server is not fed fresh work while old work waits (this is what bounds a
 * batch's time to about one call's); entries handed back unprocessed do not
 * hold new work back. Sets *wait_ms when nothing can go now but a retry will.
 */
static int s_choose(struct dyn_batch *b, struct s_request *r, int64_t now, int64_t *wait_ms) {
    size_t i, bytes = b->head.len + 16, max = b->opts.per_request;
    int64_t soonest = INT64_MAX;
    int blocked = 0, rc;
    r->n = 0;
    if ((rc = s_grow(b->alloc, (void **)&r->members, &r->cap, max, sizeof *r->members)) < 0) return rc;
    for (i = 0; i < b->n_retry && r->n < max;) {
        size_t ei = b->retry[i];
        struct s_entry *e = &b->entries[ei];
        if (e->not_before > now) {
            if (e->not_before < soonest) soonest = e->not_before;
            if (e->after_failure) blocked = 1;
            i++;
            continue;
        }
        if ((e->solo && r->n > 0) || bytes + s_entry_cost(b, e) > DYN_BATCH_MAX_REQUEST_BYTES) {
            i++;
            continue;
        }
        r->members[r->n++] = ei;
        bytes += s_entry_cost(b, e);
        memmove(&b->retry[i], &b->retry[i + 1], (b->n_retry - i - 1) * sizeof *b->retry);
        b->n_retry--;
        if (e->solo) return DYN_OK;
    }
    for (; i < b->n_retry; i++)
        if (b->entries[b->retry[i]].after_failure && b->entries[b->retry[i]].not_before > now) blocked = 1;
    while (!blocked && b->next_new < b->n_entries && r->n < max) {
        struct s_entry *e = &b->entries[b->next_new];
        if (bytes + s_entry_cost(b, e) > DYN_BATCH_MAX_REQUEST_BYTES && r->n > 0) break;
        r->members[r->n++] = b->next_new++;
        bytes += s_entry_cost(b, e);
    }
    if (r->n == 0 && soonest != INT64_MAX) *wait_ms = soonest - now;
    return DYN_OK;
}

/* Puts members back where s_choose took them from (a request that could not be made). */
static void s_unchoose(struct dyn_batch *b, struct s_request *r) {
    size_t k;
    for (k = r->n; k-- > 0;) {
        size_t ei = r->members[k];
        if (b->entries[ei].state == E_NEW) {
            b->next_new = ei; /* entries never sent are taken in order, so the first one is the lowest */
        } else {
            /* room is there: the list held them a moment ago */
            memmove(&b->retry[1], &b->retry[0], b->n_retry * sizeof *b->retry);
            b->retry[0] = ei;
            b->n_retry++;
        }
    }
    r->n = 0;
}

static int s_build_body(struct dyn_batch *b, const struct s_request *r) {
    size_t k;
    int rc;
    dyn_buf_reset(&b->body);
    if ((rc = dyn_buf_append_slice(&b->body, dyn_buf_slice(&b->head))) < 0) return rc;
    if ((rc = dyn_buf_append_cstr(&b->body, b->opts.kind == DYN_BATCH_GET ? "{\"Keys\":[" : "[")) < 0) return rc;
    for (k = 0; k < r->n; k++)
        if ((rc = s_append_member(b, &b->entries[r->members[k]], k == 0)) < 0) return rc;
    if (b->opts.kind == DYN_BATCH_GET)
        return dyn_buf_append_cstr(&b->body, b->opts.consistent_read ? "],\"ConsistentRead\":true}}}" : "]}}}");
    return dyn_buf_append_cstr(&b->body, "]}}");
}

/* Every entry not done is failed with its own cause, else the batch's. */
static void s_finish(struct dyn_batch *b) {
    size_t i;
    if (b->finished) return;
    b->finished = 1;
    for (i = 0; i < b->n_entries; i++) {
        struct s_entry *e = &b->entries[i];
        if (e->state == E_DONE || e->state == E_FAILED) continue;
        e->state = E_FAILED;
        if (e->cause < 0) e->cause = b->cause;
    }
}

static int s_op_next(struct dyn_op *op, int64_t now_unix_ms, int64_t now_mono_ms, struct dyn_op_step *step) {
    struct dyn_batch *b = S_OF(op);
    struct s_request *r;
    int64_t wait = -1;
    int index, rc;
    size_t k;
    (void)now_unix_ms;
    memset(step, 0, sizeof *step);
    b->started = 1;
    if (b->stopping || b->finished) {
        if (b->in_flight == 0) {
            s_finish(b);
            step->kind = DYN_OP_DONE;
        } else {
            step->kind = DYN_OP_IDLE;
        }
        return DYN_OK;
    }
    if (!(r = s_free_request(b, &index))) return DYN_ENOMEM;
    if ((rc = s_choose(b, r, now_mono_ms, &wait)) < 0) return rc;
    if (r->n == 0) {
        if (wait >= 0) {
            step->kind = DYN_OP_WAIT;
            step->wait_ms = wait > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)wait;
        } else if (b->in_flight) {
            step->kind = DYN_OP_IDLE;
        } else {
            s_finish(b);
            step->kind = DYN_OP_DONE;
        }
        return DYN_OK;
    }
    if ((rc = s_build_body(b, r)) < 0 ||
        (rc = dyn_call_new(b->cfg, b->opts.kind == DYN_BATCH_GET ? DYN_SLICE_LIT("BatchGetItem")
                                                                   : DYN_SLICE_LIT("BatchWriteItem"),
                           dyn_buf_slice(&b->body), &r->call)) < 0) {
        s_unchoose(b, r);
        return rc;
    }
    dyn_call_set_policy(r->call, 1, 0);
    dyn_call_set_random(r->call, b->random);
    for (k = 0; k < r->n; k++) {
        struct s_entry *e = &b->entries[r->members[k]];
        e->state = E_FLIGHT;
        e->req = index;
        e->attempts++;
    }
    b->in_flight++;
    b->stats.requests++;
    step->kind = DYN_OP_SEND;
    step->call = r->call;
    return DYN_OK;
}

/* ---- reading answers ---- */

static double s_draw(struct dyn_batch *b) { return b->random.fn ? b->random.fn(b->random.ud) : 0.5; }

static void s_retry_later(struct dyn_batch *b, size_t ei, int64_t when) {
    struct s_entry *e = &b->entries[ei];
    e->state = E_RETRY;
    e->req = -1;
    e->not_before = when;
    /* room: s_choose's retry list never holds more than the entries */
    b->retry[b->n_retry++] = ei;
}

/* An entry that came back unprocessed: again after a backoff (r: the answer's draw), unless out of attempts. */
static void s_unprocessed(struct dyn_batch *b, size_t ei, int64_t now, double r) {
    struct s_entry *e = &b->entries[ei];
    b->stats.unprocessed++;
    if (e->attempts >= b->opts.max_attempts) {
        struct dyn_error err;
        s_set_error(&err, DYN_EAWS, DYN_RETRY_THROTTLING, "Unprocessed",
                    "the server returned it unprocessed on every attempt");
        e->state = E_FAILED;
        e->req = -1;
        e->cause = s_keep_error(b, &err);
        s_stop(b, e->cause);
        return;
    }
    b->stats.retried_entries++;
    e->after_failure = 0;
    s_retry_later(b, ei, now + dyn_retry_backoff_ms(&b->cfg->retry, DYN_RETRY_TRANSIENT, e->attempts, r, -1));
}

/* The member of request `index` with this id, or SIZE_MAX. */
static size_t s_member(const struct dyn_batch *b, int index, dyn_slice id) {
    size_t at;
    const struct s_entry *e;
    if (!b->map_cap) return SIZE_MAX;
    at = s_map_find(b, id);
    if (!b->map[at]) return SIZE_MAX;
    e = &b->entries[b->map[at] - 1];
    if (e->state != E_FLIGHT || e->req != index) return SIZE_MAX;
    return b->map[at] - 1;
}

/* The answers are read with the json.h scanner: the structure is known, and
   the parts not needed (other members, the items' contents) are skipped
   without building tokens for each string. */

/* Reads a member name; true when it is `want` (escapes resolved through scratch). */
static int s_name_is(struct dyn_batch *b, struct dyn_json_reader *r, dyn_slice want, int *is) {
    struct dyn_json_token t;
    int rc;
    if ((rc = dyn_json_scan_name(r, &t)) < 0) return rc;
    if (!t.escaped) {
        *is = dyn_slice_eq(t.text, want);
        return DYN_OK;
    }
    dyn_buf_reset(&b->id);
    if ((rc = dyn_json_unescape(t.text, &b->id)) < 0) return rc;
    *is = dyn_slice_eq(dyn_buf_slice(&b->id), want);
    return DYN_OK;
}

enum { S_FOUND, S_UNPROCESSED_KEYS, S_UNPROCESSED_WRITES };

/* One key or item object of a list: found (stored) or handed back (re-queued). */
static int s_take_object(struct dyn_batch *b, struct dyn_json_reader *r, int index, int what, int64_t now,
                         double draw) {
    dyn_slice raw;
    size_t ei = SIZE_MAX;
    const char *start;
    int rc;
    /* one pass gives the key and the object's extent; a found item's whole
       text is read by the decoder that turns it into a record */
    r->p = start = dyn_json_skip_ws(r->p, r->end);
    dyn_buf_reset(&b->id);
    rc = dyn_key_id_scan(r, b->opts.pk, b->opts.sk, &b->id);
    if (rc == DYN_ENOMEM || rc == DYN_EJSON) return rc;
    if (rc == DYN_OK) {
        ei = s_member(b, index, dyn_buf_slice(&b->id));
    } else if ((rc = dyn_json_scan_skip(r)) < 0) { /* not a key of ours: skip it */
        return rc;
    }
    if (ei == SIZE_MAX) return DYN_OK;
    raw = dyn_slice_make(start, (size_t)(r->p - start));
    if (what == S_FOUND) {
        struct s_entry *e = &b->entries[ei];
        if (e->found) return DYN_OK;
        if (raw.len > UINT32_MAX) return DYN_EJSON;
        e->item = raw.ptr; /* the answer's body stays with the batch */
        e->item_len = (uint32_t)raw.len;
        e->found = 1;
    } else {
        s_unprocessed(b, ei, now, draw);
    }
    return DYN_OK;
}

/* A list of write requests: [{"PutRequest":{"Item":{..}}} | {"DeleteRequest":{"Key":{..}}}, ...] */
static int s_read_write_requests(struct dyn_batch *b, struct dyn_json_reader *r, int index, int64_t now,
                                 double draw) {
    struct dyn_json_token t;
    int rc, more, first = 1;
    if ((rc = dyn_json_scan_char(r, '[')) < 0) return rc;
    for (;;) {
        int more2, first2 = 1;
        if ((rc = dyn_json_scan_more(r, ']', first, &more)) < 0 || !more) return rc;
        first = 0;
        if ((rc = dyn_json_scan_char(r, '{')) < 0) return rc;
        for (;;) { /* "PutRequest": {...} */
            int more3, first3 = 1;
            if ((rc = dyn_json_scan_more(r, '}', first2, &more2)) < 0) return rc;
            if (!more2) break;
            first2 = 0;
            if ((rc = dyn_json_scan_name(r, &t)) < 0) return rc;
            if ((rc = dyn_json_scan_char(r, '{')) < 0) return rc;
            for (;;) { /* "Item": {...} or "Key": {...}: either holds the key */
                if ((rc = dyn_json_scan_more(r, '}', first3, &more3)) < 0) return rc;
                if (!more3) break;
                first3 = 0;
                if ((rc = dyn_json_scan_name(r, &t)) < 0) return rc;
                if ((rc = s_take_object(b, r, index, S_UNPROCESSED_WRITES, now, draw)) < 0) return rc;
            }
        }
    }
}

/* A list of key or item objects. */
static int s_read_objects(struct dyn_batch *b, struct dyn_json_reader *r, int index, int what, int64_t now,
                          double draw) {
    int rc, more, first = 1;
    if ((rc = dyn_json_scan_char(r, '[')) < 0) return rc;
    for (;;) {
        if ((rc = dyn_json_scan_more(r, ']', first, &more)) < 0 || !more) return rc;
        first = 0;
        if ((rc = s_take_object(b, r, index, what, now, draw)) < 0) return rc;
    }
}

/* {"<table>": <value>, ...}: reads the table's value as `what` says, skips the others. */
static int s_read_table_map(struct dyn_batch *b, struct dyn_json_reader *r, int index, int what, int64_t now,
                            double draw) {
    int rc, more, first = 1, is;
    if ((rc = dyn_json_scan_char(r, '{')) < 0) return rc;
    for (;;) {
        if ((rc = dyn_json_scan_more(r, '}', first, &more)) < 0 || !more) return rc;
        first = 0;
        if ((rc = s_name_is(b, r, b->opts.table, &is)) < 0) return rc;
        if (!is) {
            if ((rc = dyn_json_scan_skip(r)) < 0) return rc;
        } else if (what == S_UNPROCESSED_WRITES) {
            if ((rc = s_read_write_requests(b, r, index, now, draw)) < 0) return rc;
        } else if (what == S_FOUND) {
            if ((rc = s_read_objects(b, r, index, S_FOUND, now, draw)) < 0) return rc;
        } else {
            /* {"Keys": [...], "ConsistentRead": ...} */
            int more2, first2 = 1, keys;
            if ((rc = dyn_json_scan_char(r, '{')) < 0) return rc;
            for (;;) {
                if ((rc = dyn_json_scan_more(r, '}', first2, &more2)) < 0) return rc;
                if (!more2) break;
                first2 = 0;
                if ((rc = s_name_is(b, r, DYN_SLICE_LIT("Keys"), &keys)) < 0) return rc;
                rc = keys ? s_read_objects(b, r, index, S_UNPROCESSED_KEYS, now, draw) : dyn_json_scan_skip(r);
                if (rc < 0) return rc;
            }
        }
    }
}

/* Reads a successful answer: found items, unprocessed entries. */
static int s_read_answer(struct dyn_batch *b, int index, dyn_slice body, int64_t now) {
    struct dyn_json_reader r;
    int rc, more, first = 1;
    /* one draw per answer: what it hands back goes out again together */
    double draw = s_draw(b);
    dyn_json_reader_init(&r, body);
    if ((rc = dyn_json_scan_char(&r, '{')) < 0) return rc;
    for (;;) {
        struct dyn_json_token t;
        int what = -1;
        if ((rc = dyn_json_scan_more(&r, '}', first, &more)) < 0) return rc;
        if (!more) break;
        first = 0;
        if ((rc = dyn_json_scan_name(&r, &t)) < 0) return rc;
        if (b->opts.kind == DYN_BATCH_WRITE && dyn_slice_eq_cstr(t.text, "UnprocessedItems"))
            what = S_UNPROCESSED_WRITES;
        else if (b->opts.kind == DYN_BATCH_GET && dyn_slice_eq_cstr(t.text, "Responses"))
            what = S_FOUND;
        else if (b->opts.kind == DYN_BATCH_GET && dyn_slice_eq_cstr(t.text, "UnprocessedKeys"))
            what = S_UNPROCESSED_KEYS;
        rc = what < 0 ? dyn_json_scan_skip(&r) : s_read_table_map(b, &r, index, what, now, draw);
        if (rc < 0) return rc;
    }
    r.p = dyn_json_skip_ws(r.p, r.end);
    return r.p == r.end ? DYN_OK : DYN_EJSON;
}

/* An answer lost on the way may still have been acted on. */
static int s_answer_lost(const struct dyn_error *err) {
    return err->status == DYN_ETRANSPORT || err->status == DYN_ETIMEOUT || err->status == DYN_ECRC ||
           err->http_status >= 500;
}

/* A request failed as a whole. */
static void s_request_failed(struct dyn_batch *b, struct s_request *r, int index, const struct dyn_error *err,
                             int64_t retry_after_ms, int64_t now) {
    size_t k;
    int cause = s_keep_error(b, err), lost = s_answer_lost(err);
    int retryable = err->retry_class == DYN_RETRY_TRANSIENT || err->retry_class == DYN_RETRY_THROTTLING;
    int cost = 1;
    /* one draw per failed request, as per answer for unprocessed entries: its
       members back off together and go out again in one request, not one
       request each spread over the backoff window */
    double draw = s_draw(b);
    (void)index;
    b->stats.failed_requests++;
    if (cause >= 0) b->cause = cause;
    if (retryable && b->cfg->bucket) cost = dyn_retry_bucket_acquire(b->cfg->bucket, err->retry_class);
    if (!retryable && err->status == DYN_EAWS && strcmp(err->aws_type, "ValidationException") == 0) {
        /* perhaps about one record: try each alone, without counting it as an attempt */
        if (r->n > 1) {
            for (k = 0; k < r->n; k++) {
                struct s_entry *e = &b->entries[r->members[k]];
                e->attempts--;
                e->solo = 1;
                s_retry_later(b, r->members[k], now);
            }
            return;
        }
        if (++b->solo_failures < (int)b->opts.per_request || b->opts.per_request == 1) {
            struct s_entry *e = &b->entries[r->members[0]];
            e->state = E_FAILED;
            e->req = -1;
            e->cause = cause;
            return;
        }
        /* every record alone fails the same way: the error is not about records */
    }
    for (k = 0; k < r->n; k++) {
        size_t ei = r->members[k];
        struct s_entry *e = &b->entries[ei];
        if (lost && e->action != 'G') e->uncertain = 1;
        e->cause = cause;
        if (!retryable || cost == 0 || e->attempts >= b->opts.max_attempts || b->stopping) {
            e->state = E_FAILED;
            e->req = -1;
            continue;
        }
        e->owed = cost;
        e->after_failure = 1;
        b->stats.retried_entries++;
        s_retry_later(b, ei,
                      now + dyn_retry_backoff_ms(&b->cfg->retry, err->retry_class, e->attempts, draw, retry_after_ms));
    }
    /* out of attempts or quota, or not retryable: no retry can finish the batch now */
    for (k = 0; k < r->n; k++)
        if (b->entries[r->members[k]].state == E_FAILED) {
            s_stop(b, cause);
            break;
        }
}

static int s_op_feed(struct dyn_op *op, struct dyn_call *call, int64_t now_mono_ms) {
    struct dyn_batch *b = S_OF(op);
    struct s_request *r = NULL;
    int index = -1, rc = DYN_OK, status;
    size_t i, k;
    for (i = 0; i < b->n_reqs; i++)
        if (call && b->reqs[i].call == call) {
            r = &b->reqs[i];
            index = (int)i;
            break;
        }
    if (!r || !dyn_call_is_done(call)) return DYN_EINVAL;
    /* room for every member to go back to the retry list */
    if ((rc = s_grow(b->alloc, (void **)&b->retry, &b->cap_retry, b->n_retry + r->n, sizeof *b->retry)) < 0)
        goto nomem;
    status = dyn_call_status(call);
    if (status == DYN_OK) {
        int owed = 0;
        dyn_slice body = dyn_call_body(call);
        if (b->opts.kind == DYN_BATCH_GET) {
            /* a read's answer is kept: its found items are read from it later, without a copy */
            if ((rc = s_grow(b->alloc, (void **)&b->answers, &b->cap_answers, b->n_answers + 1, sizeof *b->answers)) < 0)
                goto nomem;
            dyn_call_take_body(call, &b->answers[b->n_answers]);
            body = dyn_buf_slice(&b->answers[b->n_answers++]);
        }
        rc = s_read_answer(b, index, body, now_mono_ms);
        if (rc == DYN_ENOMEM) goto nomem;
        if (rc < 0) {
            /* a 200 whose body is not the answer: as a broken answer, retried */
            struct dyn_error err;
            s_set_error(&err, DYN_EJSON, DYN_RETRY_TRANSIENT, "InvalidResponse",
                        "the answer to a batch request was not valid JSON");
            err.http_status = dyn_call_error(call)->http_status;
            /* entries already read from it keep their outcome */
            for (k = 0, i = 0; k < r->n; k++)
                if (b->entries[r->members[k]].state == E_FLIGHT && b->entries[r->members[k]].req == index)
                    r->members[i++] = r->members[k];
            r->n = i;
            s_request_failed(b, r, index, &err, -1, now_mono_ms);
        } else {
            b->solo_failures = 0;
            for (k = 0; k < r->n; k++) {
                struct s_entry *e = &b->entries[r->members[k]];
                if (e->owed > owed) owed = e->owed;
                e->owed = 0;
                if (e->state == E_FLIGHT && e->req == index) {
                    e->state = E_DONE;
                    e->req = -1;
                }
            }
            if (b->cfg->bucket) dyn_retry_bucket_release(b->cfg->bucket, owed);
        }
    } else {
        s_request_failed(b, r, index, dyn_call_error(call), dyn_call_retry_after_ms(call), now_mono_ms);
    }
    rc = DYN_OK;
    goto release;
nomem : {
    struct dyn_error err;
    s_set_error(&err, DYN_ENOMEM, DYN_RETRY_CLIENT, "", "not enough memory");
    for (k = 0; k < r->n; k++) {
        struct s_entry *e = &b->entries[r->members[k]];
        if (e->state == E_FLIGHT && e->req == index) {
            e->state = E_FAILED;
            e->req = -1;
            if (e->action != 'G') e->uncertain = 1;
        }
    }
    s_stop(b, s_keep_error(b, &err));
    rc = DYN_ENOMEM;
}
release:
    dyn_call_free(r->call);
    r->call = NULL;
    r->n = 0;
    b->in_flight--;
    return rc;
}

static void s_op_abort(struct dyn_op *op, int status, const char *message) {
    struct dyn_batch *b = S_OF(op);
    struct dyn_error err;
    size_t i, k;
    s_set_error(&err, status, DYN_RETRY_CLIENT, "", message ? message : dyn_status_str(status));
    s_stop(b, s_keep_error(b, &err));
    for (i = 0; i < b->n_reqs; i++) {
        struct s_request *r = &b->reqs[i];
        if (!r->call) continue;
        for (k = 0; k < r->n; k++) {
            struct s_entry *e = &b->entries[r->members[k]];
            if (e->action != 'G') e->uncertain = 1; /* sent, and no answer read */
            e->state = E_FAILED;
            e->req = -1;
        }
        dyn_call_free(r->call);
        r->call = NULL;
        r->n = 0;
    }
    b->in_flight = 0;
    s_finish(b);
}

/* ---- results ---- */

static const struct dyn_error s_no_memory = {0, "", "not enough memory", "", DYN_RETRY_CLIENT, DYN_ENOMEM, 0};

static const struct dyn_error *s_error_at(const struct dyn_batch *b, int index) {
    return index >= 0 && (size_t)index < b->n_errors ? &b->errors[index] : &s_no_memory;
}

int dyn_batch_status(const struct dyn_batch *b) {
    size_t i;
    for (i = 0; i < b->n_entries; i++)
        if (b->entries[i].state != E_DONE) return s_error_at(b, b->cause >= 0 ? b->cause : b->entries[i].cause)->status;
    return DYN_OK;
}

const struct dyn_error *dyn_batch_cause(const struct dyn_batch *b) {
    size_t i;
    for (i = 0; i < b->n_entries; i++)
        if (b->entries[i].state != E_DONE) return s_error_at(b, b->cause >= 0 ? b->cause : b->entries[i].cause);
    return NULL;
}

int dyn_batch_slot(const struct dyn_batch *b, size_t k, struct dyn_batch_slot_info *info) {
    const struct s_entry *e;
    memset(info, 0, sizeof *info);
    if (k >= b->n_slots) return DYN_EINVAL;
    e = &b->entries[b->slots[k]];
    info->done = e->state == E_DONE;
    info->uncertain = !info->done && e->uncertain;
    info->attempts = e->attempts;
    info->found = info->done && e->found;
    info->item = info->found ? dyn_slice_make(e->item, e->item_len) : DYN_SLICE_EMPTY;
    if (!info->done) info->cause = s_error_at(b, e->cause >= 0 ? e->cause : b->cause);
    return DYN_OK;
}

/* ---- item size ---- */

static size_t s_number_size(dyn_slice text) {
    /* significant digits: leading and trailing zeros trimmed */
    size_t i, first = SIZE_MAX, last = 0, digits = 0;
    for (i = 0; i < text.len; i++) {
        char c = text.ptr[i];
        if (c == 'e' || c == 'E') break;
        if (c < '0' || c > '9') continue;
        if (c != '0') {
            if (first == SIZE_MAX) first = i;
            last = i;
        }
    }
    if (first == SIZE_MAX) return 1 + 1;
    for (i = first; i <= last; i++)
        if (text.ptr[i] >= '0' && text.ptr[i] <= '9') digits++;
    return (digits + 1) / 2 + 1;
}

static int s_value_size(struct dyn_json_reader *r, struct dyn_buf *tmp, size_t *size);

/* The elements of an L, M or set, with their overheads. */
static int s_container_size(struct dyn_json_reader *r, struct dyn_buf *tmp, char type, size_t *size) {
    struct dyn_json_token t;
    int rc;
    if ((rc = dyn_json_next(r, &t)) < 0) return rc;
    if (type == 'M') {
        if (t.type != DYN_JSON_OBJ_BEGIN) return DYN_EINVAL;
        *size += 3;
        for (;;) {
            if ((rc = dyn_json_next(r, &t)) < 0) return rc;
            if (t.type == DYN_JSON_OBJ_END) return DYN_OK;
            dyn_buf_reset(tmp);
            if ((rc = dyn_json_unescape(t.text, tmp)) < 0) return rc;
            *size += tmp->len + 1;
            if ((rc = s_value_size(r, tmp, size)) < 0) return rc;
        }
    }
    if (t.type != DYN_JSON_ARR_BEGIN) return DYN_EINVAL;
    if (type == 'L') *size += 3;
    for (;;) {
        if (type == 'L') {
            struct dyn_json_reader save = *r;
            if ((rc = dyn_json_next(r, &t)) < 0) return rc;
            if (t.type == DYN_JSON_ARR_END) return DYN_OK;
            *r = save;
            *size += 1;
            if ((rc = s_value_size(r, tmp, size)) < 0) return rc;
            continue;
        }
        if ((rc = dyn_json_next(r, &t)) < 0) return rc;
        if (t.type == DYN_JSON_ARR_END) return DYN_OK;
        if (t.type != DYN_JSON_STRING) return DYN_EINVAL;
        dyn_buf_reset(tmp);
        if ((rc = dyn_json_unescape(t.text, tmp)) < 0) return rc;
        if (type == 'S') *size += tmp->len;
        else if (type == 'N') *size += s_number_size(dyn_buf_slice(tmp));
        else *size += tmp->len / 4 * 3; /* base64: close enough, padding aside */
    }
}

/* One AttributeValue {"T": ...}. */
static int s_value_size(struct dyn_json_reader *r, struct dyn_buf *tmp, size_t *size) {
    struct dyn_json_token t;
    int rc;
    dyn_slice type;
    char tname[5];
    if ((rc = dyn_json_next(r, &t)) < 0) return rc;
    if (t.type != DYN_JSON_OBJ_BEGIN) return DYN_EINVAL;
    if ((rc = dyn_json_next(r, &t)) < 0) return rc;
    if (t.type != DYN_JSON_KEY || t.text.len == 0 || t.text.len > 4) return DYN_EINVAL;
    type = t.text;
    memcpy(tname, type.ptr, type.len);
    tname[type.len] = '\0';
    if (strcmp(tname, "M") == 0 || strcmp(tname, "L") == 0 || strcmp(tname, "SS") == 0 || strcmp(tname, "NS") == 0 ||
        strcmp(tname, "BS") == 0) {
        if ((rc = s_container_size(r, tmp, tname[0], size)) < 0) return rc;
    } else {
        if ((rc = dyn_json_next(r, &t)) < 0) return rc;
        if (strcmp(tname, "BOOL") == 0 || strcmp(tname, "NULL") == 0) {
            *size += 1;
        } else if (t.type != DYN_JSON_STRING) {
            return DYN_EINVAL;
        } else {
            dyn_buf_reset(tmp);
            if ((rc = dyn_json_unescape(t.text, tmp)) < 0) return rc;
            if (tname[0] == 'S') *size += tmp->len;
            else if (tname[0] == 'N') *size += s_number_size(dyn_buf_slice(tmp));
            else if (tname[0] == 'B') *size += tmp->len / 4 * 3 - (tmp->len && tmp->ptr[tmp->len - 1] == '=') -
                                               (tmp->len > 1 && tmp->ptr[tmp->len - 2] == '=');
            else return DYN_EINVAL;
        }
    }
    if ((rc = dyn_json_next(r, &t)) < 0) return rc;
    return t.type == DYN_JSON_OBJ_END ? DYN_OK : DYN_EINVAL;
}

int dyn_batch_item_size(dyn_slice item_json, const struct dyn_allocator *alloc, size_t *size) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    struct dyn_buf tmp = DYN_BUF_INIT(alloc ? alloc : dyn_default_allocator());
    size_t n = 0;
    int rc;
    dyn_json_reader_init(&r, item_json);
    if ((rc = dyn_json_next(&r, &t)) < 0) goto cleanup;
    if (t.type != DYN_JSON_OBJ_BEGIN) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    for (;;) {
        if ((rc = dyn_json_next(&r, &t)) < 0) goto cleanup;
        if (t.type == DYN_JSON_OBJ_END) break;
        dyn_buf_reset(&tmp);
        if ((rc = dyn_json_unescape(t.text, &tmp)) < 0) goto cleanup;
        n += tmp.len;
        if ((rc = s_value_size(&r, &tmp, &n)) < 0) goto cleanup;
    }
    *size = n;
cleanup:
    dyn_buf_free(&tmp);
    return rc;
}
