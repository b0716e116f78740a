/* JSON writer helpers and pull reader; see dynamo/json.h. */
#include "dynamo/json.h"

/* Reader states: what the next token may be. */
enum {
    S_VALUE,     /* a value (document start, after ':' or an array ',') */
    S_ARR_FIRST, /* a value or ']' (just after '[') */
    S_OBJ_FIRST, /* a key or '}' (just after '{') */
    S_KEY,       /* a key (after an object ',') */
    S_AFTER,     /* ',' or the container end, or the end of the document */
    S_DONE,      /* END was returned */
    S_ERROR
};

/*
 * Byte classes for the string scanner: 0 = copy as is, 1 = '"', 2 = '\\',
 * 3 = control character, 4 = start of a multibyte sequence (checked apart).
 */
static const unsigned char s_strclass[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};

/* Length of the well-formed UTF-8 sequence at p (p < end, *p >= 0x80), or 0. */
static size_t s_utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        unsigned lo = 0x80, hi = 0xBF;
        if (avail < 3) return 0;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80) return 0;
        return 3;
    }
    if (c < 0xF5) {
        unsigned lo = 0x80, hi = 0xBF;
        if (avail < 4) return 0;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

int dyn_json_utf8_valid(dyn_slice s, size_t *bad_pos) {
    const unsigned char *p = (const unsigned char *)s.ptr, *end = p + s.len;
    while (p < end) {
        size_t n;
        /* ASCII runs dominate real data: skip them eight bytes at a time. */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & UINT64_C(0x8080808080808080)) break;
            p += 8;
        }
        if (p >= end) break;
        if (*p < 0x80) {
            p++;
            continue;
        }
        n = s_utf8_seq(p, end);
        if (!n) {
            if (bad_pos) *bad_pos = (size_t)(p - (const unsigned char *)s.ptr);
            return 0;
        }
        p += n;
    }
    return 1;
}

/* ---- writer ----------------------------------------------------------- */

static const char s_hex[] = "0123456789abcdef";

/* Appends the escape for control character or quote/backslash c. */
static void s_put_escape(char *d, size_t *n, unsigned char c) {
    d[(*n)++] = '\\';
    switch (c) {
    case '"': d[(*n)++] = '"'; break;
    case '\\': d[(*n)++] = '\\'; break;
    case '\b': d[(*n)++] = 'b'; break;
    case '\f': d[(*n)++] = 'f'; break;
    case '\n': d[(*n)++] = 'n'; break;
    case '\r': d[(*n)++] = 'r'; break;
    case '\t': d[(*n)++] = 't'; break;
    default:
        d[(*n)++] = 'u';
        d[(*n)++] = '0';
        d[(*n)++] = '0';
        d[(*n)++] = s_hex[c >> 4];
        d[(*n)++] = s_hex[c & 15];
        break;
    }
}

/*
 * Offset of the first of the 8 bytes in w (memory order) that needs a look
 * of its own: a control character, '"', '\\' or not ASCII; 8 when none does.
 */
static inline unsigned s_first_care(uint64_t w) {
#ifdef DYN_JSON_SWAR
    uint64_t m = dyn_json_special8(w);
    return m ? (unsigned)__builtin_ctzll(m) >> 3 : 8;
#else
    unsigned char b[8];
    unsigned i;
    memcpy(b, &w, 8);
    for (i = 0; i < 8 && s_strclass[b[i]] == 0; i++) {
    }
    return i;
#endif
}

/*
 * The next (up to) 8 bytes at p as a word; past the end it is padded with
 * plain 'a's, so a string's tail is checked a word at a time without
 * reading beyond it. Short tails are gathered with overlapping loads in
 * registers: bytes stored one by one and read back as a word would stall.
 */
static inline uint64_t s_load8(const unsigned char *p, size_t rem) {
    const uint64_t pad = UINT64_C(0x6161616161616161);
    uint64_t w, keep;
    if (rem >= 8) {
        memcpy(&w, p, 8);
        return w;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (rem >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + rem - 4, 4);
        w = (uint64_t)lo | ((uint64_t)hi << (8 * (rem - 4)));
    } else if (rem > 0) {
        w = (uint64_t)p[0] | ((uint64_t)p[rem / 2] << (8 * (rem / 2))) | ((uint64_t)p[rem - 1] << (8 * (rem - 1)));
    } else {
        w = 0;
    }
    keep = (UINT64_C(1) << (8 * rem)) - 1; /* rem < 8 */
    return (w & keep) | (pad & ~keep);
#else
    (void)keep;
    w = pad;
    memcpy(&w, p, rem);
    return w;
#endif
}

static int s_write_string(struct dyn_buf *out, dyn_slice s, int check) {
    const unsigned char *p = (const unsigned char *)s.ptr, *end = p + s.len;
    size_t start = out->len;
    char *d;
    int rc;
    /* Plain text copies byte for byte, so one reservation covers it, the
       quotes and the slack of whole-word stores; only escapes (up to 6
       bytes for 1) need more room. */
    if ((rc = dyn_buf_reserve(out, s.len + 10)) != DYN_OK) return rc;
    d = out->ptr + out->len;
    *d++ = '"';
    while (p < end) {
        size_t rem = (size_t)(end - p);
        uint64_t w = s_load8(p, rem);
        unsigned k = s_first_care(w);
        unsigned char c;
        memcpy(d, &w, 8);
        if (k >= rem) {
            d += rem;
            break;
        }
        d += k;
        p += k;
        if (k == 8) continue;
        c = *p;
        if (s_strclass[c] == 4) {
            size_t n = check ? s_utf8_seq(p, end) : 1;
            if (!n) {
                rc = DYN_EINVAL;
                goto fail;
            }
            memcpy(d, p, n);
            d += n;
            p += n;
        } else {
            size_t n = 0;
            out->len = (size_t)(d - out->ptr);
            if ((rc = dyn_buf_reserve(out, (size_t)(end - p) + 16)) != DYN_OK) goto fail;
            d = out->ptr + out->len;
            s_put_escape(d, &n, c);
            d += n;
            p++;
        }
    }
    *d++ = '"';
    out->len = (size_t)(d - out->ptr);
    out->ptr[out->len] = '\0';
    return DYN_OK;
fail:
    out->len = start;
    out->ptr[start] = '\0';
    return rc;
}

int dyn_json_write_string(struct dyn_buf *out, dyn_slice s) {
    /* Most strings are short and plain: one word check, fixed-size copies. */
    if (s.len <= 8 && out->cap - out->len > 12) {
        uint64_t w = s_load8((const unsigned char *)s.ptr, s.len);
        if (s_first_care(w) >= s.len) {
            char *d = out->ptr + out->len;
            d[0] = '"';
            memcpy(d + 1, &w, 8);
            d[s.len + 1] = '"';
            d[s.len + 2] = '\0';
            out->len += s.len + 2;
            return DYN_OK;
        }
    }
    return s_write_string(out, s, 1);
}

int dyn_json_write_string_trusted(struct dyn_buf *out, dyn_slice s) { return s_write_string(out, s, 0); }

/* ---- reader ----------------------------------------------------------- */

void dyn_json_reader_init(struct dyn_json_reader *r, dyn_slice text) {
    r->begin = text.ptr ? text.ptr : "";
    r->p = r->begin;
    r->end = r->begin + text.len;
    r->err = NULL;
    r->err_pos = 0;
    r->depth = 0;
    r->state = S_VALUE;
}

int dyn_json_fail(struct dyn_json_reader *r, const char *at, const char *what) {
    r->err = what;
    r->err_pos = (size_t)(at - r->begin);
    r->state = S_ERROR;
    return DYN_EJSON;
}

static int s_hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p (at least 4 bytes must remain); -1 if not hex. */
static long s_hex4(const char *p) {
    int a = s_hexval(p[0]), b = s_hexval(p[1]), c = s_hexval(p[2]), d = s_hexval(p[3]);
    if ((a | b | c | d) < 0) return -1;
    return ((long)a << 12) | (b << 8) | (c << 4) | d;
}

int dyn_json_scan_string(struct dyn_json_reader *r, struct dyn_json_token *tok) {
    const unsigned char *p = (const unsigned char *)r->p + 1, *end = (const unsigned char *)r->end;
    const unsigned char *start = p;
    int escaped = 0;
    tok->type = DYN_JSON_STRING;
    for (;;) {
        /* Eight bytes at a time: most of a document is string text. */
        for (;;) {
            size_t rem = (size_t)(end - p);
            unsigned k;
            if (!rem) break;
            k = s_first_care(s_load8(p, rem));
            if (k >= rem) {
                p = end;
                break;
            }
            p += k;
            if (k < 8) break;
        }
        if (p >= end) return dyn_json_fail(r, (const char *)p, "unterminated string");
        switch (s_strclass[*p]) {
        case 1: /* closing quote */
            tok->text = dyn_slice_make((const char *)start, (size_t)(p - start));
            tok->escaped = escaped;
            r->p = (const char *)p + 1;
            return DYN_OK;
        case 2: {
            escaped = 1;
            if (end - p < 2) return dyn_json_fail(r, (const char *)p, "unterminated string");
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                long u;
                if (end - p < 6 || (u = s_hex4((const char *)p + 2)) < 0)
                    return dyn_json_fail(r, (const char *)p, "bad \\u escape");
                if (u >= 0xDC00 && u <= 0xDFFF) return dyn_json_fail(r, (const char *)p, "lone low surrogate");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    long lo;
                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
                        (lo = s_hex4((const char *)p + 8)) < 0xDC00 || lo > 0xDFFF)
                        return dyn_json_fail(r, (const char *)p, "lone high surrogate");
                    p += 12;
                } else {
                    p += 6;
                }
                break;
            }
            default: return dyn_json_fail(r, (const char *)p, "bad escape");
            }
            break;
        }
        case 3: return dyn_json_fail(r, (const char *)p, "control character in string");
        default: {
            size_t n = s_utf8_seq(p, end);
            if (!n) return dyn_json_fail(r, (const char *)p, "invalid UTF-8 in string");
            p += n;
            break;
        }
        }
    }
}

int dyn_json_scan_number(struct dyn_json_reader *r, struct dyn_json_token *tok) {
    const char *p = r->p, *end = r->end, *start = p;
    if (p < end && *p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') return dyn_json_fail(r, p, "bad number");
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return dyn_json_fail(r, p, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return dyn_json_fail(r, p, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    tok->type = DYN_JSON_NUMBER;
    tok->text = dyn_slice_make(start, (size_t)(p - start));
    r->p = p;
    return DYN_OK;
}

static int s_literal(struct dyn_json_reader *r, const char *word, size_t n, enum dyn_json_tok type,
                     struct dyn_json_token *tok) {
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return dyn_json_fail(r, r->p, "unexpected character");
    tok->type = type;
    tok->text = dyn_slice_make(r->p, n);
    r->p += n;
    return DYN_OK;
}

static int s_top_is_object(const struct dyn_json_reader *r) {
    unsigned d = r->depth - 1;
    return (r->kinds[d >> 3] >> (d & 7)) & 1;
}

static int s_push(struct dyn_json_reader *r, int is_object) {
    unsigned d = r->depth;
    if (d >= DYN_JSON_MAX_DEPTH) return dyn_json_fail(r, r->p, "nesting too deep");
    if (is_object) r->kinds[d >> 3] |= (unsigned char)(1u << (d & 7));
    else r->kinds[d >> 3] &= (unsigned char)~(1u << (d & 7));
    r->depth = d + 1;
    return DYN_OK;
}

/* Reads a value starting at r->p (whitespace skipped already). */
static int s_value(struct dyn_json_reader *r, struct dyn_json_token *tok) {
    int rc;
    tok->escaped = 0;
    if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
    switch (*r->p) {
    case '"':
        if ((rc = dyn_json_scan_string(r, tok)) != DYN_OK) return rc;
        tok->type = DYN_JSON_STRING;
        r->state = S_AFTER;
        return DYN_OK;
    case '{':
        if ((rc = s_push(r, 1)) != DYN_OK) return rc;
        tok->type = DYN_JSON_OBJ_BEGIN;
        tok->text = dyn_slice_make(r->p, 1);
        r->p++;
        r->state = S_OBJ_FIRST;
        return DYN_OK;
    case '[':
        if ((rc = s_push(r, 0)) != DYN_OK) return rc;
        tok->type = DYN_JSON_ARR_BEGIN;
        tok->text = dyn_slice_make(r->p, 1);
        r->p++;
        r->state = S_ARR_FIRST;
        return DYN_OK;
    case 't': rc = s_literal(r, "true", 4, DYN_JSON_TRUE, tok); break;
    case 'f': rc = s_literal(r, "false", 5, DYN_JSON_FALSE, tok); break;
    case 'n': rc = s_literal(r, "null", 4, DYN_JSON_NULL, tok); break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        rc = dyn_json_scan_number(r, tok);
        break;
    default: return dyn_json_fail(r, r->p, "unexpected character");
    }
    if (rc == DYN_OK) r->state = S_AFTER;
    return rc;
}

/* dyn_json_scan_skip at a depth of `depth` open containers. */
static int s_skip_value(struct dyn_json_reader *r, unsigned depth) {
    struct dyn_json_token t;
    int rc;
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
    switch (*r->p) {
    case '"': return dyn_json_scan_string_fast(r, &t);
    case '{':
    case '[': {
        char close = *r->p == '{' ? '}' : ']';
        if (depth >= DYN_JSON_MAX_DEPTH) return dyn_json_fail(r, r->p, "nesting too deep");
        r->p = dyn_json_skip_ws(r->p + 1, r->end);
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return DYN_OK;
        }
        for (;;) {
            if (close == '}') {
                if (r->p >= r->end || *r->p != '"') return dyn_json_fail(r, r->p, "expected a member name");
                if ((rc = dyn_json_scan_string_fast(r, &t)) != DYN_OK) return rc;
                r->p = dyn_json_skip_ws(r->p, r->end);
                if (r->p >= r->end || *r->p != ':') return dyn_json_fail(r, r->p, "expected ':'");
                r->p++;
            }
            if ((rc = s_skip_value(r, depth + 1)) != DYN_OK) return rc;
            r->p = dyn_json_skip_ws(r->p, r->end);
            if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
            if (*r->p == close) {
                r->p++;
                return DYN_OK;
            }
            if (*r->p != ',') return dyn_json_fail(r, r->p, "expected ',' or the container's end");
            r->p = dyn_json_skip_ws(r->p + 1, r->end);
        }
    }
    case 't': return s_literal(r, "true", 4, DYN_JSON_TRUE, &t);
    case 'f': return s_literal(r, "false", 5, DYN_JSON_FALSE, &t);
    case 'n': return s_literal(r, "null", 4, DYN_JSON_NULL, &t);
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) return dyn_json_scan_number(r, &t);
        return dyn_json_fail(r, r->p, "unexpected character");
    }
}

int dyn_json_scan_skip(struct dyn_json_reader *r) { return s_skip_value(r, 0); }

#ifdef DYN_JSON_SWAR
/* The high bit of each byte of w that equals c (exact for the lowest one; see dyn_json_special8). */
static inline uint64_t s_bytes_eq(uint64_t w, unsigned char c) {
    const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
    uint64_t x = w ^ (ones * c);
    return (x - ones) & ~x & high;
}
#endif

/* The first quote or backslash at or after p (end if none). Most strings of
   AttributeValue JSON are short (type letters, names): bytes one by one
   first, words only for a long one. */
static const char *s_quote_or_backslash(const char *p, const char *end) {
    const char *stop = end - p > 16 ? p + 16 : end;
    while (p < stop && *p != '"' && *p != '\\') p++;
    if (p < stop || p == end) return p;
#ifdef DYN_JSON_SWAR
    while (end - p >= 8) {
        uint64_t w, m;
        memcpy(&w, p, 8);
        m = s_bytes_eq(w, '"') | s_bytes_eq(w, '\\');
        if (m) return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && *p != '"' && *p != '\\') p++;
    return p;
}

/* The first quote or bracket at or after p (end if none): they come every few bytes outside strings. */
static const char *s_structural(const char *p, const char *end) {
    while (p < end && *p != '"' && *p != '{' && *p != '}' && *p != '[' && *p != ']') p++;
    return p;
}

int dyn_json_scan_extent(struct dyn_json_reader *r) {
    const char *p = r->p, *end = r->end;
    unsigned depth = 0;
    if (p >= end || (*p != '{' && *p != '[')) return dyn_json_fail(r, p, "expected an object or array");
    while ((p = s_structural(p, end)) < end) {
        switch (*p) {
        case '"':
            /* to the closing quote: a backslash takes the byte after it along */
            for (p++;;) {
                p = s_quote_or_backslash(p, end);
                if (p >= end) return dyn_json_fail(r, end, "unexpected end of input");
                if (*p == '"') break;
                p += 2;
            }
            break;
        case '{':
        case '[':
            if (++depth > DYN_JSON_MAX_DEPTH) return dyn_json_fail(r, p, "nesting too deep");
            break;
        case '}':
        case ']':
            if (--depth == 0) {
                r->p = p + 1;
                return DYN_OK;
            }
            break;
        default:
            /* a byte that only looks like a bracket to the word test ('{' | 0x20 matches 0x5b and 0x7b
               alone, so nothing else): cannot happen, but stay safe */
            break;
        }
        p++;
    }
    return dyn_json_fail(r, end, "unexpected end of input");
}

int dyn_json_scan_char(struct dyn_json_reader *r, char c) {
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p >= r->end || *r->p != c) return dyn_json_fail(r, r->p, "unexpected character");
    r->p++;
    return DYN_OK;
}

int dyn_json_scan_name(struct dyn_json_reader *r, struct dyn_json_token *tok) {
    int rc;
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p >= r->end || *r->p != '"') return dyn_json_fail(r, r->p, "expected a member name");
    if ((rc = dyn_json_scan_string_fast(r, tok)) != DYN_OK) return rc;
    tok->type = DYN_JSON_KEY;
    return dyn_json_scan_char(r, ':');
}

int dyn_json_scan_more(struct dyn_json_reader *r, char close, int first, int *more) {
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        *more = 0;
        return DYN_OK;
    }
    if (!first) {
        if (r->p >= r->end || *r->p != ',') return dyn_json_fail(r, r->p, "expected ',' or the container's end");
        r->p++;
    }
    *more = 1;
    return DYN_OK;
}

/* Reads a member name and the ':' after it, at r->p. */
static int s_key(struct dyn_json_reader *r, struct dyn_json_token *tok) {
    int rc;
    if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
    if (*r->p != '"') return dyn_json_fail(r, r->p, "expected a member name");
    if ((rc = dyn_json_scan_string(r, tok)) != DYN_OK) return rc;
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
    if (*r->p != ':') return dyn_json_fail(r, r->p, "expected ':'");
    r->p++;
    tok->type = DYN_JSON_KEY;
    r->state = S_VALUE;
    return DYN_OK;
}

static int s_close(struct dyn_json_reader *r, struct dyn_json_token *tok, enum dyn_json_tok type) {
    tok->type = type;
    tok->escaped = 0;
    tok->text = dyn_slice_make(r->p, 1);
    r->p++;
    r->depth--;
    r->state = S_AFTER;
    return DYN_OK;
}

int dyn_json_next(struct dyn_json_reader *r, struct dyn_json_token *tok) {
    r->p = dyn_json_skip_ws(r->p, r->end);
    switch (r->state) {
    case S_VALUE: return s_value(r, tok);
    case S_ARR_FIRST:
        if (r->p < r->end && *r->p == ']') return s_close(r, tok, DYN_JSON_ARR_END);
        return s_value(r, tok);
    case S_OBJ_FIRST:
        if (r->p < r->end && *r->p == '}') return s_close(r, tok, DYN_JSON_OBJ_END);
        return s_key(r, tok);
    case S_KEY: return s_key(r, tok);
    case S_AFTER:
        if (r->depth == 0) {
            if (r->p != r->end) return dyn_json_fail(r, r->p, "unexpected data after the document");
            tok->type = DYN_JSON_END;
            tok->escaped = 0;
            tok->text = dyn_slice_make(r->p, 0);
            r->state = S_DONE;
            return DYN_OK;
        }
        if (r->p >= r->end) return dyn_json_fail(r, r->p, "unexpected end of input");
        if (s_top_is_object(r)) {
            if (*r->p == '}') return s_close(r, tok, DYN_JSON_OBJ_END);
            if (*r->p != ',') return dyn_json_fail(r, r->p, "expected ',' or '}'");
            r->p = dyn_json_skip_ws(r->p + 1, r->end);
            return s_key(r, tok);
        }
        if (*r->p == ']') return s_close(r, tok, DYN_JSON_ARR_END);
        if (*r->p != ',') return dyn_json_fail(r, r->p, "expected ',' or ']'");
        r->p = dyn_json_skip_ws(r->p + 1, r->end);
        return s_value(r, tok);
    case S_DONE: return dyn_json_fail(r, r->p, "read past the end of the document");
    default: return DYN_EJSON;
    }
}

int dyn_json_skip(struct dyn_json_reader *r, const struct dyn_json_token *first) {
    unsigned depth;
    struct dyn_json_token t;
    int rc = DYN_OK;
    if (first->type != DYN_JSON_OBJ_BEGIN && first->type != DYN_JSON_ARR_BEGIN) return DYN_OK;
    depth = r->depth; /* includes the container being skipped */
    while (r->depth >= depth) {
        if ((rc = dyn_json_next(r, &t)) != DYN_OK) break;
    }
    return rc;
}

/* Encodes code point u (valid scalar value) as UTF-8 at d; returns the length. */
static size_t s_put_utf8(char *d, unsigned long u) {
    if (u < 0x80) {
        d[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        d[0] = (char)(0xC0 | (u >> 6));
        d[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        d[0] = (char)(0xE0 | (u >> 12));
        d[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        d[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (u >> 18));
    d[1] = (char)(0x80 | ((u >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((u >> 6) & 0x3F));
    d[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

int dyn_json_unescape(dyn_slice raw, struct dyn_buf *out) {
    const char *p = raw.ptr, *end = raw.ptr + raw.len;
    char *d;
    /* Escapes only ever shrink: "\uXXXX" (6 bytes) gives at most 3 bytes and
       a surrogate pair (12) gives 4, so raw.len bytes always suffice. */
    int rc = dyn_buf_reserve(out, raw.len);
    if (rc) return rc;
    d = out->ptr + out->len;
    while (p < end) {
        if (*p != '\\') {
            *d++ = *p++;
            continue;
        }
        switch (p[1]) {
        case 'b': *d++ = '\b'; p += 2; break;
        case 'f': *d++ = '\f'; p += 2; break;
        case 'n': *d++ = '\n'; p += 2; break;
        case 'r': *d++ = '\r'; p += 2; break;
        case 't': *d++ = '\t'; p += 2; break;
        case 'u': {
            unsigned long u = (unsigned long)s_hex4(p + 2);
            p += 6;
            if (u >= 0xD800 && u <= 0xDBFF) { /* the reader checked the pair */
                unsigned long lo = (unsigned long)s_hex4(p + 2);
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            d += s_put_utf8(d, u);
            break;
        }
        default: *d++ = p[1]; p += 2; break; /* '"', '\\', '/' */
        }
    }
    out->len = (size_t)(d - out->ptr);
    out->ptr[out->len] = '\0';
    return DYN_OK;
}

/* ---- lookup ----------------------------------------------------------- */

int dyn_json_get_string(dyn_slice body, const char *key, struct dyn_buf *out) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    struct dyn_buf name;
    dyn_slice want = dyn_slice_cstr(key);
    int rc;
    dyn_buf_init(&name, out->alloc);
    dyn_json_reader_init(&r, body);
    if ((rc = dyn_json_next(&r, &t)) != DYN_OK) goto cleanup;
    if (t.type != DYN_JSON_OBJ_BEGIN) {
        rc = DYN_EJSON;
        goto cleanup;
    }
    for (;;) {
        int match;
        if ((rc = dyn_json_next(&r, &t)) != DYN_OK) goto cleanup;
        if (t.type == DYN_JSON_OBJ_END) {
            rc = DYN_EINVAL;
            goto cleanup;
        }
        if (t.escaped) {
            dyn_buf_reset(&name);
            if ((rc = dyn_json_unescape(t.text, &name)) != DYN_OK) goto cleanup;
            match = dyn_slice_eq(dyn_buf_slice(&name), want);
        } else {
            match = dyn_slice_eq(t.text, want);
        }
        if ((rc = dyn_json_next(&r, &t)) != DYN_OK) goto cleanup;
        if (match) {
            if (t.type != DYN_JSON_STRING) rc = DYN_EINVAL;
            else if (t.escaped) rc = dyn_json_unescape(t.text, out);
            else rc = dyn_buf_append_slice(out, t.text);
            goto cleanup;
        }
        if ((rc = dyn_json_skip(&r, &t)) != DYN_OK) goto cleanup;
    }
cleanup:
    dyn_buf_free(&name);
    return rc;
}
