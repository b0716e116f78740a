/*
 * AWS Signature Version 4; see dynamo/sigv4.h for the contract and the
 * canonicalisation rules.
 *
 * The canonical request is written in one pass: its exact upper bound is
 * reserved first and the text goes straight into out->ptr through a cursor,
 * so a signature costs no allocation once the caller's buffer has grown.
 * dyn_sigv4_authorization_cached builds the canonical request and the string
 * to sign in `out` past the entry length, hashes them in place, and moves the
 * final header value down over them.
 */
#include "dynamo/sigv4.h"

#include "dynamo/crypto.h"

#include <stdlib.h>

#define S_ALGO "AWS4-HMAC-SHA256"
#define S_ALGO_LEN (sizeof(S_ALGO) - 1)
#define S_TERM "aws4_request"
#define S_TERM_LEN (sizeof(S_TERM) - 1)
#define S_DAY INT64_C(86400)
/* Days from 0000-01-01 to 1970-01-01 in the proleptic Gregorian calendar. */
#define S_EPOCH_DAYS INT64_C(719528)
/* Sorted header references live on the stack up to this many headers. */
#define S_STACK_HEADERS 16

static const char s_hex_lower[] = "0123456789abcdef";
static const char s_hex_upper[] = "0123456789ABCDEF";

/* ---- character classes ------------------------------------------------ */

/*
 * One byte of class bits per character, built at compile time from
 * ASCII bitmaps (bit c of LO for c < 64, bit c - 64 of HI):
 *  S_UNRESERVED  A-Z a-z 0-9 - . _ ~ (left as is by URI encoding)
 *  S_TCHAR       RFC 7230 token characters (header names, methods): the
 *                unreserved set plus ! # $ % & ' * + ^ ` |
 *  S_SPACE       SP HT LF VT FF CR, folded in header values
 */
#define S_UNRESERVED 1
#define S_TCHAR 2
#define S_SPACE 4
#define S_UNRESERVED_LO UINT64_C(0x03ff600000000000)
#define S_UNRESERVED_HI UINT64_C(0x47fffffe87fffffe)
#define S_TCHAR_LO UINT64_C(0x03ff6cfa00000000)
#define S_TCHAR_HI UINT64_C(0x57ffffffc7fffffe)
#define S_SPACE_LO UINT64_C(0x0000000100003e00)
/* shifts are masked so the branch not taken never shifts by a negative or oversized count */
#define S_BIT(c, lo, hi) ((c) < 64 ? (int)(((lo) >> ((c)&63)) & 1) : (c) < 128 ? (int)(((hi) >> (((c)-64)&63)) & 1) : 0)
#define S_CLS(c)                                                                                   \
    (S_BIT(c, S_UNRESERVED_LO, S_UNRESERVED_HI) * S_UNRESERVED + S_BIT(c, S_TCHAR_LO, S_TCHAR_HI) * S_TCHAR + \
     S_BIT(c, S_SPACE_LO, UINT64_C(0)) * S_SPACE)
#define S_CLS4(c) S_CLS(c), S_CLS((c) + 1), S_CLS((c) + 2), S_CLS((c) + 3)
#define S_CLS16(c) S_CLS4(c), S_CLS4((c) + 4), S_CLS4((c) + 8), S_CLS4((c) + 12)
#define S_CLS64(c) S_CLS16(c), S_CLS16((c) + 16), S_CLS16((c) + 32), S_CLS16((c) + 48)

static const unsigned char s_cls[256] = {S_CLS64(0), S_CLS64(64), S_CLS64(128), S_CLS64(192)};

/* ASCII lowercase as a table: header names are lowered on every signature. */
#define S_LOW(c) ((unsigned char)((c) + (((c) >= 'A' && (c) <= 'Z') ? 32 : 0)))
#define S_LOW4(c) S_LOW(c), S_LOW((c) + 1), S_LOW((c) + 2), S_LOW((c) + 3)
#define S_LOW16(c) S_LOW4(c), S_LOW4((c) + 4), S_LOW4((c) + 8), S_LOW4((c) + 12)
#define S_LOW64(c) S_LOW16(c), S_LOW16((c) + 16), S_LOW16((c) + 32), S_LOW16((c) + 48)

static const unsigned char s_low[256] = {S_LOW64(0), S_LOW64(64), S_LOW64(128), S_LOW64(192)};

static int s_is_unreserved(unsigned char c) { return s_cls[c] & S_UNRESERVED; }

static int s_is_tchar(unsigned char c) { return s_cls[c] & S_TCHAR; }

static int s_is_space(unsigned char c) { return s_cls[c] & S_SPACE; }

static unsigned char s_lower(unsigned char c) { return s_low[c]; }

static int s_hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* A slice's bytes, never NULL (so pointer arithmetic on empty slices is defined). */
static const unsigned char *s_bytes(dyn_slice s) { return (const unsigned char *)(s.ptr ? s.ptr : ""); }

static int s_is_token(dyn_slice s) {
    const unsigned char *p = s_bytes(s);
    size_t i;
    if (s.len == 0) return 0;
    for (i = 0; i < s.len; i++)
        if (!s_is_tchar(p[i])) return 0;
    return 1;
}

/* Region, service and access key: visible ASCII without the scope separator. */
static int s_is_scope_part(dyn_slice s, int allow_comma) {
    const unsigned char *p = s_bytes(s);
    size_t i;
    if (s.len == 0) return 0;
    for (i = 0; i < s.len; i++)
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '/' || (!allow_comma && p[i] == ',')) return 0;
    return 1;
}

/* ---- validation ------------------------------------------------------- */

static int s_slice_ok(dyn_slice s) { return s.len == 0 || s.ptr != NULL; }

static const char *s_request_error(const struct dyn_sigv4_input *in) {
    size_t i;
    if (!s_is_token(in->method)) return "method is empty or not a token";
    if (!s_slice_ok(in->path) || !s_slice_ok(in->query) || !s_slice_ok(in->payload))
        return "path, query or payload has a NULL pointer";
    if (in->n_headers && !in->headers) return "headers is NULL";
    for (i = 0; i < in->n_headers; i++) {
        if (!s_is_token(in->headers[i].name)) return "header name is empty or not a token";
        if (!s_slice_ok(in->headers[i].value)) return "header value has a NULL pointer";
    }
    return NULL;
}

static const char *s_scope_error(const struct dyn_sigv4_input *in) {
    if (in->unix_time < DYN_SIGV4_MIN_TIME || in->unix_time > DYN_SIGV4_MAX_TIME)
        return "time out of range (years 0000 to 9999)";
    if (!s_is_scope_part(in->region, 1)) return "region is empty or has a space, control character or '/'";
    if (!s_is_scope_part(in->service, 1)) return "service is empty or has a space, control character or '/'";
    return NULL;
}

static const char *s_credential_error(const struct dyn_sigv4_input *in) {
    if (!s_is_scope_part(in->access_key, 0))
        return "access key is empty or has a space, control character, '/' or ','";
    if (!s_slice_ok(in->secret_key)) return "secret key has a NULL pointer";
    return NULL;
}

const char *dyn_sigv4_input_error(const struct dyn_sigv4_input *in) {
    const char *why;
    if (!in) return "no input";
    if ((why = s_request_error(in)) != NULL) return why;
    if ((why = s_scope_error(in)) != NULL) return why;
    return s_credential_error(in);
}

/* ---- dates ------------------------------------------------------------ */

static int64_t s_floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if (a % b != 0 && (a < 0) != (b < 0)) q--;
    return q;
}

/* Days from 0000-01-01 to y-01-01, y >= 0; year 0 is a leap year. */
static int64_t s_days_before_year(int64_t y) { return 365 * y + (y + 3) / 4 - (y + 99) / 100 + (y + 399) / 400; }

static int s_is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

static void s_put_digits(char *w, int64_t v, int width) {
    while (width-- > 0) {
        w[width] = (char)('0' + v % 10);
        v /= 10;
    }
}

void dyn_sigv4_amz_date(int64_t unix_time, char out[17]) {
    static const int cum[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t t = unix_time, days, sod, y, doy;
    int m, leap, before;
    if (t < DYN_SIGV4_MIN_TIME) t = DYN_SIGV4_MIN_TIME;
    if (t > DYN_SIGV4_MAX_TIME) t = DYN_SIGV4_MAX_TIME;
    days = s_floor_div(t, S_DAY);
    sod = t - days * S_DAY;
    days += S_EPOCH_DAYS; /* now >= 0, counted from 0000-01-01 */
    /* 146097 days per 400 years: a first guess within one year of the answer. */
    y = days * 400 / 146097;
    while (s_days_before_year(y + 1) <= days) y++;
    while (s_days_before_year(y) > days) y--;
    doy = days - s_days_before_year(y);
    leap = s_is_leap(y);
    for (m = 11; m > 0; m--)
        if (cum[m] + (m >= 2 ? leap : 0) <= doy) break;
    before = cum[m] + (m >= 2 ? leap : 0);
    s_put_digits(out, y, 4);
    s_put_digits(out + 4, m + 1, 2);
    s_put_digits(out + 6, doy - before + 1, 2);
    out[8] = 'T';
    s_put_digits(out + 9, sod / 3600, 2);
    s_put_digits(out + 11, sod / 60 % 60, 2);
    s_put_digits(out + 13, sod % 60, 2);
    out[15] = 'Z';
    out[16] = '\0';
}

/* ---- cursor writers (space reserved by the caller) --------------------- */

static char *s_put(char *w, const void *p, size_t n) {
    if (n) memcpy(w, p, n);
    return w + n;
}

static char *s_put_slice(char *w, dyn_slice s) { return s_put(w, s_bytes(s), s.len); }

static char *s_put_hex(char *w, const unsigned char *b, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        *w++ = s_hex_lower[b[i] >> 4];
        *w++ = s_hex_lower[b[i] & 15];
    }
    return w;
}

static char *s_put_encoded_byte(char *w, unsigned char c) {
    if (s_is_unreserved(c)) {
        *w++ = (char)c;
    } else {
        *w++ = '%';
        *w++ = s_hex_upper[c >> 4];
        *w++ = s_hex_upper[c & 15];
    }
    return w;
}

/* At most 3 * path.len + 2 bytes. */
static char *s_put_path(char *w, dyn_slice path) {
    const unsigned char *p = s_bytes(path), *end = p + path.len, *seg;
    char *start = w;
    size_t n, i;
    int trailing = 0;
    if (path.len == 1 && p[0] == '/') { /* DynamoDB's only path */
        *w++ = '/';
        return w;
    }
    /*
     * The output is a stack of "/segment" entries: ".." pops back to the
     * previous '/', which is unambiguous because encoded segments never
     * contain a literal '/'.
     */
    for (;;) {
        seg = p;
        while (p < end && *p != '/') p++;
        n = (size_t)(p - seg);
        if (n == 0 || (n == 1 && seg[0] == '.')) {
            trailing = 1;
        } else if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            trailing = 1;
            while (w > start && *--w != '/') {
            }
        } else {
            trailing = 0;
            *w++ = '/';
            for (i = 0; i < n; i++) w = s_put_encoded_byte(w, seg[i]);
        }
        if (p == end) break;
        p++;
    }
    if (w == start || trailing) *w++ = '/';
    return w;
}

/* Header value: trimmed, whitespace runs folded to one space; runs copied whole. */
static char *s_put_value(char *w, dyn_slice v) {
    const unsigned char *p = s_bytes(v), *e = p + v.len, *run;
    while (p < e && s_is_space(*p)) p++;
    while (e > p && s_is_space(e[-1])) e--;
    while (p < e) {
        run = p;
        /*
         * Whitespace is <= 0x20, so skip 8 bytes at a time while none is:
         * (x - 0x21..21) & ~x & 0x80..80 is non-zero exactly when some byte
         * of x is below 0x21. Then finish byte by byte.
         */
        while (e - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if ((x - UINT64_C(0x2121212121212121)) & ~x & UINT64_C(0x8080808080808080)) break;
            p += 8;
        }
        while (p < e && !s_is_space(*p)) p++;
        w = s_put(w, run, (size_t)(p - run));
        if (p < e) { /* a run of whitespace, never the trailing one */
            *w++ = ' ';
            while (s_is_space(*p)) p++;
        }
    }
    return w;
}

static char *s_put_lower(char *w, dyn_slice s) {
    const unsigned char *p = s_bytes(s);
    size_t i;
    for (i = 0; i < s.len; i++) *w++ = (char)s_lower(p[i]);
    return w;
}

/* "<YYYYMMDD>/<region>/<service>/aws4_request" */
static char *s_put_scope(char *w, const char amz[17], const struct dyn_sigv4_input *in) {
    w = s_put(w, amz, 8);
    *w++ = '/';
    w = s_put_slice(w, in->region);
    *w++ = '/';
    w = s_put_slice(w, in->service);
    *w++ = '/';
    return s_put(w, S_TERM, S_TERM_LEN);
}

static size_t s_scope_len(const struct dyn_sigv4_input *in) {
    return 8 + 1 + in->region.len + 1 + in->service.len + 1 + S_TERM_LEN;
}

/* ---- size arithmetic that cannot wrap ---------------------------------- */

static int s_add(size_t *acc, size_t v) {
    if (v > SIZE_MAX - *acc) return 0;
    *acc += v;
    return 1;
}

static int s_add_mul(size_t *acc, size_t v, size_t k) {
    if (v > SIZE_MAX / k) return 0;
    return s_add(acc, v * k);
}

static const struct dyn_allocator *s_alloc_of(const struct dyn_buf *b) {
    return b->alloc ? b->alloc : dyn_default_allocator();
}

/* ---- canonical query string -------------------------------------------- */

struct s_param {
    size_t koff, klen, voff, vlen; /* into s_query.enc while building */
    const char *k, *v;             /* set once enc stops moving */
};

struct s_query {
    struct dyn_buf enc; /* every key and value, encoded, back to back */
    struct s_param *params;
    size_t n, cap;
    size_t text_len; /* length of the joined canonical query */
};

static void s_query_init(struct s_query *q, const struct dyn_allocator *a) {
    dyn_buf_init(&q->enc, a);
    q->params = NULL;
    q->n = q->cap = 0;
    q->text_len = 0;
}

static void s_query_free(struct s_query *q) {
    dyn_mem_free(q->enc.alloc, q->params, q->cap * sizeof *q->params);
    dyn_buf_free(&q->enc);
}

/* Percent-decodes [p, end) and appends it re-encoded; space was reserved. */
static void s_query_put_part(struct dyn_buf *enc, const unsigned char *p, const unsigned char *end) {
    char *w = enc->ptr + enc->len;
    int hi, lo;
    while (p < end) {
        unsigned char c = *p++;
        if (c == '%' && end - p >= 2 && (hi = s_hex_value(p[0])) >= 0 && (lo = s_hex_value(p[1])) >= 0) {
            c = (unsigned char)(hi << 4 | lo);
            p += 2;
        }
        w = s_put_encoded_byte(w, c);
    }
    enc->len = (size_t)(w - enc->ptr);
    enc->ptr[enc->len] = '\0';
}

static int s_cmp_bytes(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c) return c;
    return an < bn ? -1 : an > bn;
}

static int s_param_cmp(const void *pa, const void *pb) {
    const struct s_param *a = pa, *b = pb;
    int c = s_cmp_bytes(a->k, a->klen, b->k, b->klen);
    return c ? c : s_cmp_bytes(a->v, a->vlen, b->v, b->vlen);
}

static int s_query_prepare(struct s_query *q, dyn_slice query) {
    const unsigned char *p = s_bytes(query), *end = p + query.len, *pair, *eq;
    size_t i, cap = 1, enc_cap = 0;
    for (i = 0; i < query.len; i++) cap += p[i] == '&';
    if (cap > SIZE_MAX / sizeof *q->params || !s_add_mul(&enc_cap, query.len, 3)) return DYN_ENOMEM;
    if (dyn_buf_reserve(&q->enc, enc_cap) != DYN_OK) return DYN_ENOMEM;
    q->params = dyn_mem_alloc(q->enc.alloc, cap * sizeof *q->params);
    if (!q->params) return DYN_ENOMEM;
    q->cap = cap;

    while (p <= end) {
        pair = p;
        while (p < end && *p != '&') p++;
        if (p > pair) {
            struct s_param *pr = &q->params[q->n++];
            eq = pair;
            while (eq < p && *eq != '=') eq++;
            pr->koff = q->enc.len;
            s_query_put_part(&q->enc, pair, eq);
            pr->klen = q->enc.len - pr->koff;
            pr->voff = q->enc.len;
            if (eq < p) s_query_put_part(&q->enc, eq + 1, p);
            pr->vlen = q->enc.len - pr->voff;
        }
        if (p == end) break;
        p++;
    }
    for (i = 0; i < q->n; i++) {
        q->params[i].k = q->enc.ptr + q->params[i].koff;
        q->params[i].v = q->enc.ptr + q->params[i].voff;
        q->text_len += q->params[i].klen + 1 + q->params[i].vlen + (i > 0);
    }
    if (q->n > 1) qsort(q->params, q->n, sizeof *q->params, s_param_cmp);
    return DYN_OK;
}

static char *s_put_query(char *w, const struct s_query *q) {
    size_t i;
    for (i = 0; i < q->n; i++) {
        if (i) *w++ = '&';
        w = s_put(w, q->params[i].k, q->params[i].klen);
        *w++ = '=';
        w = s_put(w, q->params[i].v, q->params[i].vlen);
    }
    return w;
}

/* ---- headers ----------------------------------------------------------- */

static int s_name_cmp(dyn_slice a, dyn_slice b) {
    const unsigned char *pa = s_bytes(a), *pb = s_bytes(b);
    size_t i, n = a.len < b.len ? a.len : b.len;
    for (i = 0; i < n; i++) {
        unsigned char ca = s_lower(pa[i]), cb = s_lower(pb[i]);
        if (ca != cb) return ca < cb ? -1 : 1;
    }
    return a.len < b.len ? -1 : a.len > b.len;
}

static int s_name_eq(dyn_slice a, dyn_slice b) {
    const unsigned char *pa = s_bytes(a), *pb = s_bytes(b);
    size_t i;
    if (a.len != b.len) return 0;
    for (i = 0; i < a.len; i++)
        if (s_lower(pa[i]) != s_lower(pb[i])) return 0;
    return 1;
}

/* A header in canonical order; `joined` when it continues the previous name. */
struct s_ref {
    const struct dyn_header *h;
    int joined;
};

/* Stable insertion sort by lowercase name (headers are few), then grouping. */
static void s_sort_headers(const struct dyn_header *h, size_t n, struct s_ref *refs) {
    size_t i, j;
    const struct dyn_header *v;
    for (i = 0; i < n; i++) {
        v = &h[i];
        for (j = i; j > 0 && s_name_cmp(refs[j - 1].h->name, v->name) > 0; j--) refs[j].h = refs[j - 1].h;
        refs[j].h = v;
    }
    for (i = 0; i < n; i++) refs[i].joined = i > 0 && s_name_eq(refs[i - 1].h->name, refs[i].h->name);
}

/* ---- canonical request ------------------------------------------------- */

/*
 * Appends the canonical request and reports where its signed-headers line
 * sits in out (as an offset: out->ptr may move later).
 */
static int s_canonical_request(const struct dyn_sigv4_input *in, struct dyn_buf *out, size_t *sh_off,
                               size_t *sh_len) {
    int rc = DYN_OK;
    const size_t base = out->len, n = in->n_headers;
    const struct dyn_header *h = in->headers;
    struct s_ref stack_refs[S_STACK_HEADERS], *refs = stack_refs;
    size_t bound = 0, i, sh_start;
    struct s_query q;
    unsigned char payload_hash[DYN_SHA256_LEN];
    char *w;

    s_query_init(&q, s_alloc_of(out));
    if (in->query.len && (rc = s_query_prepare(&q, in->query)) != DYN_OK) goto cleanup;
    if (n > S_STACK_HEADERS) {
        refs = n > SIZE_MAX / sizeof *refs ? NULL : dyn_mem_alloc(q.enc.alloc, n * sizeof *refs);
        if (!refs) {
            rc = DYN_ENOMEM;
            goto cleanup;
        }
    }
    s_sort_headers(h, n, refs);
    if ((rc = dyn_sha256(s_bytes(in->payload), in->payload.len, payload_hash)) != DYN_OK) goto cleanup;

    /* method \n path \n query \n headers \n \n signed \n hash */
    if (!s_add(&bound, in->method.len) || !s_add_mul(&bound, in->path.len, 3) || !s_add(&bound, q.text_len) ||
        !s_add(&bound, 6 + 2 + 2 * DYN_SHA256_LEN))
        rc = DYN_ENOMEM;
    for (i = 0; i < n && rc == DYN_OK; i++)
        if (!s_add_mul(&bound, h[i].name.len, 2) || !s_add(&bound, h[i].value.len) || !s_add(&bound, 3))
            rc = DYN_ENOMEM;
    if (rc != DYN_OK || (rc = dyn_buf_reserve(out, bound)) != DYN_OK) goto cleanup;

    w = out->ptr + out->len;
    w = s_put_slice(w, in->method);
    *w++ = '\n';
    w = s_put_path(w, in->path);
    *w++ = '\n';
    w = s_put_query(w, &q);
    *w++ = '\n';
    for (i = 0; i < n; i++) { /* name:value[,value...] per distinct name */
        if (refs[i].joined) {
            *w++ = ',';
        } else {
            if (i) *w++ = '\n';
            w = s_put_lower(w, refs[i].h->name);
            *w++ = ':';
        }
        w = s_put_value(w, refs[i].h->value);
    }
    if (n) *w++ = '\n';
    *w++ = '\n';
    sh_start = (size_t)(w - out->ptr);
    for (i = 0; i < n; i++) {
        if (refs[i].joined) continue;
        if (i) *w++ = ';';
        w = s_put_lower(w, refs[i].h->name);
    }
    *sh_off = sh_start;
    *sh_len = (size_t)(w - out->ptr) - sh_start;
    *w++ = '\n';
    w = s_put_hex(w, payload_hash, DYN_SHA256_LEN);
    out->len = (size_t)(w - out->ptr);
    out->ptr[out->len] = '\0';

cleanup:
    if (refs != stack_refs) dyn_mem_free(q.enc.alloc, refs, n * sizeof *refs);
    s_query_free(&q);
    if (rc != DYN_OK) dyn_buf_truncate(out, base);
    return rc;
}

int dyn_sigv4_canonical_request(const struct dyn_sigv4_input *in, struct dyn_buf *out) {
    size_t sh_off, sh_len;
    if (!in || s_request_error(in)) return DYN_EINVAL;
    return s_canonical_request(in, out, &sh_off, &sh_len);
}

/* ---- string to sign ---------------------------------------------------- */

static int s_append_sts(const struct dyn_sigv4_input *in, const char amz[17],
                        const unsigned char creq_hash[DYN_SHA256_LEN], struct dyn_buf *out) {
    size_t need = S_ALGO_LEN + 1 + 16 + 1 + 1 + 2 * DYN_SHA256_LEN;
    int rc;
    char *w;
    if (!s_add(&need, s_scope_len(in))) return DYN_ENOMEM;
    if ((rc = dyn_buf_reserve(out, need)) != DYN_OK) return rc;
    w = out->ptr + out->len;
    w = s_put(w, S_ALGO, S_ALGO_LEN);
    *w++ = '\n';
    w = s_put(w, amz, 16);
    *w++ = '\n';
    w = s_put_scope(w, amz, in);
    *w++ = '\n';
    w = s_put_hex(w, creq_hash, DYN_SHA256_LEN);
    out->len = (size_t)(w - out->ptr);
    out->ptr[out->len] = '\0';
    return DYN_OK;
}

int dyn_sigv4_string_to_sign(const struct dyn_sigv4_input *in, dyn_slice creq, struct dyn_buf *out) {
    unsigned char hash[DYN_SHA256_LEN];
    char amz[17];
    int rc;
    if (!in || s_scope_error(in) || !s_slice_ok(creq)) return DYN_EINVAL;
    if ((rc = dyn_sha256(s_bytes(creq), creq.len, hash)) != DYN_OK) return rc;
    dyn_sigv4_amz_date(in->unix_time, amz);
    return s_append_sts(in, amz, hash, out); /* appends nothing unless it succeeds */
}

/* ---- signing key ------------------------------------------------------- */

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
static int s_derive_key(const struct dyn_sigv4_input *in, const char amz[17], unsigned char key[DYN_SHA256_LEN]) {
    unsigned char a[DYN_SHA256_LEN], b[DYN_SHA256_LEN];
    int rc;
    if ((rc = dyn_hmac_sha256_key2("AWS4", 4, s_bytes(in->secret_key), in->secret_key.len, amz, 8, a)) != DYN_OK)
        goto cleanup;
    if ((rc = dyn_hmac_sha256(a, sizeof a, s_bytes(in->region), in->region.len, b)) != DYN_OK) goto cleanup;
    if ((rc = dyn_hmac_sha256(b, sizeof b, s_bytes(in->service), in->service.len, a)) != DYN_OK) goto cleanup;
    rc = dyn_hmac_sha256(a, sizeof a, S_TERM, S_TERM_LEN, key);
cleanup:
    dyn_secure_zero(a, sizeof a);
    dyn_secure_zero(b, sizeof b);
    return rc;
}

static int s_cache_field_eq(const char *field, size_t size, dyn_slice s) {
    return s.len < size && memcmp(field, s_bytes(s), s.len) == 0 && field[s.len] == '\0';
}

void dyn_sigv4_key_cache_init(struct dyn_sigv4_key_cache *cache) {
    if (cache) dyn_secure_zero(cache, sizeof *cache);
}

static int s_signing_key(const struct dyn_sigv4_input *in, const char amz[17], struct dyn_sigv4_key_cache *cache,
                         const unsigned char *known_fp, unsigned char key[DYN_SHA256_LEN]) {
    unsigned char fp[DYN_SHA256_LEN];
    int rc;
    if (!cache) return s_derive_key(in, amz, key);
    if (known_fp)
        memcpy(fp, known_fp, sizeof fp);
    else if ((rc = dyn_sha256(s_bytes(in->secret_key), in->secret_key.len, fp)) != DYN_OK)
        return rc;
    if (memcmp(cache->date, amz, 8) == 0 && cache->date[8] == '\0' &&
        s_cache_field_eq(cache->region, sizeof cache->region, in->region) &&
        s_cache_field_eq(cache->service, sizeof cache->service, in->service) &&
        memcmp(cache->secret_fp, fp, sizeof fp) == 0) {
        memcpy(key, cache->key, DYN_SHA256_LEN);
        return DYN_OK;
    }
    dyn_sigv4_key_cache_init(cache);
    if ((rc = s_derive_key(in, amz, key)) != DYN_OK) return rc;
    if (in->region.len < sizeof cache->region && in->service.len < sizeof cache->service) {
        memcpy(cache->date, amz, 8);
        memcpy(cache->region, s_bytes(in->region), in->region.len);
        memcpy(cache->service, s_bytes(in->service), in->service.len);
        memcpy(cache->secret_fp, fp, sizeof fp);
        memcpy(cache->key, key, DYN_SHA256_LEN);
    }
    return DYN_OK;
}

/* ---- authorization ----------------------------------------------------- */

int dyn_sigv4_authorization_cached_fp(const struct dyn_sigv4_input *in, struct dyn_sigv4_key_cache *cache,
                                      const unsigned char secret_fp[32], struct dyn_buf *out) {
    static const char cred[] = " Credential=", sh[] = ", SignedHeaders=", sig_label[] = ", Signature=";
    const size_t base = out->len;
    size_t sh_off = 0, sh_len = 0, sts_off, auth_off, need;
    unsigned char hash[DYN_SHA256_LEN], key[DYN_SHA256_LEN], sig[DYN_SHA256_LEN];
    char amz[17];
    char *w;
    int rc;

    if (dyn_sigv4_input_error(in)) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    dyn_sigv4_amz_date(in->unix_time, amz);
    if ((rc = s_canonical_request(in, out, &sh_off, &sh_len)) != DYN_OK) goto cleanup;
    if ((rc = dyn_sha256(out->ptr + base, out->len - base, hash)) != DYN_OK) goto cleanup;
    sts_off = out->len;
    if ((rc = s_append_sts(in, amz, hash, out)) != DYN_OK) goto cleanup;
    if ((rc = s_signing_key(in, amz, cache, secret_fp, key)) != DYN_OK) goto cleanup;
    if ((rc = dyn_hmac_sha256(key, sizeof key, out->ptr + sts_off, out->len - sts_off, sig)) != DYN_OK) goto cleanup;

    auth_off = out->len;
    need = S_ALGO_LEN + sizeof cred - 1 + 1 + sizeof sh - 1 + sizeof sig_label - 1 + 2 * DYN_SHA256_LEN;
    if (!s_add(&need, in->access_key.len) || !s_add(&need, s_scope_len(in)) || !s_add(&need, sh_len)) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    if ((rc = dyn_buf_reserve(out, need)) != DYN_OK) goto cleanup;
    w = out->ptr + auth_off;
    w = s_put(w, S_ALGO, S_ALGO_LEN);
    w = s_put(w, cred, sizeof cred - 1);
    w = s_put_slice(w, in->access_key);
    *w++ = '/';
    w = s_put_scope(w, amz, in);
    w = s_put(w, sh, sizeof sh - 1);
    w = s_put(w, out->ptr + sh_off, sh_len); /* the creq copy sits below auth_off: no overlap */
    w = s_put(w, sig_label, sizeof sig_label - 1);
    w = s_put_hex(w, sig, DYN_SHA256_LEN);
    need = (size_t)(w - (out->ptr + auth_off));
    memmove(out->ptr + base, out->ptr + auth_off, need);
    out->len = base + need;
    out->ptr[out->len] = '\0';

cleanup:
    dyn_secure_zero(key, sizeof key);
    if (rc != DYN_OK) dyn_buf_truncate(out, base);
    return rc;
}

int dyn_sigv4_authorization_cached(const struct dyn_sigv4_input *in, struct dyn_sigv4_key_cache *cache,
                                   struct dyn_buf *out) {
    return dyn_sigv4_authorization_cached_fp(in, cache, NULL, out);
}

int dyn_sigv4_authorization(const struct dyn_sigv4_input *in, struct dyn_buf *out) {
    return dyn_sigv4_authorization_cached_fp(in, NULL, NULL, out);
}
