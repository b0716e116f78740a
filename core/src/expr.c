/*
 * DynamoDB expressions: path parser, compiler, combiner and renderer.
 * See dynamo/expr.h for the contract and the placeholder scheme.
 *
 * A compiled expression is one allocation: the header, a uint32 word array
 * (the tree in prefix order), the sorted distinct segments, the distinct
 * value operands and a byte pool holding their text. Every constructor goes
 * through a builder that may hold duplicate segments; s_finish sorts and
 * de-duplicates them, prunes projections and updates, checks the limits that
 * do not depend on data, and packs the result.
 */
#include "dynamo/expr.h"

#include <stdarg.h>
#include <stdio.h>

/* ---- word layout ----------------------------------------------------------
 * Node words keep a tag in the low 8 bits:
 *   AND/OR:  tag | count << 8, then `count` child nodes
 *   NOT:     tag, then one child node
 *   CLAUSE:  tag | op << 8 | size_of << 16 | n_values << 17, a path, n value numbers
 *   PROJ:    tag | count << 8, then `count` paths
 *   UPDATE:  tag | count << 8, then `count` items
 *   ITEM:    tag | action << 8, a path, then a value number unless REMOVE
 *   PATH:    tag | length << 8, then `length` elements: a segment number, or
 *            S_INDEX | list index
 */
enum { T_AND = 1, T_OR = 2, T_NOT = 3, T_CLAUSE = 4, T_PROJ = 5, T_UPDATE = 6, T_ITEM = 7, T_PATH = 8 };

#define S_TAG(w) ((w) & 0xffu)
#define S_ARG(w) ((w) >> 8)
#define S_INDEX 0x80000000u
#define S_NONE 0xffffffffu
#define S_MAX_COUNT 0xffffffu      /* children of a node, 24 bits */
#define S_MAX_INDEX 0x7fffffffu
#define S_SHOW_MAX 200             /* bytes of a name or path quoted in a message */
#define S_TEMPLATE_MAX 300         /* bytes of a template quoted in a message */

#define S_CLAUSE_OP(w) (((w) >> 8) & 0xffu)
#define S_CLAUSE_SIZE(w) (((w) >> 16) & 1u)
#define S_CLAUSE_NVALS(w) ((w) >> 17)

struct s_str {
    uint32_t off, len;
    uint64_t key; /* first 8 bytes, big-endian, zero padded: orders like the bytes */
};

struct s_val {
    uint32_t off, len, literal;
    uint32_t hash; /* of the name, set when packed (render looks names up by it) */
};

/* A place in a skeleton where a placeholder goes: 4 bytes ("#???" or ":???") at off. */
enum { H_NAME = 1, H_VALUE = 2, H_IN = 3 };
struct s_hole {
    uint32_t off, id;  /* id: segment (H_NAME) or operand number */
    uint8_t kind;
    uint8_t action;    /* update action whose value this is, or S_NO_ACTION */
    uint8_t first;     /* H_IN: first operand of its IN list */
    uint8_t last;      /* H_IN: last operand of its IN list */
};

/* Why a condition cannot be a key condition (worked out when compiled). */
enum { KE_OK = 0, KE_SHAPE, KE_OP, KE_PATH, KE_SAME, KE_NOEQ };

struct dyn_expr {
    const struct dyn_allocator *alloc;
    size_t alloc_size;
    int kind;
    uint32_t depth;
    uint32_t n_code, n_segs, n_vals, n_holes, sk_len;
    uint8_t key_error, key_op;
    uint32_t *code;
    struct s_str *segs;
    struct s_val *vals;
    struct s_hole *holes;
    char *pool;
    char *sk; /* the skeleton: the request string with holes */
};

/* The packed layout puts 8-byte aligned segments right after the header. */
typedef char s_header_keeps_alignment[sizeof(struct dyn_expr) % 8 == 0 ? 1 : -1];

static const char *const s_op_names[DYN_EXPR_OP_COUNT] = {
    "=", "<>", "<", "<=", ">", ">=", "IN", "BETWEEN", "begins_with", "contains",
    "attribute_exists", "attribute_not_exists", "attribute_type",
};

static const char *const s_slot_names[DYN_EXPR_SLOTS] = {
    "KeyConditionExpression", "FilterExpression", "ConditionExpression", "UpdateExpression",
    "ProjectionExpression",
};

static const char *const s_kind_names[] = {"?", "a condition", "a projection", "an update"};

int dyn_expr_op_parse(dyn_slice s) {
    int i;
    for (i = 0; i < DYN_EXPR_OP_COUNT; i++)
        if (dyn_slice_eq_cstr(s, s_op_names[i])) return i;
    return -1;
}

const char *dyn_expr_op_name(int op) {
    return op >= 0 && op < DYN_EXPR_OP_COUNT ? s_op_names[op] : "?";
}

const char *dyn_expr_slot_name(int slot) {
    return slot >= 0 && slot < DYN_EXPR_SLOTS ? s_slot_names[slot] : "?";
}

/* ---- messages ------------------------------------------------------------- */

/* Appends a printf-formatted message; errors are best effort (ENOMEM ignored). */
static void s_errf(struct dyn_buf *err, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    int n;
    if (!err) return;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof tmp) n = (int)sizeof tmp - 1;
    (void)dyn_buf_append(err, tmp, (size_t)n);
}

/* Appends s in double quotes, control bytes and quotes escaped, cut at `max` bytes. */
static void s_err_quote(struct dyn_buf *err, dyn_slice s, size_t max) {
    size_t i, n = s.len < max ? s.len : max;
    if (!err) return;
    (void)dyn_buf_putc(err, '"');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') {
            (void)dyn_buf_putc(err, '\\');
            (void)dyn_buf_putc(err, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            s_errf(err, "\\x%02x", c);
        } else {
            (void)dyn_buf_putc(err, (char)c);
        }
    }
    if (n < s.len) (void)dyn_buf_append_cstr(err, "...");
    (void)dyn_buf_putc(err, '"');
}

/* ---- small helpers -------------------------------------------------------- */

static int s_push32(struct dyn_buf *b, uint32_t w) { return dyn_buf_append(b, &w, sizeof w); }

#define S_WORDS(buf) ((uint32_t *)(void *)(buf).ptr)
#define S_NWORDS(buf) ((buf).len / sizeof(uint32_t))

/* "aa".."zz" for seq % 676 (a constant table), so a placeholder costs one division. */
#define S_ROW(c)                                                                                                \
    c "a" c "b" c "c" c "d" c "e" c "f" c "g" c "h" c "i" c "j" c "k" c "l" c "m" c "n" c "o" c "p" c "q" c "r" \
        c "s" c "t" c "u" c "v" c "w" c "x" c "y" c "z"
static const char s_pairs[] = S_ROW("a") S_ROW("b") S_ROW("c") S_ROW("d") S_ROW("e") S_ROW("f") S_ROW("g")
    S_ROW("h") S_ROW("i") S_ROW("j") S_ROW("k") S_ROW("l") S_ROW("m") S_ROW("n") S_ROW("o") S_ROW("p") S_ROW("q")
        S_ROW("r") S_ROW("s") S_ROW("t") S_ROW("u") S_ROW("v") S_ROW("w") S_ROW("x") S_ROW("y") S_ROW("z");

/* seq < DYN_EXPR_MAX_PLACEHOLDERS: callers check. */
static inline void s_letters(uint32_t seq, char out[3]) {
    uint32_t hi = seq / 676u, lo = seq - hi * 676u;
    out[0] = (char)('a' + hi % 26u);
    out[1] = s_pairs[2 * lo];
    out[2] = s_pairs[2 * lo + 1];
}

size_t dyn_expr_placeholder(uint32_t seq, int32_t elem, char out[24]) {
    size_t n = 3;
    s_letters(seq, out);
    if (elem >= 0) {
        char digits[12];
        size_t d = 0;
        uint32_t v = (uint32_t)elem;
        do {
            digits[d++] = (char)('0' + v % 10u);
            v /= 10u;
        } while (v);
        out[n++] = '_';
        while (d) out[n++] = digits[--d];
    }
    out[n] = '\0';
    return n;
}

static int s_append_u32(struct dyn_buf *b, uint32_t v) {
    char digits[12];
    size_t d = 0;
    int rc = dyn_buf_reserve(b, 10);
    if (rc) return rc;
    do {
        digits[d++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (d) b->ptr[b->len++] = digits[--d];
    b->ptr[b->len] = '\0';
    return DYN_OK;
}

static int s_is_special(char c) { return c == '.' || c == '[' || c == ']' || c == '\\'; }

int dyn_expr_path_escape(dyn_slice name, struct dyn_buf *out) {
    size_t i, start = out->len;
    int rc = DYN_OK;
    for (i = 0; i < name.len && rc == DYN_OK; i++) {
        if (s_is_special(name.ptr[i])) rc = dyn_buf_putc(out, '\\');
        if (rc == DYN_OK) rc = dyn_buf_putc(out, name.ptr[i]);
    }
    if (rc) dyn_buf_truncate(out, start);
    return rc;
}

/* Generic stable merge sort of n uint32 keys by cmp(ctx, a, b); tmp holds n entries. */
typedef int (*s_cmp_fn)(const void *ctx, uint32_t a, uint32_t b);

static void s_sort(uint32_t *a, uint32_t *tmp, size_t n, s_cmp_fn cmp, const void *ctx) {
    size_t width, i;
    uint32_t *src = a, *dst = tmp, *t;
    for (width = 1; width < n; width *= 2) {
        for (i = 0; i < n; i += 2 * width) {
            size_t lo = i, mid = i + width < n ? i + width : n, hi = i + 2 * width < n ? i + 2 * width : n;
            size_t p = lo, q = mid, k = lo;
            while (p < mid && q < hi) dst[k++] = cmp(ctx, src[q], src[p]) < 0 ? src[q++] : src[p++];
            while (p < mid) dst[k++] = src[p++];
            while (q < hi) dst[k++] = src[q++];
        }
        t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

static int s_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

static uint64_t s_key8(const char *p, size_t n) {
    uint64_t k = 0;
    size_t i;
    for (i = 0; i < 8; i++) k = k << 8 | (i < n ? (unsigned char)p[i] : 0u);
    return k;
}

/* FNV-1a, for looking value names up while rendering. */
static uint32_t s_hash(dyn_slice s) {
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < s.len; i++) h = (h ^ (unsigned char)s.ptr[i]) * 16777619u;
    return h;
}

/* ---- builder --------------------------------------------------------------- */

struct s_builder {
    const struct dyn_allocator *alloc;
    struct dyn_buf pool; /* segment and operand bytes */
    struct dyn_buf segs; /* struct s_str; may repeat names until s_finish */
    struct dyn_buf vals; /* struct s_val; names distinct */
    struct dyn_buf code; /* uint32 words */
    struct dyn_buf *err;
};

static void s_builder_init(struct s_builder *b, const struct dyn_allocator *alloc, struct dyn_buf *err) {
    b->alloc = alloc ? alloc : dyn_default_allocator();
    dyn_buf_init(&b->pool, b->alloc);
    dyn_buf_init(&b->segs, b->alloc);
    dyn_buf_init(&b->vals, b->alloc);
    dyn_buf_init(&b->code, b->alloc);
    b->err = err;
}

static void s_builder_free(struct s_builder *b) {
    dyn_buf_free(&b->pool);
    dyn_buf_free(&b->segs);
    dyn_buf_free(&b->vals);
    dyn_buf_free(&b->code);
}

#define S_SEGS(b) ((struct s_str *)(void *)(b)->segs.ptr)
#define S_NSEGS(b) ((b)->segs.len / sizeof(struct s_str))
#define S_VALS(b) ((struct s_val *)(void *)(b)->vals.ptr)
#define S_NVALS(b) ((b)->vals.len / sizeof(struct s_val))

static int s_pool_add(struct s_builder *b, dyn_slice s, uint32_t *off) {
    if (b->pool.len + s.len >= 0xffffffffu) return DYN_ENOMEM;
    *off = (uint32_t)b->pool.len;
    return dyn_buf_append(&b->pool, s.ptr, s.len);
}

/* A new (possibly repeated) segment whose bytes are already at pool[off, off+len). */
static int s_seg_add(struct s_builder *b, uint32_t off, uint32_t len, uint32_t *id) {
    struct s_str s;
    s.off = off;
    s.len = len;
    *id = (uint32_t)S_NSEGS(b);
    return dyn_buf_append(&b->segs, &s, sizeof s);
}

/* Operand number for op: names are shared, literals always new. */
static int s_val_add(struct s_builder *b, struct dyn_expr_operand op, uint32_t *id) {
    size_t i, n = S_NVALS(b);
    struct s_val v;
    int rc;
    if (!op.literal) {
        const struct s_val *vals = S_VALS(b);
        for (i = 0; i < n; i++) {
            if (!vals[i].literal && vals[i].len == op.text.len &&
                (op.text.len == 0 || memcmp(b->pool.ptr + vals[i].off, op.text.ptr, op.text.len) == 0)) {
                *id = (uint32_t)i;
                return DYN_OK;
            }
        }
    }
    if (n >= S_MAX_COUNT) return DYN_EINVAL;
    if ((rc = s_pool_add(b, op.text, &v.off)) != DYN_OK) return rc;
    v.len = (uint32_t)op.text.len;
    v.literal = op.literal ? 1u : 0u;
    *id = (uint32_t)n;
    return dyn_buf_append(&b->vals, &v, sizeof v);
}

/* Parses path text into a PATH node appended to the builder's code. */
static int s_parse_path(struct s_builder *b, dyn_slice text) {
    const char *p = text.ptr;
    size_t i = 0, n = text.len, head = S_NWORDS(b->code);
    uint32_t count = 0, id, off;
    const char *why = NULL;
    size_t where = 0;
    int rc;

    if ((rc = s_push32(&b->code, T_PATH)) != DYN_OK) return rc;
    if (n == 0) {
        why = "empty path";
        goto invalid;
    }
    for (;;) {
        off = (uint32_t)b->pool.len;
        while (i < n && p[i] != '.' && p[i] != '[') {
            char c = p[i];
            if (c == ']') {
                why = "unexpected ']'";
                where = i + 1;
                goto invalid;
            }
            if (c == '\\') {
                if (i + 1 >= n) {
                    why = "backslash at the end";
                    where = i + 1;
                    goto invalid;
                }
                c = p[++i];
            }
            i++;
            if ((rc = dyn_buf_putc(&b->pool, c)) != DYN_OK) return rc;
        }
        if (b->pool.len == off) {
            why = "empty name";
            where = i + 1;
            goto invalid;
        }
        if (b->pool.len - off > DYN_EXPR_MAX_NAME) {
            why = "name longer than 65535 bytes";
            where = i;
            goto invalid;
        }
        if (++count > DYN_EXPR_MAX_PATH) goto too_deep;
        if ((rc = s_seg_add(b, off, (uint32_t)(b->pool.len - off), &id)) != DYN_OK) return rc;
        if ((rc = s_push32(&b->code, id)) != DYN_OK) return rc;
        while (i < n && p[i] == '[') {
            uint32_t v = 0;
            size_t digits = 0;
            i++;
            while (i < n && p[i] >= '0' && p[i] <= '9') {
                if (v > (S_MAX_INDEX - (uint32_t)(p[i] - '0')) / 10u) {
                    why = "list index too large";
                    where = i + 1;
                    goto invalid;
                }
                v = v * 10u + (uint32_t)(p[i] - '0');
                digits++;
                i++;
            }
            if (digits == 0 || i >= n || p[i] != ']') {
                why = "expected digits and ']'";
                where = i + 1;
                goto invalid;
            }
            i++;
            if (++count > DYN_EXPR_MAX_PATH) goto too_deep;
            if ((rc = s_push32(&b->code, S_INDEX | v)) != DYN_OK) return rc;
        }
        if (i == n) break;
        if (p[i] != '.') {
            why = "expected '.' or '['";
            where = i + 1;
            goto invalid;
        }
        i++;
    }
    S_WORDS(b->code)[head] = T_PATH | count << 8;
    return DYN_OK;

too_deep:
    s_errf(b->err, "invalid path ");
    s_err_quote(b->err, text, S_SHOW_MAX);
    s_errf(b->err, ": more than %d levels", DYN_EXPR_MAX_PATH);
    return DYN_EINVAL;
invalid:
    s_errf(b->err, "invalid path ");
    s_err_quote(b->err, text, S_SHOW_MAX);
    s_errf(b->err, ": %s", why);
    if (where) s_errf(b->err, " at character %zu", where);
    return DYN_EINVAL;
}

int dyn_expr_path_normalize(dyn_slice text, struct dyn_buf *out, struct dyn_buf *err) {
    struct s_builder b;
    size_t start = out->len, i, n;
    const uint32_t *w;
    int rc;
    s_builder_init(&b, out->alloc, err);
    if ((rc = s_parse_path(&b, text)) != DYN_OK) goto cleanup;
    w = S_WORDS(b.code);
    n = S_ARG(w[0]);
    for (i = 1; i <= n && rc == DYN_OK; i++) {
        if (w[i] & S_INDEX) {
            rc = dyn_buf_putc(out, '[');
            if (rc == DYN_OK) rc = s_append_u32(out, w[i] & ~S_INDEX);
            if (rc == DYN_OK) rc = dyn_buf_putc(out, ']');
        } else {
            const struct s_str *s = &S_SEGS(&b)[w[i]];
            if (i > 1) rc = dyn_buf_putc(out, '.');
            if (rc == DYN_OK) rc = dyn_expr_path_escape(dyn_slice_make(b.pool.ptr + s->off, s->len), out);
        }
    }
    if (rc) dyn_buf_truncate(out, start);
cleanup:
    s_builder_free(&b);
    return rc;
}

/* ---- walking code ------------------------------------------------------------ */

/*
 * What s_visit does to the numbers it meets: with `mark`, flags used segments;
 * otherwise a segment s becomes segmap[s] (s + segbase without a segmap) and
 * a value v becomes valmap[v] (kept without a valmap).
 */
struct s_map {
    const uint32_t *segmap;
    uint32_t segbase;
    const uint32_t *valmap;
    uint8_t *mark;
};

static size_t s_skip_path(const uint32_t *code, size_t pos) { return pos + 1 + S_ARG(code[pos]); }

static size_t s_visit_path(uint32_t *code, size_t pos, const struct s_map *m) {
    uint32_t i, n = S_ARG(code[pos]);
    for (i = 1; i <= n; i++) {
        uint32_t *w = &code[pos + i];
        if (*w & S_INDEX) continue;
        if (m->mark)
            m->mark[*w] = 1;
        else
            *w = m->segmap ? m->segmap[*w] : *w + m->segbase;
    }
    return pos + 1 + n;
}

static size_t s_visit_value(uint32_t *code, size_t pos, const struct s_map *m) {
    if (!m->mark && m->valmap) code[pos] = m->valmap[code[pos]];
    return pos + 1;
}

/* Visits the node at pos and returns the position after it. Code is built
 * here, so it is well formed and its depth is bounded by DYN_EXPR_MAX_DEPTH + 1. */
static size_t s_visit(uint32_t *code, size_t pos, const struct s_map *m) {
    uint32_t w = code[pos], i, n;
    switch (S_TAG(w)) {
    case T_AND:
    case T_OR:
    case T_PROJ:
    case T_UPDATE:
        n = S_ARG(w);
        pos++;
        for (i = 0; i < n; i++) pos = s_visit(code, pos, m);
        return pos;
    case T_NOT: return s_visit(code, pos + 1, m);
    case T_CLAUSE:
        pos = s_visit_path(code, pos + 1, m);
        n = S_CLAUSE_NVALS(w);
        for (i = 0; i < n; i++) pos = s_visit_value(code, pos, m);
        return pos;
    case T_ITEM:
        pos = s_visit_path(code, pos + 1, m);
        return S_ARG(w) == DYN_EXPR_REMOVE ? pos : s_visit_value(code, pos, m);
    case T_PATH: return s_visit_path(code, pos, m);
    default: return pos + 1;
    }
}

static size_t s_skip(const uint32_t *code, size_t pos) {
    uint32_t w = code[pos], i, n;
    switch (S_TAG(w)) {
    case T_AND:
    case T_OR:
    case T_PROJ:
    case T_UPDATE:
        n = S_ARG(w);
        pos++;
        for (i = 0; i < n; i++) pos = s_skip(code, pos);
        return pos;
    case T_NOT: return s_skip(code, pos + 1);
    case T_CLAUSE: return s_skip_path(code, pos + 1) + S_CLAUSE_NVALS(w);
    case T_ITEM:
        pos = s_skip_path(code, pos + 1);
        return S_ARG(w) == DYN_EXPR_REMOVE ? pos : pos + 1;
    case T_PATH: return s_skip_path(code, pos);
    default: return pos + 1;
    }
}

static uint32_t s_depth(const uint32_t *code, size_t pos) {
    uint32_t w = code[pos], i, n, d = 0, c;
    switch (S_TAG(w)) {
    case T_AND:
    case T_OR:
        n = S_ARG(w);
        pos++;
        for (i = 0; i < n; i++) {
            c = s_depth(code, pos);
            if (c > d) d = c;
            pos = s_skip(code, pos);
        }
        return d + 1;
    case T_NOT: return s_depth(code, pos + 1) + 1;
    default: return 0;
    }
}

/* Element-wise path order: segment numbers are byte-ordered ranks, and an
 * index has the high bit set, so plain word comparison gives the order. */
static int s_path_cmp(const void *ctx, uint32_t pa, uint32_t pb) {
    const uint32_t *code = ctx;
    uint32_t na = S_ARG(code[pa]), nb = S_ARG(code[pb]), i;
    for (i = 1; i <= na && i <= nb; i++) {
        uint32_t x = code[pa + i], y = code[pb + i];
        if (x != y) return x < y ? -1 : 1;
    }
    return na < nb ? -1 : na > nb;
}

/* 1 when path pa is pb or a prefix of it. */
static int s_path_within(const uint32_t *code, uint32_t pa, uint32_t pb) {
    uint32_t na = S_ARG(code[pa]), nb = S_ARG(code[pb]);
    return na <= nb && memcmp(&code[pa + 1], &code[pb + 1], na * sizeof(uint32_t)) == 0;
}

/* Appends the canonical text of the path at pos; segment number s names
 * segs[order ? order[s] : s] in pool. */
static int s_path_text(const uint32_t *code, size_t pos, const char *pool, const struct s_str *segs,
                       const uint32_t *order, struct dyn_buf *out) {
    uint32_t i, n = S_ARG(code[pos]);
    int rc = DYN_OK;
    for (i = 1; i <= n && rc == DYN_OK; i++) {
        uint32_t w = code[pos + i];
        if (w & S_INDEX) {
            rc = dyn_buf_putc(out, '[');
            if (rc == DYN_OK) rc = s_append_u32(out, w & ~S_INDEX);
            if (rc == DYN_OK) rc = dyn_buf_putc(out, ']');
        } else {
            const struct s_str *s = &segs[order ? order[w] : w];
            if (i > 1) rc = dyn_buf_putc(out, '.');
            if (rc == DYN_OK) rc = dyn_expr_path_escape(dyn_slice_make(pool + s->off, s->len), out);
        }
    }
    return rc;
}

static void s_err_path(struct dyn_buf *err, const uint32_t *code, size_t pos, const char *pool,
                       const struct s_str *segs, const uint32_t *order) {
    struct dyn_buf tmp;
    if (!err) return;
    dyn_buf_init(&tmp, err->alloc);
    if (s_path_text(code, pos, pool, segs, order, &tmp) == DYN_OK) s_err_quote(err, dyn_buf_slice(&tmp), S_SHOW_MAX);
    dyn_buf_free(&tmp);
}

/* ---- finishing: sort segments, prune, pack ---------------------------------- */

static void *s_array(const struct dyn_allocator *a, size_t n, size_t size) {
    if (n == 0) n = 1;
    if (n > SIZE_MAX / size) return NULL;
    return dyn_mem_alloc(a, n * size);
}

static int s_seg_cmp(const void *ctx, uint32_t a, uint32_t b) {
    const struct s_builder *bd = ctx;
    const struct s_str *x = &S_SEGS(bd)[a], *y = &S_SEGS(bd)[b];
    return s_bytes_cmp(bd->pool.ptr + x->off, x->len, bd->pool.ptr + y->off, y->len);
}

/* Sorts the paths of a projection and drops those inside an earlier one. */
static int s_prune_projection(struct s_builder *b) {
    uint32_t *code = S_WORDS(b->code), n = S_ARG(code[0]), i, kept = 0;
    uint32_t *pos = NULL, *tmp = NULL;
    struct dyn_buf out;
    size_t p = 1;
    int rc = DYN_OK;
    dyn_buf_init(&out, b->alloc);
    pos = s_array(b->alloc, n, sizeof *pos);
    tmp = s_array(b->alloc, n, sizeof *tmp);
    if (!pos || !tmp) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    for (i = 0; i < n; i++) {
        pos[i] = (uint32_t)p;
        p = s_skip_path(code, p);
    }
    s_sort(pos, tmp, n, s_path_cmp, code);
    if ((rc = s_push32(&out, 0)) != DYN_OK) goto cleanup;
    for (i = 0; i < n; i++) {
        if (kept && s_path_within(code, tmp[kept - 1], pos[i])) continue;
        tmp[kept++] = pos[i];
        rc = dyn_buf_append(&out, &code[pos[i]], (1 + S_ARG(code[pos[i]])) * sizeof(uint32_t));
        if (rc) goto cleanup;
    }
    S_WORDS(out)[0] = T_PROJ | kept << 8;
    dyn_buf_free(&b->code);
    b->code = out;
    dyn_buf_init(&out, b->alloc);
cleanup:
    dyn_buf_free(&out);
    dyn_mem_free(b->alloc, pos, 0);
    dyn_mem_free(b->alloc, tmp, 0);
    return rc;
}

/* Drops repeated update items and rejects items on overlapping paths. */
static int s_prune_update(struct s_builder *b, const uint32_t *order) {
    uint32_t *code = S_WORDS(b->code), n = S_ARG(code[0]), i, j, kept = 0, ops = 0;
    uint32_t *pos = NULL;
    struct dyn_buf out;
    size_t p = 1;
    int rc = DYN_OK;
    dyn_buf_init(&out, b->alloc);
    if (!(pos = s_array(b->alloc, n, sizeof *pos))) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    if ((rc = s_push32(&out, 0)) != DYN_OK) goto cleanup;
    for (i = 0; i < n; i++) {
        uint32_t w = code[p], path = (uint32_t)p + 1, end = (uint32_t)s_skip(code, p), dup = 0;
        for (j = 0; j < kept && !dup; j++) {
            uint32_t kw = code[pos[j]], kpath = pos[j] + 1;
            if (kw == w && s_path_cmp(code, kpath, path) == 0 &&
                (S_ARG(w) == DYN_EXPR_REMOVE || code[s_skip_path(code, kpath)] == code[s_skip_path(code, path)])) {
                dup = 1;
            } else if (s_path_within(code, kpath, path) || s_path_within(code, path, kpath)) {
                s_errf(b->err, "paths overlap in an update expression: ");
                s_err_path(b->err, code, kpath, b->pool.ptr, S_SEGS(b), order);
                s_errf(b->err, " and ");
                s_err_path(b->err, code, path, b->pool.ptr, S_SEGS(b), order);
                rc = DYN_EINVAL;
                goto cleanup;
            }
        }
        if (!dup) {
            uint32_t act = S_ARG(w);
            if (act >= DYN_EXPR_SET_IF_NOT_EXISTS && act <= DYN_EXPR_PREPEND) ops++;
            pos[kept++] = (uint32_t)p;
            if ((rc = dyn_buf_append(&out, &code[p], (end - p) * sizeof(uint32_t))) != DYN_OK) goto cleanup;
        }
        p = end;
    }
    if (ops > DYN_EXPR_MAX_UPDATE_OPS) {
        s_errf(b->err, "an update expression takes at most %d functions and operators, got %u",
               DYN_EXPR_MAX_UPDATE_OPS, (unsigned)ops);
        rc = DYN_EINVAL;
        goto cleanup;
    }
    S_WORDS(out)[0] = T_UPDATE | kept << 8;
    dyn_buf_free(&b->code);
    b->code = out;
    dyn_buf_init(&out, b->alloc);
cleanup:
    dyn_buf_free(&out);
    dyn_mem_free(b->alloc, pos, 0);
    return rc;
}

static int s_add_skeleton(struct dyn_expr **pe);

static int s_finish(struct s_builder *b, int kind, struct dyn_expr **out) {
    size_t n_segs = S_NSEGS(b), n_vals = S_NVALS(b), n_code, i, pool_len = 0, size;
    uint32_t *order = NULL, *tmp = NULL, *segmap = NULL, n_uniq = 0, n_used = 0, depth = 0;
    uint8_t *used = NULL;
    struct dyn_expr *e;
    struct s_map m = {NULL, 0, NULL, NULL};
    char *pool;
    int rc = DYN_OK;

    order = s_array(b->alloc, n_segs, sizeof *order);
    tmp = s_array(b->alloc, n_segs, sizeof *tmp);
    segmap = s_array(b->alloc, n_segs, sizeof *segmap);
    used = s_array(b->alloc, n_segs, 1);
    if (!order || !tmp || !segmap || !used) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    /* rank the segments by bytes; order[rank] is one builder segment of that rank */
    for (i = 0; i < n_segs; i++) tmp[i] = (uint32_t)i;
    s_sort(tmp, order, n_segs, s_seg_cmp, b);
    for (i = 0; i < n_segs; i++) {
        if (i > 0 && s_seg_cmp(b, tmp[i - 1], tmp[i]) != 0) n_uniq++;
        if (i == 0 || s_seg_cmp(b, tmp[i - 1], tmp[i]) != 0) order[n_uniq] = tmp[i];
        segmap[tmp[i]] = n_uniq;
    }
    if (n_segs) n_uniq++;
    m.segmap = segmap;
    s_visit(S_WORDS(b->code), 0, &m);

    if (kind == DYN_EXPR_PROJECTION) rc = s_prune_projection(b);
    else if (kind == DYN_EXPR_UPDATE) rc = s_prune_update(b, order);
    else if ((depth = s_depth(S_WORDS(b->code), 0)) > DYN_EXPR_MAX_DEPTH) {
        s_errf(b->err, "condition nested deeper than %d levels", DYN_EXPR_MAX_DEPTH);
        rc = DYN_EINVAL;
    }
    if (rc) goto cleanup;

    /* keep only the segments the (pruned) code uses, still in byte order */
    memset(used, 0, n_uniq ? n_uniq : 1);
    m.segmap = NULL;
    m.mark = used;
    s_visit(S_WORDS(b->code), 0, &m);
    for (i = 0; i < n_uniq; i++) {
        if (!used[i]) continue;
        tmp[i] = n_used;
        order[n_used++] = order[i];
        pool_len += S_SEGS(b)[order[n_used - 1]].len;
    }
    m.segmap = tmp;
    m.mark = NULL;
    s_visit(S_WORDS(b->code), 0, &m);
    for (i = 0; i < n_vals; i++) pool_len += S_VALS(b)[i].len;

    n_code = S_NWORDS(b->code);
    size = sizeof *e + n_code * sizeof(uint32_t) + n_used * sizeof(struct s_str) + n_vals * sizeof(struct s_val) +
           pool_len;
    if (pool_len >= 0xffffffffu || !(e = dyn_mem_alloc(b->alloc, size))) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    e->alloc = b->alloc;
    e->alloc_size = size;
    e->kind = kind;
    e->depth = depth;
    e->n_code = (uint32_t)n_code;
    e->n_segs = n_used;
    e->n_vals = (uint32_t)n_vals;
    /* segments first: they hold a uint64_t, the header keeps 8-byte alignment */
    e->segs = (struct s_str *)(void *)(e + 1);
    e->code = (uint32_t *)(void *)(e->segs + n_used);
    e->vals = (struct s_val *)(void *)(e->code + n_code);
    e->pool = (char *)(e->vals + n_vals);
    e->holes = NULL;
    e->n_holes = e->sk_len = 0;
    e->key_error = KE_SHAPE;
    e->key_op = 0;
    memcpy(e->code, b->code.ptr, n_code * sizeof(uint32_t));
    pool = e->pool;
    for (i = 0; i < n_used; i++) {
        const struct s_str *s = &S_SEGS(b)[order[i]];
        e->segs[i].off = (uint32_t)(pool - e->pool);
        e->segs[i].len = s->len;
        e->segs[i].key = s_key8(b->pool.ptr + s->off, s->len);
        if (s->len) memcpy(pool, b->pool.ptr + s->off, s->len);
        pool += s->len;
    }
    for (i = 0; i < n_vals; i++) {
        const struct s_val *v = &S_VALS(b)[i];
        e->vals[i].off = (uint32_t)(pool - e->pool);
        e->vals[i].len = v->len;
        e->vals[i].literal = v->literal;
        e->vals[i].hash = s_hash(dyn_slice_make(b->pool.ptr + v->off, v->len));
        if (v->len) memcpy(pool, b->pool.ptr + v->off, v->len);
        pool += v->len;
    }
    e->sk = pool;
    if ((rc = s_add_skeleton(&e)) != DYN_OK) {
        dyn_mem_free(b->alloc, e, e->alloc_size);
        goto cleanup;
    }
    *out = e;
cleanup:
    dyn_mem_free(b->alloc, order, 0);
    dyn_mem_free(b->alloc, tmp, 0);
    dyn_mem_free(b->alloc, segmap, 0);
    dyn_mem_free(b->alloc, used, 0);
    return rc;
}

/* ---- constructors ---------------------------------------------------------- */

static int s_add_operand(struct s_builder *b, struct dyn_expr_operand v) {
    uint32_t id;
    int rc;
    if (!v.literal && v.text.len == 0) {
        s_errf(b->err, "a value name must not be empty");
        return DYN_EINVAL;
    }
    if ((rc = s_val_add(b, v, &id)) == DYN_EINVAL) s_errf(b->err, "too many values in one expression");
    if (rc) return rc;
    return s_push32(&b->code, id);
}

int dyn_expr_condition_new(const struct dyn_allocator *alloc, int op, dyn_slice path, int size_of,
                           const struct dyn_expr_operand *values, size_t n_values,
                           struct dyn_expr **out, struct dyn_buf *err) {
    struct s_builder b;
    size_t i;
    int rc = DYN_EINVAL;
    s_builder_init(&b, alloc, err);
    if (op < 0 || op >= DYN_EXPR_OP_COUNT) {
        s_errf(err, "unknown operator %d", op);
        goto cleanup;
    }
    if (op == DYN_EXPR_EXISTS || op == DYN_EXPR_NOT_EXISTS) {
        if (n_values != 0) {
            s_errf(err, "operator %s takes no value, got %zu", s_op_names[op], n_values);
            goto cleanup;
        }
    } else if (op == DYN_EXPR_BETWEEN) {
        if (n_values != 2) {
            s_errf(err, "operator BETWEEN requires two values, got %zu", n_values);
            goto cleanup;
        }
    } else if (op == DYN_EXPR_IN) {
        if (n_values < 1 || n_values > DYN_EXPR_MAX_IN) {
            s_errf(err, "operator IN takes 1 to %d values, got %zu", DYN_EXPR_MAX_IN, n_values);
            goto cleanup;
        }
    } else if (n_values != 1) {
        s_errf(err, "operator %s requires one value, got %zu", s_op_names[op], n_values);
        goto cleanup;
    }
    if (size_of && op > DYN_EXPR_BETWEEN) {
        s_errf(err, "size() cannot be used with %s", s_op_names[op]);
        goto cleanup;
    }
    rc = s_push32(&b.code, T_CLAUSE | (uint32_t)op << 8 | (size_of ? 1u : 0u) << 16 | (uint32_t)n_values << 17);
    if (rc == DYN_OK) rc = s_parse_path(&b, path);
    for (i = 0; i < n_values && rc == DYN_OK; i++) rc = s_add_operand(&b, values[i]);
    if (rc == DYN_OK) rc = s_finish(&b, DYN_EXPR_CONDITION, out);
cleanup:
    s_builder_free(&b);
    return rc;
}

int dyn_expr_projection_new(const struct dyn_allocator *alloc, const dyn_slice *paths, size_t n,
                            struct dyn_expr **out, struct dyn_buf *err) {
    struct s_builder b;
    size_t i;
    int rc = DYN_EINVAL;
    s_builder_init(&b, alloc, err);
    if (n == 0 || n > S_MAX_COUNT) {
        s_errf(err, "a projection needs 1 to %u paths, got %zu", (unsigned)S_MAX_COUNT, n);
        goto cleanup;
    }
    rc = s_push32(&b.code, T_PROJ | (uint32_t)n << 8);
    for (i = 0; i < n && rc == DYN_OK; i++) rc = s_parse_path(&b, paths[i]);
    if (rc == DYN_OK) rc = s_finish(&b, DYN_EXPR_PROJECTION, out);
cleanup:
    s_builder_free(&b);
    return rc;
}

int dyn_expr_update_new(const struct dyn_allocator *alloc, const struct dyn_expr_update_item *items,
                        size_t n, struct dyn_expr **out, struct dyn_buf *err) {
    struct s_builder b;
    size_t i;
    int rc = DYN_EINVAL;
    s_builder_init(&b, alloc, err);
    if (n == 0 || n > S_MAX_COUNT) {
        s_errf(err, "an update expression needs 1 to %u items, got %zu", (unsigned)S_MAX_COUNT, n);
        goto cleanup;
    }
    rc = s_push32(&b.code, T_UPDATE | (uint32_t)n << 8);
    for (i = 0; i < n && rc == DYN_OK; i++) {
        int act = items[i].action;
        if (act < 0 || act >= DYN_EXPR_ACTION_COUNT) {
            s_errf(err, "unknown update action %d", act);
            rc = DYN_EINVAL;
            break;
        }
        rc = s_push32(&b.code, T_ITEM | (uint32_t)act << 8);
        if (rc == DYN_OK) rc = s_parse_path(&b, items[i].path);
        if (rc == DYN_OK && act != DYN_EXPR_REMOVE) rc = s_add_operand(&b, items[i].value);
    }
    if (rc == DYN_OK) rc = s_finish(&b, DYN_EXPR_UPDATE, out);
cleanup:
    s_builder_free(&b);
    return rc;
}

/* Adds x's segments and operands to the builder; valmap receives x's operand numbers. */
static int s_import(struct s_builder *b, const struct dyn_expr *x, uint32_t *valmap, uint32_t *segbase) {
    uint32_t i, id, off;
    int rc = DYN_OK;
    *segbase = (uint32_t)S_NSEGS(b);
    for (i = 0; i < x->n_segs && rc == DYN_OK; i++) {
        rc = s_pool_add(b, dyn_slice_make(x->pool + x->segs[i].off, x->segs[i].len), &off);
        if (rc == DYN_OK) rc = s_seg_add(b, off, x->segs[i].len, &id);
    }
    for (i = 0; i < x->n_vals && rc == DYN_OK; i++) {
        struct dyn_expr_operand v = dyn_expr_value(x, i);
        rc = s_val_add(b, v, &valmap[i]);
        if (rc == DYN_EINVAL) s_errf(b->err, "too many values in one expression");
    }
    return rc;
}

/* Appends x's code words [from, n_code) renumbered for the builder. */
static int s_copy_code(struct s_builder *b, const struct dyn_expr *x, size_t from, uint32_t segbase,
                       const uint32_t *valmap) {
    size_t start = S_NWORDS(b->code), pos, end;
    struct s_map m;
    int rc = dyn_buf_append(&b->code, x->code + from, (x->n_code - from) * sizeof(uint32_t));
    if (rc) return rc;
    m.segmap = NULL;
    m.segbase = segbase;
    m.valmap = valmap;
    m.mark = NULL;
    end = S_NWORDS(b->code);
    for (pos = start; pos < end;) pos = s_visit(S_WORDS(b->code), pos, &m);
    return DYN_OK;
}

static const char *s_kind_label(int kind) {
    return kind == DYN_EXPR_CONDITION ? "ConditionExpression"
           : kind == DYN_EXPR_PROJECTION ? "ProjectionExpression"
                                         : "UpdateExpression";
}

int dyn_expr_combine(int join, const struct dyn_expr *x, const struct dyn_expr *y,
                     struct dyn_expr **out, size_t *remap, struct dyn_buf *err) {
    struct s_builder b;
    uint32_t *xmap = NULL, *ymap = NULL, xbase, ybase, tag, cx, cy;
    size_t xfrom, yfrom, i;
    int rc = DYN_EINVAL;
    s_builder_init(&b, x ? x->alloc : NULL, err);
    if (!x || !y || (join != DYN_EXPR_AND && join != DYN_EXPR_OR)) {
        s_errf(err, "bad arguments to combine");
        goto cleanup;
    }
    if (x->kind != y->kind) {
        s_errf(err, "cannot combine a %s with a %s", s_kind_label(x->kind), s_kind_label(y->kind));
        goto cleanup;
    }
    if (x->kind != DYN_EXPR_CONDITION && join != DYN_EXPR_AND) {
        s_errf(err, "%s only merges with &", s_kind_label(x->kind));
        goto cleanup;
    }
    xmap = s_array(b.alloc, x->n_vals, sizeof *xmap);
    ymap = s_array(b.alloc, y->n_vals, sizeof *ymap);
    if (!xmap || !ymap) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    if ((rc = s_import(&b, x, xmap, &xbase)) != DYN_OK) goto cleanup;
    if ((rc = s_import(&b, y, ymap, &ybase)) != DYN_OK) goto cleanup;
    tag = x->kind == DYN_EXPR_PROJECTION ? T_PROJ
          : x->kind == DYN_EXPR_UPDATE   ? T_UPDATE
          : join == DYN_EXPR_AND         ? T_AND
                                         : T_OR;
    /* a group of the same join is spliced in, so a & b & c is one AND node */
    xfrom = S_TAG(x->code[0]) == tag ? 1 : 0;
    yfrom = S_TAG(y->code[0]) == tag ? 1 : 0;
    cx = xfrom ? S_ARG(x->code[0]) : 1;
    cy = yfrom ? S_ARG(y->code[0]) : 1;
    if (cx + cy > S_MAX_COUNT) {
        s_errf(err, "too many items in one expression");
        rc = DYN_EINVAL;
        goto cleanup;
    }
    rc = s_push32(&b.code, tag | (cx + cy) << 8);
    if (rc == DYN_OK) rc = s_copy_code(&b, x, xfrom, xbase, xmap);
    if (rc == DYN_OK) rc = s_copy_code(&b, y, yfrom, ybase, ymap);
    if (rc == DYN_OK) rc = s_finish(&b, x->kind, out);
    if (rc == DYN_OK && remap)
        for (i = 0; i < y->n_vals; i++) remap[i] = ymap[i];
cleanup:
    if (xmap) dyn_mem_free(b.alloc, xmap, 0);
    if (ymap) dyn_mem_free(b.alloc, ymap, 0);
    s_builder_free(&b);
    return rc;
}

int dyn_expr_negate(const struct dyn_expr *x, struct dyn_expr **out, struct dyn_buf *err) {
    struct s_builder b;
    uint32_t *xmap = NULL, xbase;
    int rc = DYN_EINVAL;
    s_builder_init(&b, x ? x->alloc : NULL, err);
    if (!x || x->kind != DYN_EXPR_CONDITION) {
        s_errf(err, "only a ConditionExpression can be negated");
        goto cleanup;
    }
    if (!(xmap = s_array(b.alloc, x->n_vals, sizeof *xmap))) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    if ((rc = s_import(&b, x, xmap, &xbase)) != DYN_OK) goto cleanup;
    if (S_TAG(x->code[0]) == T_NOT) {
        rc = s_copy_code(&b, x, 1, xbase, xmap);
    } else {
        rc = s_push32(&b.code, T_NOT);
        if (rc == DYN_OK) rc = s_copy_code(&b, x, 0, xbase, xmap);
    }
    if (rc == DYN_OK) rc = s_finish(&b, DYN_EXPR_CONDITION, out);
cleanup:
    if (xmap) dyn_mem_free(b.alloc, xmap, 0);
    s_builder_free(&b);
    return rc;
}

void dyn_expr_free(struct dyn_expr *e) {
    if (e) dyn_mem_free(e->alloc, e, e->alloc_size);
}

int dyn_expr_kind(const struct dyn_expr *e) { return e->kind; }
size_t dyn_expr_value_count(const struct dyn_expr *e) { return e->n_vals; }
size_t dyn_expr_segment_count(const struct dyn_expr *e) { return e->n_segs; }

struct dyn_expr_operand dyn_expr_value(const struct dyn_expr *e, size_t i) {
    struct dyn_expr_operand v;
    v.literal = (int)e->vals[i].literal;
    v.text = dyn_slice_make(e->pool + e->vals[i].off, e->vals[i].len);
    return v;
}

dyn_slice dyn_expr_segment(const struct dyn_expr *e, size_t i) {
    return dyn_slice_make(e->pool + e->segs[i].off, e->segs[i].len);
}

/* ---- emitting: templates and skeletons ------------------------------------------ */

/*
 * The emitters append through these inline writers: the common case is one
 * capacity test and a memcpy; the NUL terminator is restored once, when an
 * expression is done, not after every piece.
 */
static inline int s_w(struct dyn_buf *b, const char *s, size_t n) {
    if (b->cap - b->len <= n && dyn_buf_reserve(b, n) != DYN_OK) return DYN_ENOMEM;
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
    return DYN_OK;
}

#define S_WLIT(b, lit) s_w((b), (lit), sizeof(lit) - 1)

static inline int s_wc(struct dyn_buf *b, char c) {
    if (b->cap - b->len <= 1 && dyn_buf_reserve(b, 1) != DYN_OK) return DYN_ENOMEM;
    b->ptr[b->len++] = c;
    return DYN_OK;
}

/* prefix + three letters */
static inline int s_w_ph(struct dyn_buf *b, char prefix, uint32_t seq) {
    char *p;
    if (b->cap - b->len <= 4 && dyn_buf_reserve(b, 4) != DYN_OK) return DYN_ENOMEM;
    p = b->ptr + b->len;
    p[0] = prefix;
    s_letters(seq, p + 1);
    b->len += 4;
    return DYN_OK;
}

static int s_w_u32(struct dyn_buf *b, uint32_t v) {
    char digits[12];
    size_t d = 12;
    do {
        digits[--d] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    return s_w(b, digits + d, 12 - d);
}

static dyn_slice s_seg(const struct dyn_expr *e, uint32_t i) {
    return dyn_slice_make(e->pool + e->segs[i].off, e->segs[i].len);
}

static dyn_slice s_valtext(const struct dyn_expr *e, uint32_t i) {
    return dyn_slice_make(e->pool + e->vals[i].off, e->vals[i].len);
}

static const uint8_t s_op_len[DYN_EXPR_OP_COUNT] = {1, 2, 1, 2, 1, 2, 2, 7, 11, 8, 16, 20, 14};

/*
 * One expression being written: its template (holes == NULL), or its
 * skeleton: the request string with "#???" and ":???" where placeholders go,
 * each recorded as a hole.
 */
struct s_emit {
    struct dyn_buf *out;
    const struct dyn_expr *e;
    struct dyn_buf *holes;
    uint8_t action; /* update action owning the next value, S_NO_ACTION otherwise */
};

#define S_NO_ACTION 0xffu

static int s_hole(struct s_emit *em, char prefix, uint8_t kind, uint32_t id, uint8_t first, uint8_t last) {
    struct s_hole h;
    int rc;
    if (em->out->len >= 0xfffffff0u) return DYN_ENOMEM;
    h.off = (uint32_t)em->out->len;
    h.id = id;
    h.kind = kind;
    h.action = em->action;
    h.first = first;
    h.last = last;
    if ((rc = s_wc(em->out, prefix)) != DYN_OK) return rc;
    if ((rc = S_WLIT(em->out, "???")) != DYN_OK) return rc;
    return dyn_buf_append(em->holes, &h, sizeof h);
}

/* A value operand: ":name" or the literal's text in a template, a hole in a skeleton. */
static int s_emit_value(struct s_emit *em, uint32_t vid) {
    dyn_slice t;
    int rc;
    if (em->holes) return s_hole(em, ':', H_VALUE, vid, 0, 0);
    t = s_valtext(em->e, vid);
    if (!em->e->vals[vid].literal && (rc = s_wc(em->out, ':')) != DYN_OK) return rc;
    return s_w(em->out, t.ptr, t.len);
}

static int s_emit_path(struct s_emit *em, size_t *pos) {
    const uint32_t *code = em->e->code;
    uint32_t i, n = S_ARG(code[*pos]);
    int rc = DYN_OK;
    for (i = 1; i <= n && rc == DYN_OK; i++) {
        uint32_t w = code[*pos + i];
        if (w & S_INDEX) {
            rc = s_wc(em->out, '[');
            if (rc == DYN_OK) rc = s_w_u32(em->out, w & ~S_INDEX);
            if (rc == DYN_OK) rc = s_wc(em->out, ']');
            continue;
        }
        if (i > 1 && (rc = s_wc(em->out, '.')) != DYN_OK) break;
        if (em->holes) {
            rc = s_hole(em, '#', H_NAME, w, 0, 0);
        } else {
            rc = s_wc(em->out, '#');
            if (rc == DYN_OK) rc = dyn_expr_path_escape(s_seg(em->e, w), em->out);
        }
    }
    *pos += 1 + n;
    return rc;
}

static int s_emit_in(struct s_emit *em, const uint32_t *vals, uint32_t n) {
    uint32_t i;
    int rc = DYN_OK;
    for (i = 0; i < n && rc == DYN_OK; i++) {
        if (i > 0) rc = S_WLIT(em->out, ", ");
        if (rc != DYN_OK) break;
        if (em->holes)
            rc = s_hole(em, ':', H_IN, vals[i], i == 0, i + 1 == n);
        else
            rc = s_emit_value(em, vals[i]);
    }
    return rc;
}

static int s_emit_operand_path(struct s_emit *em, size_t *pos, int size_of) {
    int rc = size_of ? S_WLIT(em->out, "size(") : DYN_OK;
    if (rc == DYN_OK) rc = s_emit_path(em, pos);
    if (rc == DYN_OK && size_of) rc = s_wc(em->out, ')');
    return rc;
}

static int s_emit_clause(struct s_emit *em, size_t *pos) {
    const uint32_t *code = em->e->code;
    uint32_t w = code[*pos], op = S_CLAUSE_OP(w), n = S_CLAUSE_NVALS(w);
    int size_of = (int)S_CLAUSE_SIZE(w), rc = DYN_OK;
    size_t p = *pos + 1;
    const uint32_t *vals = code + s_skip_path(code, p);
    *pos = (size_t)(vals - code) + n;
    switch (op) {
    case DYN_EXPR_EQ:
    case DYN_EXPR_NE:
    case DYN_EXPR_LT:
    case DYN_EXPR_LE:
    case DYN_EXPR_GT:
    case DYN_EXPR_GE:
        rc = s_emit_operand_path(em, &p, size_of);
        if (rc == DYN_OK) rc = s_wc(em->out, ' ');
        if (rc == DYN_OK) rc = s_w(em->out, s_op_names[op], s_op_len[op]);
        if (rc == DYN_OK) rc = s_wc(em->out, ' ');
        if (rc == DYN_OK) rc = s_emit_value(em, vals[0]);
        return rc;
    case DYN_EXPR_IN:
        rc = s_emit_operand_path(em, &p, size_of);
        if (rc == DYN_OK) rc = S_WLIT(em->out, " IN (");
        if (rc == DYN_OK) rc = s_emit_in(em, vals, n);
        if (rc == DYN_OK) rc = s_wc(em->out, ')');
        return rc;
    case DYN_EXPR_BETWEEN:
        rc = s_emit_operand_path(em, &p, size_of);
        if (rc == DYN_OK) rc = S_WLIT(em->out, " BETWEEN ");
        if (rc == DYN_OK) rc = s_emit_value(em, vals[0]);
        if (rc == DYN_OK) rc = S_WLIT(em->out, " AND ");
        if (rc == DYN_OK) rc = s_emit_value(em, vals[1]);
        return rc;
    default: /* the functions */
        rc = s_w(em->out, s_op_names[op], s_op_len[op]);
        if (rc == DYN_OK) rc = s_wc(em->out, '(');
        if (rc == DYN_OK) rc = s_emit_path(em, &p);
        if (rc == DYN_OK && n) rc = S_WLIT(em->out, ", ");
        if (rc == DYN_OK && n) rc = s_emit_value(em, vals[0]);
        if (rc == DYN_OK) rc = s_wc(em->out, ')');
        return rc;
    }
}

/* A condition node. Groups under another group or under NOT get parentheses,
 * so the string means what the tree means whatever DynamoDB's precedence. */
static int s_emit_node(struct s_emit *em, size_t *pos, int nested) {
    const uint32_t *code = em->e->code;
    uint32_t w = code[*pos], i, n;
    int rc = DYN_OK;
    switch (S_TAG(w)) {
    case T_AND:
    case T_OR:
        n = S_ARG(w);
        (*pos)++;
        if (nested) rc = s_wc(em->out, '(');
        for (i = 0; i < n && rc == DYN_OK; i++) {
            if (i > 0) rc = S_TAG(w) == T_AND ? S_WLIT(em->out, " AND ") : S_WLIT(em->out, " OR ");
            if (rc == DYN_OK) rc = s_emit_node(em, pos, 1);
        }
        if (rc == DYN_OK && nested) rc = s_wc(em->out, ')');
        return rc;
    case T_NOT:
        (*pos)++;
        rc = S_WLIT(em->out, "NOT ");
        return rc ? rc : s_emit_node(em, pos, 1);
    default: return s_emit_clause(em, pos);
    }
}

/* Writes `open` then the path and the value (or the value and the path) and ')':
 * the two-operand functions of SET (if_not_exists, list_append). */
static int s_emit_call2(struct s_emit *em, const char *open, size_t *path, uint32_t vid, int path_first) {
    int rc = s_w(em->out, open, strlen(open));
    if (rc == DYN_OK) rc = path_first ? s_emit_path(em, path) : s_emit_value(em, vid);
    if (rc == DYN_OK) rc = S_WLIT(em->out, ", ");
    if (rc == DYN_OK) rc = path_first ? s_emit_value(em, vid) : s_emit_path(em, path);
    if (rc == DYN_OK) rc = s_wc(em->out, ')');
    return rc;
}

static int s_emit_item(struct s_emit *em, size_t pos) {
    const uint32_t *code = em->e->code;
    uint32_t act = S_ARG(code[pos]), vid = 0;
    size_t path = pos + 1, p = path;
    int rc;
    if (act != DYN_EXPR_REMOVE) vid = code[s_skip_path(code, path)];
    em->action = (uint8_t)act;
    rc = s_emit_path(em, &p);
    if (rc) return rc;
    p = path;
    switch (act) {
    case DYN_EXPR_SET:
        rc = S_WLIT(em->out, " = ");
        if (rc == DYN_OK) rc = s_emit_value(em, vid);
        break;
    case DYN_EXPR_SET_IF_NOT_EXISTS: rc = s_emit_call2(em, " = if_not_exists(", &p, vid, 1); break;
    case DYN_EXPR_INCREMENT:
    case DYN_EXPR_DECREMENT:
        rc = S_WLIT(em->out, " = ");
        if (rc == DYN_OK) rc = s_emit_path(em, &p);
        if (rc == DYN_OK) rc = act == DYN_EXPR_INCREMENT ? S_WLIT(em->out, " + ") : S_WLIT(em->out, " - ");
        if (rc == DYN_OK) rc = s_emit_value(em, vid);
        break;
    case DYN_EXPR_APPEND: rc = s_emit_call2(em, " = list_append(", &p, vid, 1); break;
    case DYN_EXPR_PREPEND: rc = s_emit_call2(em, " = list_append(", &p, vid, 0); break;
    case DYN_EXPR_ADD:
    case DYN_EXPR_DELETE:
        rc = s_wc(em->out, ' ');
        if (rc == DYN_OK) rc = s_emit_value(em, vid);
        break;
    default: break;
    }
    em->action = S_NO_ACTION;
    return rc;
}

/* SET items (by action, then in order), ADD, DELETE, REMOVE. */
static int s_emit_update(struct s_emit *em) {
    static const struct {
        const char *keyword;
        size_t len;
        uint32_t first, last;
    } clauses[] = {{"SET ", 4, DYN_EXPR_SET, DYN_EXPR_PREPEND},
                   {"ADD ", 4, DYN_EXPR_ADD, DYN_EXPR_ADD},
                   {"DELETE ", 7, DYN_EXPR_DELETE, DYN_EXPR_DELETE},
                   {"REMOVE ", 7, DYN_EXPR_REMOVE, DYN_EXPR_REMOVE}};
    const uint32_t *code = em->e->code;
    uint32_t n = S_ARG(code[0]), c, act, i;
    int rc = DYN_OK, any = 0;
    for (c = 0; c < 4 && rc == DYN_OK; c++) {
        int in_clause = 0;
        for (act = clauses[c].first; act <= clauses[c].last && rc == DYN_OK; act++) {
            size_t pos = 1;
            for (i = 0; i < n && rc == DYN_OK; i++, pos = s_skip(code, pos)) {
                if (S_ARG(code[pos]) != act) continue;
                if (!in_clause) {
                    if (any) rc = s_wc(em->out, ' ');
                    if (rc == DYN_OK) rc = s_w(em->out, clauses[c].keyword, clauses[c].len);
                    in_clause = any = 1;
                } else {
                    rc = S_WLIT(em->out, ", ");
                }
                if (rc == DYN_OK) rc = s_emit_item(em, pos);
            }
        }
    }
    return rc;
}

static int s_emit(struct s_emit *em) {
    const uint32_t *code = em->e->code;
    size_t pos = 1;
    uint32_t i, n;
    int rc = DYN_OK;
    em->action = S_NO_ACTION;
    switch (em->e->kind) {
    case DYN_EXPR_CONDITION:
        pos = 0;
        rc = s_emit_node(em, &pos, 0);
        break;
    case DYN_EXPR_UPDATE: rc = s_emit_update(em); break;
    default:
        n = S_ARG(code[0]);
        for (i = 0; i < n && rc == DYN_OK; i++) {
            if (i > 0) rc = S_WLIT(em->out, ", ");
            if (rc == DYN_OK) rc = s_emit_path(em, &pos);
        }
        break;
    }
    if (em->out->cap) em->out->ptr[em->out->len] = '\0';
    return rc;
}

int dyn_expr_template(const struct dyn_expr *e, struct dyn_buf *out) {
    struct s_emit em;
    size_t start = out->len;
    int rc;
    em.out = out;
    em.e = e;
    em.holes = NULL;
    rc = s_emit(&em);
    if (rc) dyn_buf_truncate(out, start);
    return rc;
}

static int s_key_op_ok(uint32_t op) {
    return op == DYN_EXPR_EQ || op == DYN_EXPR_LT || op == DYN_EXPR_LE || op == DYN_EXPR_GT ||
           op == DYN_EXPR_GE || op == DYN_EXPR_BETWEEN || op == DYN_EXPR_BEGINS_WITH;
}

/* Whether a condition can be a key condition: `pk = v`, or that AND one sort
 * key condition, on top-level names. Worked out once, when compiled. */
static uint8_t s_key_shape(const uint32_t *code, uint8_t *bad_op) {
    size_t at[2];
    uint32_t n = 0, i, eq = 0;
    if (S_TAG(code[0]) == T_CLAUSE) {
        at[n++] = 0;
    } else if (S_TAG(code[0]) == T_AND && S_ARG(code[0]) == 2) {
        at[n++] = 1;
        at[n++] = s_skip(code, 1);
    }
    for (i = 0; i < n; i++)
        if (S_TAG(code[at[i]]) != T_CLAUSE) return KE_SHAPE;
    if (n == 0) return KE_SHAPE;
    for (i = 0; i < n; i++) {
        uint32_t w = code[at[i]], op = S_CLAUSE_OP(w);
        if (!s_key_op_ok(op)) {
            *bad_op = (uint8_t)op;
            return KE_OP;
        }
        if (S_CLAUSE_SIZE(w) || S_ARG(code[at[i] + 1]) != 1 || (code[at[i] + 2] & S_INDEX)) return KE_PATH;
        if (op == DYN_EXPR_EQ) eq++;
    }
    if (n == 2 && code[at[0] + 2] == code[at[1] + 2]) return KE_SAME;
    return eq ? KE_OK : KE_NOEQ;
}

/* Adds the skeleton and the key shape to a packed expression: a new block
 * laid out as header | segs | code | vals | holes | pool | skeleton text
 * (in decreasing alignment). */
static int s_add_skeleton(struct dyn_expr **pe) {
    struct dyn_expr *e = *pe, *n;
    struct dyn_buf text, holes;
    struct s_emit em;
    size_t n_holes, pool_len, size;
    int rc;
    dyn_buf_init(&text, e->alloc);
    dyn_buf_init(&holes, e->alloc);
    em.out = &text;
    em.e = e;
    em.holes = &holes;
    if ((rc = s_emit(&em)) != DYN_OK) goto cleanup;
    if (text.len >= 0xffffffffu) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    n_holes = holes.len / sizeof(struct s_hole);
    pool_len = (size_t)(e->sk - e->pool);
    size = sizeof *n + e->n_code * sizeof(uint32_t) + e->n_segs * sizeof(struct s_str) +
           e->n_vals * sizeof(struct s_val) + n_holes * sizeof(struct s_hole) + pool_len + text.len;
    if (!(n = dyn_mem_alloc(e->alloc, size))) {
        rc = DYN_ENOMEM;
        goto cleanup;
    }
    *n = *e;
    n->alloc_size = size;
    n->segs = (struct s_str *)(void *)(n + 1);
    n->code = (uint32_t *)(void *)(n->segs + n->n_segs);
    n->vals = (struct s_val *)(void *)(n->code + n->n_code);
    n->holes = (struct s_hole *)(void *)(n->vals + n->n_vals);
    n->pool = (char *)(n->holes + n_holes);
    n->sk = n->pool + pool_len;
    n->n_holes = (uint32_t)n_holes;
    n->sk_len = (uint32_t)text.len;
    memcpy(n->code, e->code, e->n_code * sizeof(uint32_t));
    if (e->n_segs) memcpy(n->segs, e->segs, e->n_segs * sizeof(struct s_str));
    if (e->n_vals) memcpy(n->vals, e->vals, e->n_vals * sizeof(struct s_val));
    if (n_holes) memcpy(n->holes, holes.ptr, n_holes * sizeof(struct s_hole));
    if (pool_len) memcpy(n->pool, e->pool, pool_len);
    if (text.len) memcpy(n->sk, text.ptr, text.len);
    n->key_error = e->kind == DYN_EXPR_CONDITION ? s_key_shape(n->code, &n->key_op) : KE_SHAPE;
    dyn_mem_free(e->alloc, e, e->alloc_size);
    *pe = n;
cleanup:
    dyn_buf_free(&text);
    dyn_buf_free(&holes);
    return rc;
}

/* ---- rendering a request ------------------------------------------------------- */

/* A value placeholder of one render: the operand that first used it. */
struct s_gval {
    uint32_t slot, index, flags; /* flags: 1 whole value reported, 2 elements reported */
};

/* State shared by the slots of one render. */
struct s_render {
    struct dyn_expr_renderer *r;
    const struct dyn_expr *const *exprs;
    const struct dyn_expr_value_info *const *infos;
    uint32_t *segmap[DYN_EXPR_SLOTS]; /* segment -> name placeholder */
    uint32_t *valmap[DYN_EXPR_SLOTS]; /* operand -> value placeholder, S_NONE until used */
    struct s_gval *gvals;
    uint32_t n_gvals;
    uint32_t *hash; /* value names -> gvals index + 1, open addressing */
    uint32_t hmask;
    size_t subst;   /* bytes of both maps so far */
};

static const char *s_type_name(const struct dyn_expr_value_info *info) {
    static const char *const names[] = {"missing", "number", "string", "set", "list", "value"};
    if (info->type_name) return info->type_name;
    return info->type >= 0 && info->type <= DYN_EXPR_V_OTHER ? names[info->type] : "value";
}

/* Ends a render error message with the slot and the expression's template. */
static int s_fail_end(struct s_render *rs, int slot) {
    struct dyn_buf *err = &rs->r->error, t;
    s_errf(err, " in %s ", s_slot_names[slot]);
    dyn_buf_init(&t, err->alloc);
    if (dyn_expr_template(rs->exprs[slot], &t) == DYN_OK) s_err_quote(err, dyn_buf_slice(&t), S_TEMPLATE_MAX);
    dyn_buf_free(&t);
    return DYN_EINVAL;
}

static void s_err_operand(struct dyn_buf *err, const struct dyn_expr *e, uint32_t vid) {
    s_errf(err, e->vals[vid].literal ? "literal " : "value ");
    s_err_quote(err, s_valtext(e, vid), S_SHOW_MAX);
}

/* The value placeholder of operand vid of `slot`, assigned on first use. */
static int s_resolve(struct s_render *rs, int slot, uint32_t vid, uint32_t *out) {
    uint32_t *vm = rs->valmap[slot], g = S_NONE, k = 0;
    if (vm[vid] == S_NONE) {
        const struct dyn_expr *e = rs->exprs[slot];
        const struct s_val *v = &e->vals[vid];
        if (rs->infos[slot][vid].type == DYN_EXPR_V_MISSING) {
            s_err_operand(&rs->r->error, e, vid);
            s_errf(&rs->r->error, v->literal ? " has no value" : " is missing from data");
            return s_fail_end(rs, slot);
        }
        if (!v->literal) {
            for (k = v->hash & rs->hmask; rs->hash[k]; k = (k + 1) & rs->hmask) {
                const struct s_gval *gv = &rs->gvals[rs->hash[k] - 1];
                const struct dyn_expr *ge = rs->exprs[gv->slot];
                const struct s_val *o = &ge->vals[gv->index];
                if (o->hash == v->hash && o->len == v->len && memcmp(ge->pool + o->off, e->pool + v->off, v->len) == 0) {
                    g = rs->hash[k] - 1;
                    break;
                }
            }
        }
        if (g == S_NONE) {
            if (rs->n_gvals >= DYN_EXPR_MAX_PLACEHOLDERS) {
                s_errf(&rs->r->error, "more than %d values in one request", DYN_EXPR_MAX_PLACEHOLDERS);
                return s_fail_end(rs, slot);
            }
            g = rs->n_gvals++;
            rs->gvals[g].slot = (uint32_t)slot;
            rs->gvals[g].index = vid;
            rs->gvals[g].flags = 0;
            if (!v->literal) rs->hash[k] = g + 1;
        }
        vm[vid] = g;
    }
    *out = vm[vid];
    return DYN_OK;
}

static const struct dyn_expr_value_info *s_ginfo(const struct s_render *rs, uint32_t g) {
    return &rs->infos[rs->gvals[g].slot][rs->gvals[g].index];
}

static int s_report(struct s_render *rs, uint32_t g, int32_t elem) {
    struct dyn_expr_renderer *r = rs->r;
    struct dyn_expr_value_ref *ref;
    if (r->n_values == r->values_cap) {
        size_t cap = r->values_cap ? r->values_cap * 2 : 16;
        void *p = dyn_mem_realloc(r->alloc, r->values, r->values_cap * sizeof *ref, cap * sizeof *ref);
        if (!p) return DYN_ENOMEM;
        r->values = p;
        r->values_cap = cap;
    }
    ref = &r->values[r->n_values++];
    ref->seq = g;
    ref->elem = elem;
    ref->slot = (int)rs->gvals[g].slot;
    ref->index = rs->gvals[g].index;
    rs->subst += elem < 0 ? 4 + s_ginfo(rs, g)->size : 16;
    return DYN_OK;
}

/* The type an update action needs from its value. */
static int s_check_action(struct s_render *rs, int slot, uint32_t vid, uint32_t g, uint8_t act) {
    const struct dyn_expr_value_info *info = s_ginfo(rs, g);
    const char *need;
    int ok;
    switch (act) {
    case DYN_EXPR_ADD:
        ok = info->type == DYN_EXPR_V_NUMBER || info->type == DYN_EXPR_V_SET;
        need = "ADD needs a number or a set";
        break;
    case DYN_EXPR_DELETE:
        ok = info->type == DYN_EXPR_V_SET;
        need = "DELETE needs a set";
        break;
    case DYN_EXPR_INCREMENT:
    case DYN_EXPR_DECREMENT:
        ok = info->type == DYN_EXPR_V_NUMBER;
        need = "arithmetic needs a number";
        break;
    case DYN_EXPR_APPEND:
    case DYN_EXPR_PREPEND:
        ok = info->type == DYN_EXPR_V_LIST;
        need = "list_append needs a list";
        break;
    default: return DYN_OK;
    }
    if (ok) return DYN_OK;
    s_errf(&rs->r->error, "%s, ", need);
    s_err_operand(&rs->r->error, rs->exprs[slot], vid);
    s_errf(&rs->r->error, " is a %s", s_type_name(info));
    return s_fail_end(rs, slot);
}

static int s_key_error(struct s_render *rs) {
    const struct dyn_expr *e = rs->exprs[DYN_EXPR_SLOT_KEY];
    struct dyn_buf *err = &rs->r->error;
    switch (e->key_error) {
    case KE_OP:
        s_errf(err, "operator \"%s\" is not supported in key conditions (valid: =, <, <=, >, >=, BETWEEN, begins_with)",
               s_op_names[e->key_op]);
        break;
    case KE_PATH: s_errf(err, "a key condition takes top-level key attributes, not size() or document paths"); break;
    case KE_SAME: s_errf(err, "a key condition names two different keys"); break;
    case KE_NOEQ: s_errf(err, "a key condition needs an equality on the partition key"); break;
    default:
        s_errf(err, "a key condition is a partition key equality, optionally AND-ed with one sort key condition");
        break;
    }
    return s_fail_end(rs, DYN_EXPR_SLOT_KEY);
}

/* Writes one slot's string: the skeleton with its holes filled in. */
static int s_render_slot(struct s_render *rs, int slot) {
    const struct dyn_expr *e = rs->exprs[slot];
    const uint32_t *segmap = rs->segmap[slot];
    struct dyn_buf *out = &rs->r->text;
    const struct s_hole *h = e->holes, *end = h + e->n_holes;
    uint32_t prev = 0, g = 0;
    size_t in_total = 0, j;
    int rc;
    if ((rc = dyn_buf_reserve(out, e->sk_len)) != DYN_OK) return rc;
    for (; h < end; h++) {
        const struct dyn_expr_value_info *info;
        if ((rc = s_w(out, e->sk + prev, h->off - prev)) != DYN_OK) return rc;
        prev = h->off + 4;
        if (h->kind == H_NAME) {
            if ((rc = s_w_ph(out, '#', segmap[h->id])) != DYN_OK) return rc;
            continue;
        }
        if ((rc = s_resolve(rs, slot, h->id, &g)) != DYN_OK) return rc;
        /* the placeholder's first use decides, so a name shared by two slots is
         * expanded (and reported) one way even if the caller's infos differ */
        info = s_ginfo(rs, g);
        if (h->kind == H_IN && h->first) in_total = 0;
        if (h->kind == H_VALUE || (info->type != DYN_EXPR_V_LIST && info->type != DYN_EXPR_V_SET)) {
            if (h->action != S_NO_ACTION && (rc = s_check_action(rs, slot, h->id, g, h->action)) != DYN_OK) return rc;
            if ((rc = s_w_ph(out, ':', g)) != DYN_OK) return rc;
            if (!(rs->gvals[g].flags & 1u)) {
                rs->gvals[g].flags |= 1u;
                if ((rc = s_report(rs, g, -1)) != DYN_OK) return rc;
            }
            in_total++;
        } else if (info->count == 0) {
            s_errf(&rs->r->error, "IN needs at least one value, ");
            s_err_operand(&rs->r->error, e, h->id);
            s_errf(&rs->r->error, " is an empty %s", s_type_name(info));
            return s_fail_end(rs, slot);
        } else {
            /* IN with a list or set: one placeholder per element (not written when
             * there are too many: the check below fails) */
            in_total += info->count;
            for (j = 0; j < info->count && in_total <= DYN_EXPR_MAX_IN; j++) {
                rc = j > 0 ? S_WLIT(out, ", ") : DYN_OK;
                if (rc == DYN_OK) rc = s_w_ph(out, ':', g);
                if (rc == DYN_OK) rc = s_wc(out, '_');
                if (rc == DYN_OK) rc = s_w_u32(out, (uint32_t)j);
                if (rc) return rc;
            }
            if (in_total <= DYN_EXPR_MAX_IN && !(rs->gvals[g].flags & 2u)) {
                rs->gvals[g].flags |= 2u;
                for (j = 0; j < info->count; j++)
                    if ((rc = s_report(rs, g, (int32_t)j)) != DYN_OK) return rc;
            }
        }
        if (h->kind == H_IN && h->last && in_total > DYN_EXPR_MAX_IN) {
            s_errf(&rs->r->error, "IN takes at most %d values, got %zu", DYN_EXPR_MAX_IN, in_total);
            return s_fail_end(rs, slot);
        }
    }
    if ((rc = s_w(out, e->sk + prev, e->sk_len - prev)) != DYN_OK) return rc;
    if (out->cap) out->ptr[out->len] = '\0';
    return DYN_OK;
}

void dyn_expr_renderer_init(struct dyn_expr_renderer *r, const struct dyn_allocator *alloc) {
    memset(r, 0, sizeof *r);
    r->alloc = alloc ? alloc : dyn_default_allocator();
    dyn_buf_init(&r->text, r->alloc);
    dyn_buf_init(&r->error, r->alloc);
    dyn_buf_init(&r->scratch, r->alloc);
}

void dyn_expr_renderer_free(struct dyn_expr_renderer *r) {
    dyn_buf_free(&r->text);
    dyn_buf_free(&r->error);
    dyn_buf_free(&r->scratch);
    dyn_mem_free(r->alloc, r->names, r->names_cap * sizeof *r->names);
    dyn_mem_free(r->alloc, r->values, r->values_cap * sizeof *r->values);
    r->names = NULL;
    r->values = NULL;
    r->names_cap = r->values_cap = r->n_names = r->n_values = 0;
}

static inline int s_seg_order(const struct dyn_expr *a, uint32_t i, const struct dyn_expr *b, uint32_t j) {
    const struct s_str *x = &a->segs[i], *y = &b->segs[j];
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->len <= 8 && y->len <= 8) return x->len < y->len ? -1 : x->len > y->len;
    return s_bytes_cmp(a->pool + x->off, x->len, b->pool + y->off, y->len);
}

/* Gives every distinct segment of the request its name placeholder, in byte
 * order: a merge of the expressions' sorted segment lists. On a tie the
 * lowest slot is the one reported. */
static int s_merge_names(struct s_render *rs) {
    struct dyn_expr_renderer *r = rs->r;
    const struct dyn_expr *ex[DYN_EXPR_SLOTS];
    uint32_t head[DYN_EXPR_SLOTS], *map[DYN_EXPR_SLOTS];
    int slot_of[DYN_EXPR_SLOTS], n = 0, live, s, best;
    for (s = 0; s < DYN_EXPR_SLOTS; s++) {
        if (!rs->exprs[s] || !rs->exprs[s]->n_segs) continue;
        ex[n] = rs->exprs[s];
        map[n] = rs->segmap[s];
        slot_of[n] = s;
        head[n++] = 0;
    }
    for (live = n; live > 0;) {
        const struct dyn_expr *be;
        uint32_t bh;
        best = -1;
        for (s = 0; s < n; s++) {
            if (head[s] >= ex[s]->n_segs) continue;
            if (best < 0 || s_seg_order(ex[s], head[s], ex[best], head[best]) < 0) best = s;
        }
        if (r->n_names >= DYN_EXPR_MAX_PLACEHOLDERS) {
            s_errf(&r->error, "more than %d attribute names in one request", DYN_EXPR_MAX_PLACEHOLDERS);
            return DYN_EINVAL;
        }
        be = ex[best];
        bh = head[best];
        r->names[r->n_names].slot = slot_of[best];
        r->names[r->n_names].seg = bh;
        rs->subst += 4 + be->segs[bh].len;
        for (s = 0; s < n; s++) {
            if (s == best || head[s] >= ex[s]->n_segs || s_seg_order(ex[s], head[s], be, bh) != 0) continue;
            map[s][head[s]++] = (uint32_t)r->n_names;
            if (head[s] == ex[s]->n_segs) live--;
        }
        map[best][head[best]++] = (uint32_t)r->n_names;
        if (head[best] == be->n_segs) live--;
        r->n_names++;
    }
    return DYN_OK;
}

int dyn_expr_render(struct dyn_expr_renderer *r, const struct dyn_expr *const exprs[DYN_EXPR_SLOTS],
                    const struct dyn_expr_value_info *const infos[DYN_EXPR_SLOTS]) {
    struct s_render rs;
    size_t total_segs = 0, total_vals = 0, hsize = 8, words, i;
    uint32_t *w;
    int slot, rc = DYN_OK;

    dyn_buf_reset(&r->text);
    dyn_buf_reset(&r->error);
    memset(r->off, 0, sizeof r->off);
    memset(r->len, 0, sizeof r->len);
    r->n_names = r->n_values = 0;
    memset(&rs, 0, sizeof rs);
    rs.r = r;
    rs.exprs = exprs;
    rs.infos = infos;
    for (slot = 0; slot < DYN_EXPR_SLOTS; slot++) {
        const struct dyn_expr *e = exprs[slot];
        int want = slot <= DYN_EXPR_SLOT_CONDITION ? DYN_EXPR_CONDITION
                   : slot == DYN_EXPR_SLOT_UPDATE  ? DYN_EXPR_UPDATE
                                                   : DYN_EXPR_PROJECTION;
        if (!e) continue;
        if (e->kind != want) {
            s_errf(&r->error, "%s needs %s, got %s", s_slot_names[slot], s_kind_names[want], s_kind_names[e->kind]);
            return DYN_EINVAL;
        }
        if (e->n_vals && !infos[slot]) {
            s_errf(&r->error, "no value information for %s", s_slot_names[slot]);
            return DYN_EINVAL;
        }
        total_segs += e->n_segs;
        total_vals += e->n_vals;
    }
    if (exprs[DYN_EXPR_SLOT_KEY] && exprs[DYN_EXPR_SLOT_KEY]->key_error) return s_key_error(&rs);
    while (hsize < 2 * total_vals) hsize *= 2;

    /* one scratch block: segment maps, operand maps, value table, name hash */
    words = total_segs + total_vals + 3 * total_vals + hsize;
    dyn_buf_reset(&r->scratch);
    if ((rc = dyn_buf_reserve(&r->scratch, words * sizeof(uint32_t))) != DYN_OK) return rc;
    w = (uint32_t *)(void *)r->scratch.ptr;
    for (slot = 0; slot < DYN_EXPR_SLOTS; slot++) {
        if (!exprs[slot]) continue;
        rs.segmap[slot] = w;
        w += exprs[slot]->n_segs;
        rs.valmap[slot] = w;
        for (i = 0; i < exprs[slot]->n_vals; i++) w[i] = S_NONE;
        w += exprs[slot]->n_vals;
    }
    rs.gvals = (struct s_gval *)(void *)w;
    w += 3 * total_vals;
    rs.hash = w;
    rs.hmask = (uint32_t)(hsize - 1);
    memset(rs.hash, 0, hsize * sizeof(uint32_t));

    if (r->names_cap < total_segs) {
        void *p = dyn_mem_realloc(r->alloc, r->names, r->names_cap * sizeof *r->names, total_segs * sizeof *r->names);
        if (!p) return DYN_ENOMEM;
        r->names = p;
        r->names_cap = total_segs;
    }
    if ((rc = s_merge_names(&rs)) != DYN_OK) return rc;

    for (slot = 0; slot < DYN_EXPR_SLOTS && rc == DYN_OK; slot++) {
        if (!exprs[slot]) continue;
        r->off[slot] = r->text.len;
        if ((rc = s_render_slot(&rs, slot)) != DYN_OK) break;
        r->len[slot] = r->text.len - r->off[slot];
        if (r->len[slot] > DYN_EXPR_MAX_LEN) {
            s_errf(&r->error, "the expression is %zu bytes, more than the %d DynamoDB takes", r->len[slot],
                   DYN_EXPR_MAX_LEN);
            rc = s_fail_end(&rs, slot);
        }
    }
    if (rc == DYN_OK && rs.subst > DYN_EXPR_MAX_SUBST) {
        s_errf(&r->error, "the placeholder maps hold about %zu bytes, more than the %u DynamoDB takes", rs.subst,
               DYN_EXPR_MAX_SUBST);
        rc = DYN_EINVAL;
    }
    return rc;
}
