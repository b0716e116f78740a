/*
 * Query/Scan pages as a state machine; see dynamo/pager.h.
 *
 * Each stream moves through READY -> FLIGHT -> PAGE -> READY ... and ends
 * FINISHED, or FAILED after its failure was taken. Keys are never decoded:
 * a LastEvaluatedKey is copied byte for byte from the response into the
 * stream's next-key buffer and written back as ExclusiveStartKey, so a key
 * with escapes or a 38-digit number goes back exactly as the server wrote
 * it. Two key buffers per stream (the position's and the waiting page's)
 * are swapped when the consumer takes a page, so taking never allocates and
 * every allocation happens before anything changes: a DYN_ENOMEM leaves the
 * pager as it was, and the same step can be asked again.
 */
#include "dynamo/pager.h"

#include "dynamo/json.h"

#include <stdio.h>

#define S_NONE ((size_t)-1)

enum s_state {
    S_READY,    /* may send (if limits and the window allow) */
    S_FLIGHT,   /* a page request is out: call != NULL, index in p->flight */
    S_PAGE,     /* a page waits for the consumer, in the queue */
    S_FAILING,  /* the stream failed; its failure waits in the queue (call kept for its error) */
    S_FINISHED, /* nothing more to fetch */
    S_FAILED    /* its failure was taken */
};

struct s_stream {
    char operation[8];   /* "Query" or "Scan" */
    struct dyn_buf body; /* the caller's body without its closing '}' (only if body_from is this stream) */
    size_t body_from;    /* the stream that holds the body (segments share one) */
    int has_members;     /* the body has members: the pager's go after a ',' */
    int filtered;        /* the body has a filter: Limit would count evaluated items */
    uint64_t limit;
    uint32_t page_size;
    int64_t segment, total_segments; /* -1: not a segment */
    int state;
    struct dyn_call *call; /* S_FLIGHT, S_FAILING */
    /* the position: what the consumer has taken */
    struct dyn_buf key; /* next ExclusiveStartKey; empty = none */
    uint64_t taken;
    int done;
    /* the waiting page (S_PAGE) */
    struct dyn_buf page_body, page_key;
    uint64_t page_count, page_scanned, page_take;
    int page_last;
    /* S_FAILING with a 2xx body that was not a page: the reader's complaint */
    const char *bad_what;
    size_t bad_pos;
    size_t qnext; /* the queue of waiting pages and failures */
};

struct dyn_pager {
    struct dyn_op op; /* first: the op callbacks cast back */
    const struct dyn_call_config *cfg;
    const struct dyn_allocator *alloc;
    struct s_stream *streams;
    size_t n, cap;
    size_t *flight; /* indices of streams in S_FLIGHT */
    size_t n_flight, cap_flight;
    size_t qhead, qtail;
    size_t n_waiting_pages; /* streams in S_PAGE */
    size_t n_ready;         /* streams in S_READY */
    size_t first_ready;     /* no stream below this index is in S_READY */
    uint64_t limit;         /* overall; 0 = none */
    uint64_t counted;       /* items counted of all streams: taken + waiting takes */
    size_t max_pages;
    int started, aborted;
    int status;
    struct dyn_error error;
    struct dyn_buf scratch; /* the request body being built */
    struct dyn_pager_stats stats;
};

/* ---- small helpers ---- */

static uint64_t s_min(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Items the overall limit still allows (UINT64_MAX: no limit). */
static uint64_t s_overall_left(const struct dyn_pager *p) {
    if (!p->limit) return UINT64_MAX;
    return p->counted >= p->limit ? 0 : p->limit - p->counted;
}

/* Items stream s may still count (UINT64_MAX: no limit). */
static uint64_t s_stream_left(const struct s_stream *s, uint64_t counted) {
    if (!s->limit) return UINT64_MAX;
    return counted >= s->limit ? 0 : s->limit - counted;
}

static void s_set_ready(struct dyn_pager *p, size_t i) {
    p->streams[i].state = S_READY;
    p->n_ready++;
    if (i < p->first_ready) p->first_ready = i;
}

static void s_enqueue(struct dyn_pager *p, size_t i) {
    p->streams[i].qnext = S_NONE;
    if (p->qtail == S_NONE) p->qhead = i;
    else p->streams[p->qtail].qnext = i;
    p->qtail = i;
}

static int s_grow(const struct dyn_allocator *a, void **ptr, size_t *cap, size_t need, size_t size) {
    size_t ncap;
    void *np;
    if (need <= *cap) return DYN_OK;
    /* from what is needed: a pager of one stream asks for one (an array of
       four would be a large block, which costs glibc a heap consolidation) */
    ncap = *cap ? *cap : need;
    while (ncap < need) {
        if (ncap > ((size_t)-1 / 2) / size) return DYN_ENOMEM;
        ncap *= 2;
    }
    np = dyn_mem_realloc(a, *ptr, *cap * size, ncap * size);
    if (!np) return DYN_ENOMEM;
    *ptr = np;
    *cap = ncap;
    return DYN_OK;
}

/* Parses a JSON number token that must be a count: digits only, below 2^63. */
static int s_parse_count(dyn_slice text, uint64_t *out) {
    uint64_t v = 0;
    size_t i;
    if (text.len == 0 || text.len > 19) return 0;
    for (i = 0; i < text.len; i++) {
        char c = text.ptr[i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (uint64_t)(c - '0');
    }
    if (v > (uint64_t)INT64_MAX) return 0;
    *out = v;
    return 1;
}

/* Reads a value that must be a JSON object, first token `first` already
 * read, and gives its raw text. */
static int s_raw_object(struct dyn_json_reader *r, const struct dyn_json_token *first, dyn_slice *out) {
    int rc;
    const char *start = first->text.ptr;
    if (first->type != DYN_JSON_OBJ_BEGIN) return dyn_json_fail(r, first->text.ptr, "expected an object");
    if ((rc = dyn_json_skip(r, first)) != DYN_OK) return rc;
    *out = dyn_slice_make(start, (size_t)(r->p - start));
    return DYN_OK;
}

/* ---- request bodies ---- */

static int s_member_is(const struct dyn_json_token *t, const char *name) {
    return !t->escaped && dyn_slice_eq_cstr(t->text, name);
}

/*
 * Checks a stream body (a JSON object, without the members the pager
 * writes) and finds where its closing brace is. Top-level names with
 * escapes are refused: DynamoDB's are plain ASCII, and an escaped "Limit"
 * would slip past the check.
 */
static int s_check_body(dyn_slice body, size_t *close_at, int *has_members, int *filtered) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    *has_members = 0;
    *filtered = 0;
    dyn_json_reader_init(&r, body);
    if (dyn_json_next(&r, &t) != DYN_OK || t.type != DYN_JSON_OBJ_BEGIN) return DYN_EINVAL;
    for (;;) {
        if (dyn_json_next(&r, &t) != DYN_OK) return DYN_EINVAL;
        if (t.type == DYN_JSON_OBJ_END) break;
        if (t.escaped || s_member_is(&t, "ExclusiveStartKey") || s_member_is(&t, "Limit") ||
            s_member_is(&t, "Segment") || s_member_is(&t, "TotalSegments"))
            return DYN_EINVAL;
        if (s_member_is(&t, "FilterExpression") || s_member_is(&t, "QueryFilter") || s_member_is(&t, "ScanFilter"))
            *filtered = 1;
        *has_members = 1;
        if (dyn_json_next(&r, &t) != DYN_OK || dyn_json_skip(&r, &t) != DYN_OK) return DYN_EINVAL;
    }
    *close_at = (size_t)(t.text.ptr - body.ptr);
    if (dyn_json_next(&r, &t) != DYN_OK || t.type != DYN_JSON_END) return DYN_EINVAL;
    return DYN_OK;
}

/* A key given by the caller (start_key, a position): one JSON object. */
static int s_check_key(dyn_slice key) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    dyn_json_reader_init(&r, key);
    if (dyn_json_next(&r, &t) != DYN_OK || t.type != DYN_JSON_OBJ_BEGIN) return DYN_EINVAL;
    if (dyn_json_skip(&r, &t) != DYN_OK) return DYN_EINVAL;
    if (dyn_json_next(&r, &t) != DYN_OK || t.type != DYN_JSON_END) return DYN_EINVAL;
    return DYN_OK;
}

/* The Limit member of stream s's next request, or 0 for none. */
static uint64_t s_request_limit(const struct dyn_pager *p, const struct s_stream *s) {
    uint64_t left = s_min(s_stream_left(s, s->taken), s_overall_left(p)), lim;
    if (s->page_size) lim = s_min(s->page_size, left);
    else if (!s->filtered) lim = left;
    else return 0;
    if (lim == UINT64_MAX) return 0;
    return s_min(lim, DYN_PAGER_MAX_LIMIT);
}

/* Builds stream s's next request body in p->scratch. */
static int s_build_request(struct dyn_pager *p, const struct s_stream *s) {
    struct dyn_buf *b = &p->scratch;
    const struct s_stream *owner = &p->streams[s->body_from];
    uint64_t lim = s_request_limit(p, s);
    int comma = owner->has_members, rc;
    dyn_buf_reset(b);
    if ((rc = dyn_buf_append_slice(b, dyn_buf_slice(&owner->body))) < 0) return rc;
    if (lim) {
        if ((rc = dyn_buf_append_cstr(b, comma ? ",\"Limit\":" : "\"Limit\":")) < 0) return rc;
        if ((rc = dyn_buf_append_int(b, (int64_t)lim)) < 0) return rc;
        comma = 1;
    }
    if (s->key.len) {
        if ((rc = dyn_buf_append_cstr(b, comma ? ",\"ExclusiveStartKey\":" : "\"ExclusiveStartKey\":")) < 0)
            return rc;
        if ((rc = dyn_buf_append_slice(b, dyn_buf_slice(&s->key))) < 0) return rc;
        comma = 1;
    }
    if (s->segment >= 0) {
        if ((rc = dyn_buf_append_cstr(b, comma ? ",\"Segment\":" : "\"Segment\":")) < 0) return rc;
        if ((rc = dyn_buf_append_int(b, s->segment)) < 0) return rc;
        if ((rc = dyn_buf_append_cstr(b, ",\"TotalSegments\":")) < 0) return rc;
        if ((rc = dyn_buf_append_int(b, s->total_segments)) < 0) return rc;
    }
    return dyn_buf_putc(b, '}');
}

/* ---- responses ---- */

struct s_page_info {
    uint64_t count, scanned;
    int has_lek;
    dyn_slice lek;
};

/* ---- the end of Items, found from the document's end ----
 *
 * A page is mostly its Items, which the consumer's decoder reads in full; the
 * pager needs only what is around them. So, instead of walking Items, the
 * members after it are read backwards from the document's end (in valid
 * JSON a string's opening quote is the first quote before it that follows an
 * even run of backslashes, and brackets match backwards as forwards) until a
 * ']' ends the value before a member: the end of Items, unless a later
 * member's value is an array. That case is ruled out by the AttributeValue
 * form: inside Items a ']' (outside strings) always ends an L or set value,
 * so '}' follows it; if some ']' between the two is not followed by '}' (a
 * later array member, or a ']' inside a string) the page is walked forward
 * instead. What follows the end found is then read forward and validated as
 * usual, so only the inside of Items goes unchecked here: the decoder checks
 * it as it reads.
 */

static int s_is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static const char *s_back_ws(const char *begin, const char *p) {
    while (p > begin && s_is_ws(p[-1])) p--;
    return p;
}

/* p[-1] is a string's closing quote: its opening quote, or NULL. */
static const char *s_back_string(const char *begin, const char *p) {
    const char *q = p - 1;
    while (q > begin) {
        const char *b;
        q--;
        if (*q != '"') continue;
        for (b = q; b > begin && b[-1] == '\\'; b--) continue;
        if (((q - b) & 1) == 0) return q;
    }
    return NULL;
}

/* The start of the value that ends at p (p[-1] its last byte), or NULL. */
static const char *s_back_value(const char *begin, const char *p) {
    char c;
    if (p <= begin) return NULL;
    c = p[-1];
    if (c == '"') return s_back_string(begin, p);
    if (c == '}' || c == ']') {
        unsigned depth = 0;
        while (p > begin) {
            c = *--p;
            if (c == '"') {
                if (!(p = s_back_string(begin, p + 1))) return NULL;
            } else if (c == '}' || c == ']') {
                if (++depth > DYN_JSON_MAX_DEPTH) return NULL;
            } else if (c == '{' || c == '[') {
                if (--depth == 0) return p;
            }
        }
        return NULL;
    }
    /* a number or a literal: checked when read forward */
    {
        const char *last = p;
        while (p > begin && (((c = p[-1]) >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' ||
                             c == '+' || c == '.' || c == 'E'))
            p--;
        return p == last ? NULL : p;
    }
}

/*
 * items (just after the '[' of the top-level Items) in body: finds the ']'
 * that closes it from the end, or NULL when the page must be walked.
 */
static const char *s_items_end(dyn_slice body, const char *items) {
    const char *begin = items, *p = s_back_ws(begin, body.ptr + body.len), *q;
    if (p <= begin || p[-1] != '}') return NULL;
    p = s_back_ws(begin, p - 1);
    for (;;) {
        /* p: just after the value of the member before (or Items' ']') */
        if (p <= begin) return NULL;
        if (p[-1] == ']') break;
        if (!(p = s_back_value(begin, p))) return NULL;             /* the value */
        p = s_back_ws(begin, p);
        if (p <= begin || p[-1] != ':') return NULL;
        p = s_back_ws(begin, p - 1);
        if (p <= begin || p[-1] != '"' || !(p = s_back_string(begin, p))) return NULL; /* the name */
        p = s_back_ws(begin, p);
        if (p <= begin || p[-1] != ',') return NULL;
        p = s_back_ws(begin, p - 1);
    }
    q = p - 1;
    /* every ']' before it must close an L or a set value */
    for (p = items; (p = memchr(p, ']', (size_t)(q - p))) != NULL; p++) {
        const char *n = dyn_json_skip_ws(p + 1, q + 1);
        if (n > q || *n != '}') return NULL;
    }
    return q;
}

/* ---- reading a page ---- */

/* Reads a member value that must be a count, at r->p (whitespace skipped). */
static int s_scan_count(struct dyn_json_reader *r, uint64_t *out) {
    struct dyn_json_token v;
    const char *at = r->p;
    int rc;
    if (at < r->end && *at == '"') {
        if ((rc = dyn_json_scan_string(r, &v)) != DYN_OK) return rc;
        at = v.text.ptr;
    } else if (at < r->end && (*at == '-' || (*at >= '0' && *at <= '9'))) {
        if ((rc = dyn_json_scan_number(r, &v)) != DYN_OK) return rc;
        if (s_parse_count(v.text, out)) return DYN_OK;
    }
    return dyn_json_fail(r, at, "expected a count");
}

/*
 * Reads a Query/Scan response without building values, with the reader's
 * scanner: the members are validated as the reader would, Count is required,
 * LastEvaluatedKey kept as raw text. Items is skipped: with `fast`, by its
 * end found from the document's end (see above; 0 when it cannot be),
 * otherwise by its extent (quotes and brackets: a cut body fails here).
 * Either way the consumer's decoder reads the items in full later. Names
 * with escapes count as other members: DynamoDB writes none.
 */
static int s_read_members(struct dyn_json_reader *r, dyn_slice body, struct s_page_info *out, int *fast) {
    struct dyn_json_token t;
    int rc, more, first, has_count = 0;
    memset(out, 0, sizeof *out);
    dyn_json_reader_init(r, body);
    /* the first token through the pull reader (its messages for what is not
       an object), then only the scanner: the pull state is not used again */
    if ((rc = dyn_json_next(r, &t)) != DYN_OK) return rc;
    if (t.type != DYN_JSON_OBJ_BEGIN) return dyn_json_fail(r, body.ptr, "expected a response object");
    for (first = 1;; first = 0) {
        r->p = dyn_json_skip_ws(r->p, r->end);
        if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
        if ((rc = dyn_json_scan_more(r, '}', first, &more)) != DYN_OK) return rc;
        if (!more) break;
        if ((rc = dyn_json_scan_name(r, &t)) != DYN_OK) return rc;
        r->p = dyn_json_skip_ws(r->p, r->end);
        if (s_member_is(&t, "Items") && r->p < r->end && *r->p == '[') {
            const char *end = *fast ? s_items_end(body, r->p + 1) : NULL;
            *fast = end != NULL;
            if (end) r->p = end + 1;
            else rc = dyn_json_scan_extent(r);
        } else if (s_member_is(&t, "Count")) {
            rc = s_scan_count(r, &out->count);
            has_count = 1;
        } else if (s_member_is(&t, "ScannedCount")) {
            rc = s_scan_count(r, &out->scanned);
        } else if (s_member_is(&t, "LastEvaluatedKey") && r->p < r->end && *r->p != 'n') {
            const char *start = r->p;
            if (*start != '{') return dyn_json_fail(r, start, "expected an object");
            if ((rc = dyn_json_scan_skip(r)) == DYN_OK) {
                out->lek = dyn_slice_make(start, (size_t)(r->p - start));
                out->has_lek = 1;
            }
        } else {
            rc = dyn_json_scan_skip(r); /* null LastEvaluatedKey included */
        }
        if (rc != DYN_OK) return rc;
    }
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p < r->end) return dyn_json_fail(r, r->p, "unexpected data after the document");
    if (!has_count) return dyn_json_fail(r, body.ptr, "the response has no Count");
    return DYN_OK;
}

/* A page's members: from the end of Items found backwards, else (that
 * failed, or what follows it was not right) walking Items forwards, which
 * gives the reader's own verdict. */
static int s_read_page(struct dyn_json_reader *r, dyn_slice body, struct s_page_info *out) {
    int fast = 1, rc = s_read_members(r, body, out, &fast);
    if (rc == DYN_OK || !fast) return rc;
    fast = 0;
    return s_read_members(r, body, out, &fast);
}

/* The failure of stream s (S_FAILING) as an error record. */
static void s_stream_error(const struct s_stream *s, struct dyn_error *out) {
    *out = *dyn_call_error(s->call);
    if (s->bad_what) {
        out->status = DYN_EJSON;
        out->retry_class = DYN_RETRY_CLIENT;
        snprintf(out->message, sizeof out->message, "invalid %s response: %s at byte %lu", s->operation,
                 s->bad_what, (unsigned long)s->bad_pos);
    }
}

static void s_note_failure(struct dyn_pager *p, const struct s_stream *s) {
    if (p->status != DYN_OK) return;
    s_stream_error(s, &p->error);
    p->status = p->error.status;
}

/* ---- the op ---- */

static int s_next(struct dyn_op *op, int64_t now_unix_ms, int64_t now_mono_ms, struct dyn_op_step *step) {
    struct dyn_pager *p = (struct dyn_pager *)op;
    struct s_stream *s;
    struct dyn_call *call = NULL;
    size_t i;
    int rc;
    (void)now_unix_ms;
    (void)now_mono_ms;
    memset(step, 0, sizeof *step);
    p->started = 1;
    if (p->aborted || !p->n_ready || !s_overall_left(p) ||
        (p->max_pages && p->n_flight + p->n_waiting_pages >= p->max_pages)) {
        step->kind = p->n_flight && !p->aborted ? DYN_OP_IDLE : DYN_OP_DONE;
        return DYN_OK;
    }
    for (i = p->first_ready; p->streams[i].state != S_READY; i++) continue;
    p->first_ready = i;
    s = &p->streams[i];
    if ((rc = s_grow(p->alloc, (void **)&p->flight, &p->cap_flight, p->n_flight + 1, sizeof *p->flight)) < 0)
        return rc;
    if ((rc = s_build_request(p, s)) < 0) return rc;
    if ((rc = dyn_call_new(p->cfg, dyn_slice_cstr(s->operation), dyn_buf_slice(&p->scratch), &call)) < 0)
        return rc;
    s->call = call;
    s->state = S_FLIGHT;
    p->n_ready--;
    p->first_ready = i + 1;
    p->flight[p->n_flight++] = i;
    p->stats.requests++;
    step->kind = DYN_OP_SEND;
    step->call = call;
    return DYN_OK;
}

/* A page arrived for stream i (its call done with a 2xx): count it, keep it
 * for the consumer, or move the position on at once. */
static int s_feed_page(struct dyn_pager *p, size_t i, const struct s_page_info *pg) {
    struct s_stream *s = &p->streams[i];
    uint64_t overall = s_overall_left(p), take;
    int last, rc;
    if (!overall) {
        /* The overall limit was reached while this page was out: drop it
           unread, so the position stays before it. */
        s_set_ready(p, i);
        goto release;
    }
    take = s_min(pg->count, s_min(s_stream_left(s, s->taken), overall));
    last = !pg->has_lek || take < pg->count || (s->limit && s->taken + take >= s->limit);
    dyn_buf_reset(&s->page_key);
    if (pg->has_lek && !last && (rc = dyn_buf_append_slice(&s->page_key, pg->lek)) < 0) return rc;
    if (pg->count == 0) {
        /* Nothing to take: the position moves now and the stream goes on. */
        struct dyn_buf k = s->key;
        s->key = s->page_key;
        s->page_key = k;
        dyn_buf_reset(&s->page_key);
        s->done = last;
        if (last) s->state = S_FINISHED;
        else s_set_ready(p, i);
        goto release;
    }
    dyn_buf_free(&s->page_body);
    dyn_call_take_body(s->call, &s->page_body);
    s->page_count = pg->count;
    s->page_scanned = pg->scanned;
    s->page_take = take;
    s->page_last = last;
    s->state = S_PAGE;
    p->counted += take;
    p->n_waiting_pages++;
    s_enqueue(p, i);
release:
    dyn_call_free(s->call);
    s->call = NULL;
    return DYN_OK;
}

static int s_feed(struct dyn_op *op, struct dyn_call *call, int64_t now_mono_ms) {
    struct dyn_pager *p = (struct dyn_pager *)op;
    struct s_stream *s;
    size_t k, i;
    int rc = DYN_OK;
    (void)now_mono_ms;
    for (k = 0; k < p->n_flight && p->streams[p->flight[k]].call != call; k++) continue;
    if (!call || k == p->n_flight || !dyn_call_is_done(call)) return DYN_EINVAL;
    i = p->flight[k];
    s = &p->streams[i];
    if (p->aborted) {
        dyn_call_free(call);
        s->call = NULL;
    } else if (dyn_call_status(call) == DYN_OK) {
        struct dyn_json_reader r;
        struct s_page_info pg;
        if (s_read_page(&r, dyn_call_body(call), &pg) == DYN_OK) {
            if ((rc = s_feed_page(p, i, &pg)) < 0) return rc; /* still in flight: fed again later */
            p->stats.pages++;
            p->stats.count += pg.count;
            p->stats.scanned += pg.scanned;
        } else {
            s->bad_what = r.err ? r.err : "malformed JSON";
            s->bad_pos = r.err_pos;
            s->state = S_FAILING;
            s_note_failure(p, s);
            s_enqueue(p, i);
        }
    } else {
        s->state = S_FAILING;
        s_note_failure(p, s);
        s_enqueue(p, i);
    }
    p->flight[k] = p->flight[--p->n_flight];
    return DYN_OK;
}

static void s_abort(struct dyn_op *op, int status, const char *message) {
    struct dyn_pager *p = (struct dyn_pager *)op;
    size_t k;
    if (p->aborted) return;
    p->aborted = 1;
    p->started = 1;
    for (k = 0; k < p->n_flight; k++) dyn_call_abort(p->streams[p->flight[k]].call, status, message);
    if (p->status == DYN_OK) {
        memset(&p->error, 0, sizeof p->error);
        p->error.status = status < 0 ? status : DYN_EINVAL;
        p->error.retry_class = DYN_RETRY_CLIENT;
        snprintf(p->error.message, sizeof p->error.message, "%s",
                 message && *message ? message : dyn_status_str(p->error.status));
        p->status = p->error.status;
    }
}

/* ---- building ---- */

int dyn_pager_new(const struct dyn_call_config *cfg, struct dyn_pager **out) {
    struct dyn_pager *p;
    *out = NULL;
    if (!cfg) return DYN_EINVAL;
    p = dyn_mem_alloc(cfg->alloc, sizeof *p);
    if (!p) return DYN_ENOMEM;
    memset(p, 0, sizeof *p);
    p->op.next = s_next;
    p->op.feed = s_feed;
    p->op.abort = s_abort;
    p->cfg = cfg;
    p->alloc = cfg->alloc;
    p->qhead = p->qtail = S_NONE;
    dyn_buf_init(&p->scratch, cfg->alloc);
    *out = p;
    return DYN_OK;
}

void dyn_pager_free(struct dyn_pager *p) {
    size_t i;
    if (!p) return;
    for (i = 0; i < p->n; i++) {
        struct s_stream *s = &p->streams[i];
        dyn_call_free(s->call);
        dyn_buf_free(&s->body);
        dyn_buf_free(&s->key);
        dyn_buf_free(&s->page_body);
        dyn_buf_free(&s->page_key);
    }
    dyn_mem_free(p->alloc, p->streams, p->cap * sizeof *p->streams);
    dyn_mem_free(p->alloc, p->flight, p->cap_flight * sizeof *p->flight);
    dyn_buf_free(&p->scratch);
    dyn_mem_free(p->alloc, p, sizeof *p);
}

static int s_valid_operation(dyn_slice op) {
    return dyn_slice_eq_cstr(op, "Query") || dyn_slice_eq_cstr(op, "Scan");
}

/* Sets up stream p->streams[i] (memory already there) from spec. */
static void s_init_stream(struct dyn_pager *p, size_t i, const struct dyn_pager_stream *spec, size_t body_from) {
    struct s_stream *s = &p->streams[i];
    memset(s, 0, sizeof *s);
    memcpy(s->operation, spec->operation.ptr, spec->operation.len);
    s->body_from = body_from;
    s->limit = spec->limit;
    s->page_size = spec->page_size;
    s->segment = s->total_segments = -1;
    s->taken = spec->count;
    s->qnext = S_NONE;
    dyn_buf_init(&s->body, p->alloc);
    dyn_buf_init(&s->key, p->alloc);
    dyn_buf_init(&s->page_body, p->alloc);
    dyn_buf_init(&s->page_key, p->alloc);
}

/* The state a stream starts in, from its position. */
static void s_place(struct dyn_pager *p, size_t i) {
    struct s_stream *s = &p->streams[i];
    if (s->limit && s->taken >= s->limit) s->done = 1;
    if (s->done) {
        s->state = S_FINISHED;
    } else {
        s->state = S_READY;
        p->n_ready++;
    }
}

/* Common part of add and add_segments: n streams from one spec. */
static int s_add(struct dyn_pager *p, const struct dyn_pager_stream *spec, size_t n, int segments) {
    size_t close_at, j, first = p->n;
    int has_members, filtered, rc;
    struct dyn_buf body;
    if (!p || !spec || p->started || !s_valid_operation(spec->operation)) return DYN_EINVAL;
    if (s_check_body(spec->body, &close_at, &has_members, &filtered) != DYN_OK) return DYN_EINVAL;
    if (spec->start_key.len && s_check_key(spec->start_key) != DYN_OK) return DYN_EINVAL;
    if (segments && (spec->start_key.len || spec->count || spec->done)) return DYN_EINVAL;
    if (n > (size_t)-1 / sizeof *p->streams - p->n) return DYN_ENOMEM;
    dyn_buf_init(&body, p->alloc);
    if ((rc = s_grow(p->alloc, (void **)&p->streams, &p->cap, p->n + n, sizeof *p->streams)) < 0) return rc;
    if ((rc = dyn_buf_append(&body, spec->body.ptr, close_at)) < 0) return rc;
    s_init_stream(p, first, spec, first);
    if (spec->start_key.len && (rc = dyn_buf_append_slice(&p->streams[first].key, spec->start_key)) < 0) {
        dyn_buf_free(&body);
        return rc;
    }
    p->streams[first].body = body;
    for (j = 0; j < n; j++) {
        struct s_stream *s = &p->streams[first + j];
        if (j) s_init_stream(p, first + j, spec, first);
        s->has_members = has_members;
        s->filtered = filtered;
        if (segments) {
            s->segment = (int64_t)j;
            s->total_segments = (int64_t)n;
        }
        s->done = spec->done;
        s_place(p, first + j);
        p->counted += s->taken;
    }
    p->n += n;
    return DYN_OK;
}

int dyn_pager_add(struct dyn_pager *p, const struct dyn_pager_stream *stream) { return s_add(p, stream, 1, 0); }

int dyn_pager_add_segments(struct dyn_pager *p, const struct dyn_pager_stream *stream, uint32_t total_segments) {
    if (total_segments < 1 || total_segments > DYN_PAGER_MAX_SEGMENTS) return DYN_EINVAL;
    return s_add(p, stream, total_segments, 1);
}

int dyn_pager_set_limit(struct dyn_pager *p, uint64_t limit) {
    if (p->started) return DYN_EINVAL;
    p->limit = limit;
    return DYN_OK;
}

int dyn_pager_set_max_pages(struct dyn_pager *p, size_t n) {
    if (p->started) return DYN_EINVAL;
    p->max_pages = n;
    return DYN_OK;
}

/* ---- the position ---- */

struct s_entry {
    int done, has_key;
    dyn_slice key;
    uint64_t count;
};

/* Reads one entry of "streams" (first token read). */
static int s_read_entry(struct dyn_json_reader *r, const struct dyn_json_token *first, struct s_entry *e) {
    struct dyn_json_token t, v;
    memset(e, 0, sizeof *e);
    if (first->type != DYN_JSON_OBJ_BEGIN) return DYN_EINVAL;
    for (;;) {
        if (dyn_json_next(r, &t) != DYN_OK) return DYN_EINVAL;
        if (t.type == DYN_JSON_OBJ_END) return DYN_OK;
        if (dyn_json_next(r, &v) != DYN_OK) return DYN_EINVAL;
        if (s_member_is(&t, "key") && v.type != DYN_JSON_NULL) {
            if (s_raw_object(r, &v, &e->key) != DYN_OK) return DYN_EINVAL;
            e->has_key = 1;
        } else if (s_member_is(&t, "count")) {
            if (v.type != DYN_JSON_NUMBER || !s_parse_count(v.text, &e->count)) return DYN_EINVAL;
        } else if (s_member_is(&t, "done")) {
            if (v.type != DYN_JSON_TRUE && v.type != DYN_JSON_FALSE) return DYN_EINVAL;
            e->done = v.type == DYN_JSON_TRUE;
        } else if (dyn_json_skip(r, &v) != DYN_OK) {
            return DYN_EINVAL;
        }
    }
}

/*
 * Walks the "streams" array of a position. With apply 0 it only checks the
 * text and counts entries into *n; with apply 1 it copies each key into its
 * stream's page_key (unused before the start), which may fail with
 * DYN_ENOMEM.
 */
static int s_walk_position(struct dyn_pager *p, dyn_slice text, int apply, size_t *n) {
    struct dyn_json_reader r;
    struct dyn_json_token t, v;
    int seen = 0, rc;
    *n = 0;
    dyn_json_reader_init(&r, text);
    if (dyn_json_next(&r, &t) != DYN_OK || t.type != DYN_JSON_OBJ_BEGIN) return DYN_EINVAL;
    for (;;) {
        if (dyn_json_next(&r, &t) != DYN_OK) return DYN_EINVAL;
        if (t.type == DYN_JSON_OBJ_END) break;
        if (dyn_json_next(&r, &v) != DYN_OK) return DYN_EINVAL;
        if (!s_member_is(&t, "streams")) {
            if (dyn_json_skip(&r, &v) != DYN_OK) return DYN_EINVAL;
            continue;
        }
        if (seen || v.type != DYN_JSON_ARR_BEGIN) return DYN_EINVAL;
        seen = 1;
        for (;;) {
            struct s_entry e;
            if (dyn_json_next(&r, &v) != DYN_OK) return DYN_EINVAL;
            if (v.type == DYN_JSON_ARR_END) break;
            if (s_read_entry(&r, &v, &e) != DYN_OK) return DYN_EINVAL;
            if (apply) {
                struct s_stream *s = &p->streams[*n];
                dyn_buf_reset(&s->page_key);
                if (e.has_key && !e.done && (rc = dyn_buf_append_slice(&s->page_key, e.key)) < 0) return rc;
                s->page_count = e.count;
                s->page_last = e.done;
            }
            ++*n;
        }
    }
    if (dyn_json_next(&r, &t) != DYN_OK || t.type != DYN_JSON_END || !seen) return DYN_EINVAL;
    return DYN_OK;
}

int dyn_pager_resume(struct dyn_pager *p, dyn_slice position) {
    size_t n, i;
    int rc;
    if (p->started) return DYN_EINVAL;
    if ((rc = s_walk_position(p, position, 0, &n)) < 0) return rc;
    if (n != p->n) return DYN_EINVAL;
    if ((rc = s_walk_position(p, position, 1, &n)) < 0) {
        for (i = 0; i < p->n; i++) {
            dyn_buf_reset(&p->streams[i].page_key);
            p->streams[i].page_count = 0;
            p->streams[i].page_last = 0;
        }
        return rc;
    }
    /* Everything is copied: apply it. */
    p->counted = 0;
    p->n_ready = 0;
    p->first_ready = 0;
    for (i = 0; i < p->n; i++) {
        struct s_stream *s = &p->streams[i];
        struct dyn_buf k = s->key;
        s->key = s->page_key;
        s->page_key = k;
        dyn_buf_reset(&s->page_key);
        s->taken = s->page_count;
        s->done = s->page_last;
        s->page_count = 0;
        s->page_last = 0;
        s_place(p, i);
        p->counted += s->taken;
    }
    return DYN_OK;
}

int dyn_pager_stream_position(const struct dyn_pager *p, size_t i, struct dyn_pager_position *out) {
    const struct s_stream *s;
    if (i >= p->n) return DYN_EINVAL;
    s = &p->streams[i];
    out->done = s->done;
    out->key = dyn_buf_slice(&s->key);
    out->count = s->taken;
    return DYN_OK;
}

int dyn_pager_position_json(const struct dyn_pager *p, struct dyn_buf *out) {
    size_t entry = out->len, i;
    int rc;
    if ((rc = dyn_buf_append_cstr(out, "{\"streams\":[")) < 0) goto cleanup;
    for (i = 0; i < p->n; i++) {
        const struct s_stream *s = &p->streams[i];
        if ((rc = dyn_buf_append_cstr(out, i ? ",{" : "{")) < 0) goto cleanup;
        if (s->done) {
            if ((rc = dyn_buf_append_cstr(out, "\"done\":true,")) < 0) goto cleanup;
        } else if (s->key.len) {
            if ((rc = dyn_buf_append_cstr(out, "\"key\":")) < 0) goto cleanup;
            if ((rc = dyn_buf_append_slice(out, dyn_buf_slice(&s->key))) < 0) goto cleanup;
            if ((rc = dyn_buf_putc(out, ',')) < 0) goto cleanup;
        }
        if ((rc = dyn_buf_append_cstr(out, "\"count\":")) < 0) goto cleanup;
        if ((rc = dyn_buf_append_int(out, (int64_t)s->taken)) < 0) goto cleanup;
        if ((rc = dyn_buf_putc(out, '}')) < 0) goto cleanup;
    }
    rc = dyn_buf_append_cstr(out, "]}");
cleanup:
    if (rc < 0) dyn_buf_truncate(out, entry);
    return rc;
}

/* ---- the consumer ---- */

struct dyn_op *dyn_pager_op(struct dyn_pager *p) { return &p->op; }

int dyn_pager_take(struct dyn_pager *p, struct dyn_pager_page *page) {
    struct s_stream *s;
    size_t i = p->qhead;
    memset(page, 0, sizeof *page);
    dyn_buf_init(&page->body, p->alloc);
    if (i == S_NONE) return 0;
    s = &p->streams[i];
    p->qhead = s->qnext;
    if (p->qhead == S_NONE) p->qtail = S_NONE;
    s->qnext = S_NONE;
    page->stream = i;
    if (s->state == S_FAILING) {
        s_stream_error(s, &page->error);
        page->status = page->error.status;
        page->last = 1;
        dyn_call_free(s->call);
        s->call = NULL;
        s->state = S_FAILED;
        return 1;
    }
    page->body = s->page_body;
    dyn_buf_init(&s->page_body, p->alloc);
    page->take = s->page_take;
    page->count = s->page_count;
    page->scanned_count = s->page_scanned;
    page->last = s->page_last;
    {
        struct dyn_buf k = s->key;
        s->key = s->page_key;
        s->page_key = k;
        dyn_buf_reset(&s->page_key);
    }
    s->taken += s->page_take;
    s->done = s->page_last;
    p->stats.taken += s->page_take;
    p->n_waiting_pages--;
    if (s->page_last || p->aborted) s->state = S_FINISHED;
    else s_set_ready(p, i);
    return 1;
}

static int s_can_send(const struct dyn_pager *p, const struct s_stream *s) {
    return s->state == S_READY && !p->aborted && s_overall_left(p) > 0;
}

int dyn_pager_finished(const struct dyn_pager *p) {
    if (p->qhead != S_NONE) return 0;
    if (p->aborted) return 1;
    return p->n_flight == 0 && (p->n_ready == 0 || s_overall_left(p) == 0);
}

int dyn_pager_stream_done(const struct dyn_pager *p, size_t i) {
    const struct s_stream *s;
    if (i >= p->n) return 0;
    s = &p->streams[i];
    if (s->state == S_FINISHED || s->state == S_FAILED) return 1;
    if (s->state == S_READY) return !s_can_send(p, s);
    return p->aborted && s->state == S_FLIGHT;
}

size_t dyn_pager_stream_count(const struct dyn_pager *p) { return p->n; }

int dyn_pager_status(const struct dyn_pager *p) { return p->status; }

const struct dyn_error *dyn_pager_error(const struct dyn_pager *p) { return &p->error; }

void dyn_pager_get_stats(const struct dyn_pager *p, struct dyn_pager_stats *out) { *out = p->stats; }
