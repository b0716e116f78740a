/*
 * libFuzzer target for the pager's reading of a page (core/src/pager.c,
 * included here to reach its static reader): Items skipped by its end found
 * from the document's end, or walked.
 *
 * The first input byte chooses what the rest is:
 *  - even: a response body as it is. Besides memory errors: when it is
 *    valid JSON and the walking reader accepts it, reading from the end
 *    gives the same page. (Inside Items neither reader validates: what is
 *    not JSON there is the consumer's decoder's to find.)
 *  - odd: a recipe for a valid page, built here: members in any order (Count,
 *    Items, LastEvaluatedKey, ScannedCount, others with any JSON value, arrays
 *    included), items in AttributeValue form whose strings hold brackets,
 *    quotes, backslashes and escapes, whitespace anywhere. Both readers must
 *    accept it and agree on Count, ScannedCount and the key, byte for byte.
 *
 *   CC=clang cmake -S . -B build-fuzz -DDYN_FUZZ=ON && cmake --build build-fuzz --target fuzz_pager
 *   build-fuzz/fuzz_pager -max_total_time=60
 */
#include "../../core/src/pager.c"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_check(int ok) {
    if (!ok) abort(); /* a broken property: libFuzzer keeps the input */
}

/* ---- the recipe ---- */

struct gen {
    const uint8_t *p, *end;
    struct dyn_buf out;
    unsigned depth;
};

static unsigned s_byte(struct gen *g) { return g->p < g->end ? *g->p++ : 0; }

static void s_put(struct gen *g, const char *s) { s_check(dyn_buf_append_cstr(&g->out, s) == DYN_OK); }

static void s_ws(struct gen *g) {
    static const char *const ws[] = {"", "", "", "", " ", "\n", "\t ", "\r\n  "};
    s_put(g, ws[s_byte(g) & 7]);
}

static void s_string(struct gen *g) {
    static const char *const parts[] = {"a", "Items", "]", "[", "}", "{", "\\\"", "\\\\", ",", ":", "],", "]}",
                                        "\\u00e9", "\xc3\xa9", "\\/", "\\n", "\\\\\\\"", "LastEvaluatedKey", "0"};
    unsigned n = s_byte(g) % 6, i;
    s_put(g, "\"");
    for (i = 0; i < n; i++) s_put(g, parts[s_byte(g) % (sizeof parts / sizeof parts[0])]);
    s_put(g, "\"");
}

static void s_number(struct gen *g) {
    static const char *const nums[] = {"0", "7", "-1", "12345678901234567890123456789012345678", "1.5e+10", "2E-3"};
    s_put(g, nums[s_byte(g) % 6]);
}

/* An AttributeValue. */
static void s_av(struct gen *g) {
    unsigned k = s_byte(g) % 7, n, i;
    if (g->depth > 6) k = 0;
    g->depth++;
    s_put(g, "{");
    s_ws(g);
    switch (k) {
    case 0: s_put(g, "\"S\":"); s_ws(g); s_string(g); break;
    case 1: s_put(g, "\"N\":\"12\""); break;
    case 2: s_put(g, "\"BOOL\":true"); break;
    case 3: s_put(g, "\"NULL\":true"); break;
    case 4:
    case 5:
        s_put(g, k == 4 ? "\"L\":[" : "\"SS\":[");
        n = s_byte(g) % 4;
        for (i = 0; i < n; i++) {
            if (i) s_put(g, ",");
            s_ws(g);
            if (k == 4) s_av(g);
            else s_string(g);
            s_ws(g);
        }
        s_put(g, "]");
        break;
    default:
        s_put(g, "\"M\":{");
        n = s_byte(g) % 3;
        for (i = 0; i < n; i++) {
            if (i) s_put(g, ",");
            s_string(g);
            s_put(g, ":");
            s_av(g);
        }
        s_put(g, "}");
    }
    s_ws(g);
    s_put(g, "}");
    g->depth--;
}

static void s_item(struct gen *g) {
    unsigned n = s_byte(g) % 4, i;
    s_put(g, "{");
    for (i = 0; i < n; i++) {
        if (i) s_put(g, ",");
        s_ws(g);
        s_string(g);
        s_ws(g);
        s_put(g, ":");
        s_ws(g);
        s_av(g);
    }
    s_ws(g);
    s_put(g, "}");
}

/* The name of a member the pager does not know. */
static void s_name(struct gen *g) {
    static const char *const names[] = {"\"ConsumedCapacity\"", "\"Extra\"", "\"x\\\"]\"", "\"Items \""};
    s_put(g, names[s_byte(g) & 3]);
}

/* Any JSON value, for members the pager does not know. */
static void s_value(struct gen *g) {
    unsigned k = s_byte(g) % 7, n, i;
    if (g->depth > 6) k = 0;
    g->depth++;
    switch (k) {
    case 0: s_number(g); break;
    case 1: s_string(g); break;
    case 2: s_put(g, (s_byte(g) & 1) ? "true" : "null"); break;
    case 3:
    case 4:
        s_put(g, "[");
        n = s_byte(g) % 3;
        for (i = 0; i < n; i++) {
            if (i) s_put(g, ",");
            s_ws(g);
            s_value(g);
        }
        s_put(g, "]");
        break;
    case 5: s_av(g); break;
    default:
        s_put(g, "{");
        n = s_byte(g) % 3;
        for (i = 0; i < n; i++) {
            if (i) s_put(g, ",");
            s_string(g);
            s_put(g, ":");
            s_value(g);
        }
        s_put(g, "}");
    }
    g->depth--;
}

static void s_page(struct gen *g) {
    unsigned order[6] = {0, 1, 2, 3, 4, 5}, n = 2 + s_byte(g) % 5, i, j;
    for (i = 0; i < 6; i++) { /* a shuffle, Count and Items first among the chosen */
        unsigned t;
        j = i + s_byte(g) % (6 - i);
        t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    s_ws(g);
    s_put(g, "{");
    for (i = 0, j = 0; i < 6; i++) {
        unsigned m = order[i], k;
        if (m > 1 && i >= n) continue;
        if (j++) s_put(g, ",");
        s_ws(g);
        switch (m) {
        case 0: s_put(g, "\"Count\":"); s_ws(g); s_put(g, "3"); break;
        case 1:
            s_put(g, "\"Items\":");
            s_ws(g);
            s_put(g, "[");
            k = s_byte(g) % 4;
            while (k--) {
                s_ws(g);
                s_item(g);
                s_ws(g);
                if (k) s_put(g, ",");
            }
            s_put(g, "]");
            break;
        case 2:
            s_put(g, "\"LastEvaluatedKey\":");
            s_ws(g);
            if (s_byte(g) % 4 == 0) s_put(g, "null");
            else s_item(g);
            break;
        case 3: s_put(g, "\"ScannedCount\":9"); break;
        default:
            s_name(g);
            s_ws(g);
            s_put(g, ":");
            s_ws(g);
            s_value(g);
        }
        s_ws(g);
    }
    s_put(g, "}");
    s_ws(g);
}

/* ---- the checks ---- */

/* 1 when text is one valid JSON document (the pull reader's verdict). */
static int s_valid(dyn_slice text) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    dyn_json_reader_init(&r, text);
    if (dyn_json_next(&r, &t) != DYN_OK || dyn_json_skip(&r, &t) != DYN_OK) return 0;
    return dyn_json_next(&r, &t) == DYN_OK && t.type == DYN_JSON_END;
}

/* For a valid document, both ways of skipping Items read the same page. */
static void s_same(dyn_slice body) {
    struct dyn_json_reader r1, r2;
    struct s_page_info a, b;
    int fast = 1, walk = 0;
    int rc_fast = s_read_members(&r1, body, &a, &fast);
    int rc_walk = s_read_members(&r2, body, &b, &walk);
    if (rc_walk != DYN_OK || !s_valid(body)) return;
    /* what the walking reader accepts, the one from the end reads alike */
    s_check(rc_fast == DYN_OK || !fast);
    if (rc_fast != DYN_OK) s_check(s_read_page(&r1, body, &a) == DYN_OK);
    s_check(a.count == b.count && a.scanned == b.scanned && a.has_lek == b.has_lek);
    s_check(!a.has_lek || (a.lek.ptr == b.lek.ptr && a.lek.len == b.lek.len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct dyn_json_reader r;
    struct s_page_info info;
    if (size == 0) return 0;
    if ((data[0] & 1) == 0) {
        dyn_slice body = dyn_slice_make((const char *)data + 1, size - 1);
        (void)s_read_page(&r, body, &info);
        s_same(body);
    } else {
        struct gen g;
        struct dyn_json_reader r1;
        g.p = data + 1;
        g.end = data + size;
        g.depth = 0;
        dyn_buf_init(&g.out, dyn_default_allocator());
        s_page(&g);
        s_check(s_valid(dyn_buf_slice(&g.out)));
        s_check(s_read_members(&r1, dyn_buf_slice(&g.out), &info, &(int){0}) == DYN_OK);
        s_same(dyn_buf_slice(&g.out));
        dyn_buf_free(&g.out);
    }
    return 0;
}
