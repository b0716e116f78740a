/*
 * dynamo/json.h - JSON writing helpers and a pull reader, with no Lua in
 * sight. The Lua binding walks Lua values and drives these; the transport
 * uses the small lookup helpers to read error documents.
 *
 * Text is UTF-8 (RFC 8259). The writer validates UTF-8 and escapes '"', '\\'
 * and control characters; everything else, including non-ASCII characters, is
 * passed through unchanged. The reader validates the whole grammar, UTF-8 in
 * strings, escapes and surrogate pairs, and reports the first error as a
 * static description plus the 0-based byte offset where it was found.
 */
#ifndef DYNAMO_JSON_H
#define DYNAMO_JSON_H

#include "dynamo/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Finds the member `key` of the top-level JSON object in `body` whose value is
 * a string and appends its unescaped value to `out`. Returns DYN_OK,
 * DYN_EINVAL when the member is absent or not a string, DYN_EJSON when body is
 * not a JSON object, DYN_ENOMEM. When the key occurs more than once the first
 * occurrence wins. Only the part of body up to the member is validated.
 */
int dyn_json_get_string(dyn_slice body, const char *key, struct dyn_buf *out);

/* ---- UTF-8 ------------------------------------------------------------ */

/*
 * Returns 1 when s is well-formed UTF-8 (no overlongs, no surrogates, nothing
 * above U+10FFFF), else 0 and, when bad_pos is not NULL, stores the offset of
 * the first byte of the first bad sequence.
 */
int dyn_json_utf8_valid(dyn_slice s, size_t *bad_pos);

/* ---- writer ----------------------------------------------------------- */

/*
 * Appends s as a quoted JSON string. Returns DYN_OK, DYN_EINVAL when s is not
 * valid UTF-8 (out is left as it was on entry), DYN_ENOMEM (likewise).
 */
int dyn_json_write_string(struct dyn_buf *out, dyn_slice s);

/*
 * Same, for text the caller knows is valid UTF-8 (for instance text that came
 * out of dyn_json_unescape or was checked already): only escapes.
 */
int dyn_json_write_string_trusted(struct dyn_buf *out, dyn_slice s);

/* ---- pull reader ------------------------------------------------------ */

#define DYN_JSON_MAX_DEPTH 1024

enum dyn_json_tok {
    DYN_JSON_END = 0,   /* the document is complete (only whitespace followed) */
    DYN_JSON_OBJ_BEGIN, /* '{' */
    DYN_JSON_OBJ_END,   /* '}' */
    DYN_JSON_ARR_BEGIN, /* '[' */
    DYN_JSON_ARR_END,   /* ']' */
    DYN_JSON_KEY,       /* a member name; the ':' after it is consumed too */
    DYN_JSON_STRING,    /* a string value */
    DYN_JSON_NUMBER,    /* text is the number exactly as written (RFC 8259 grammar) */
    DYN_JSON_TRUE,
    DYN_JSON_FALSE,
    DYN_JSON_NULL
};

/*
 * One token. For KEY and STRING, text is the raw content between the quotes
 * (borrowed from the input) and `escaped` says whether it holds backslash
 * escapes; when it does, dyn_json_unescape gives the value. When escaped is 0
 * text already is the value and is valid UTF-8.
 */
struct dyn_json_token {
    enum dyn_json_tok type;
    int escaped;
    dyn_slice text;
};

/* The reader borrows its input; it allocates nothing and needs no freeing. */
struct dyn_json_reader {
    const char *begin, *p, *end;
    const char *err;  /* static description of the first error, or NULL */
    size_t err_pos;   /* 0-based byte offset of that error */
    unsigned depth;   /* containers currently open */
    int state;        /* private */
    unsigned char kinds[DYN_JSON_MAX_DEPTH / 8]; /* private: bit set = object */
};

void dyn_json_reader_init(struct dyn_json_reader *r, dyn_slice text);

/*
 * Reads the next token. Returns DYN_OK or DYN_EJSON (r->err and r->err_pos
 * describe the problem; later calls keep returning DYN_EJSON). After the top
 * level value, returns DYN_JSON_END once, when nothing but whitespace follows.
 */
int dyn_json_next(struct dyn_json_reader *r, struct dyn_json_token *tok);

/*
 * Skips the rest of the value whose first token is `first` (already read).
 * A scalar needs nothing; a container is read up to its matching end.
 */
int dyn_json_skip(struct dyn_json_reader *r, const struct dyn_json_token *first);

/*
 * Scanner: the pieces of the reader, for parsers that follow the grammar
 * themselves (recursive descent over a known document shape). They move
 * r->p but never look at or change the pull state, so a reader is used
 * either through dyn_json_next or through these, not both. Errors are
 * recorded in r->err / r->err_pos as dyn_json_next records them.
 */

/* Skips JSON whitespace from p; returns the first other byte (or end). */
static inline const char *dyn_json_skip_ws(const char *p, const char *end) {
    /* Compact JSON has none: one compare settles the usual case. */
    while (p < end && (unsigned char)*p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/*
 * r->p is at a '"': reads the string (validated as the reader does) into tok
 * (type DYN_JSON_STRING) and leaves r->p after the closing quote.
 * Returns DYN_OK or DYN_EJSON.
 */
int dyn_json_scan_string(struct dyn_json_reader *r, struct dyn_json_token *tok);

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DYN_JSON_SWAR 1
/*
 * For 8 string bytes in w (memory order, little-endian): the high bit of
 * each byte that needs a look of its own (a control character, '"', '\\'
 * or not ASCII). w - 0x20 sets it for a byte below 0x20 and (w ^ '"') - 1
 * for a '"' (likewise for '\\'); the only other bytes these set it for are
 * 0x80 and up, which w flags anyway, so the usual "& ~x" masks are not
 * needed. A borrow can flag bytes after a flagged one wrongly, never one
 * before it: the lowest flag is always exact.
 */
static inline uint64_t dyn_json_special8(uint64_t w) {
    const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
    return ((w - ones * 0x20) | ((w ^ (ones * '"')) - ones) | ((w ^ (ones * '\\')) - ones) | w) & high;
}
#endif

/*
 * dyn_json_scan_string for hot loops, inlined: plain strings (no escape,
 * control or non-ASCII byte) are read here a word at a time, as long as 8
 * bytes remain before r->end; anything else is left to the full scanner from
 * the start, so results and errors are the same.
 */
static inline int dyn_json_scan_string_fast(struct dyn_json_reader *r, struct dyn_json_token *tok) {
#ifdef DYN_JSON_SWAR
    const char *s = r->p + 1, *q = s;
    while (r->end - q >= 8) {
        uint64_t w, m;
        memcpy(&w, q, 8);
        m = dyn_json_special8(w);
        if (m) {
            q += __builtin_ctzll(m) >> 3;
            if (*q != '"') break;
            tok->type = DYN_JSON_STRING;
            tok->escaped = 0;
            tok->text = dyn_slice_make(s, (size_t)(q - s));
            r->p = q + 1;
            return DYN_OK;
        }
        q += 8;
    }
#endif
    return dyn_json_scan_string(r, tok);
}

/* r->p is at '-' or a digit: reads a number token. DYN_OK or DYN_EJSON. */
int dyn_json_scan_number(struct dyn_json_reader *r, struct dyn_json_token *tok);

/*
 * r->p is at a value (whitespace before it is skipped): skips the whole
 * value, validating it as the reader would (strings, numbers, literals,
 * nesting up to DYN_JSON_MAX_DEPTH), and leaves r->p after it. For parsers
 * that only need a value's extent (its raw text runs from where it started
 * to r->p). Returns DYN_OK or DYN_EJSON.
 */
int dyn_json_scan_skip(struct dyn_json_reader *r);

/*
 * r->p is at a '{' or '[': moves r->p past its matching end, looking only at
 * quotes (with their escapes) and brackets, not validating anything else:
 * for a value whose text another parser reads in full later (the batch
 * engine hands found items to the decoder). DYN_OK, or DYN_EJSON when the
 * input ends first or nesting passes DYN_JSON_MAX_DEPTH.
 */
int dyn_json_scan_extent(struct dyn_json_reader *r);

/* Skips whitespace, then consumes the byte c. DYN_OK, or DYN_EJSON when another byte (or the end) is there. */
int dyn_json_scan_char(struct dyn_json_reader *r, char c);

/* Skips whitespace, then reads a member name (tok, as dyn_json_scan_string) and the ':' after it. */
int dyn_json_scan_name(struct dyn_json_reader *r, struct dyn_json_token *tok);

/*
 * Walks a container's elements: call right after its '{' or '[' with
 * first = 1, then after each element with first = 0. Sets *more to 1 when an
 * element follows (the ',' between is consumed), 0 when `close` ('}' or ']')
 * ended the container (consumed). DYN_OK or DYN_EJSON.
 */
int dyn_json_scan_more(struct dyn_json_reader *r, char close, int first, int *more);

/* Records error `what` at `at` (a pointer into the input); returns DYN_EJSON. */
int dyn_json_fail(struct dyn_json_reader *r, const char *at, const char *what);

/*
 * Appends the value of a raw string content (as found in a token: the reader
 * has validated it) to out, turning escapes (surrogate pairs included) into
 * UTF-8. Returns DYN_OK or DYN_ENOMEM.
 */
int dyn_json_unescape(dyn_slice raw, struct dyn_buf *out);

#ifdef __cplusplus
}
#endif
#endif
