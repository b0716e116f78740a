/*
 * dynamo/buf.h - an owned, growable byte buffer.
 *
 * A dyn_buf owns its memory and carries its allocator. ptr is kept
 * NUL-terminated whenever cap > 0, so it can be handed to C APIs that want a
 * string, but len never counts the terminator. On DYN_ENOMEM the buffer is
 * left unchanged.
 */
#ifndef DYNAMO_BUF_H
#define DYNAMO_BUF_H

#include "dynamo/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dyn_buf {
    char *ptr;
    size_t len;
    size_t cap;
    const struct dyn_allocator *alloc;
};

#define DYN_BUF_INIT(a) {NULL, 0, 0, (a)}

void dyn_buf_init(struct dyn_buf *b, const struct dyn_allocator *alloc);
void dyn_buf_free(struct dyn_buf *b);

/* Grows the buffer so that `extra` more bytes (plus the NUL) fit. */
int dyn_buf_reserve(struct dyn_buf *b, size_t extra);
int dyn_buf_append(struct dyn_buf *b, const void *data, size_t n);
int dyn_buf_append_cstr(struct dyn_buf *b, const char *s);
int dyn_buf_append_slice(struct dyn_buf *b, dyn_slice s);
/* Lowercase hex of n bytes. */
int dyn_buf_append_hex(struct dyn_buf *b, const unsigned char *bytes, size_t n);
/* Decimal text of a signed 64-bit integer. */
int dyn_buf_append_int(struct dyn_buf *b, int64_t v);

static inline int dyn_buf_putc(struct dyn_buf *b, char c) {
    if (b->len + 1 >= b->cap) {
        int rc = dyn_buf_reserve(b, 1);
        if (rc) return rc;
    }
    b->ptr[b->len++] = c;
    b->ptr[b->len] = '\0';
    return DYN_OK;
}

/* Shrinks len (never grows); keeps the NUL terminator. */
static inline void dyn_buf_truncate(struct dyn_buf *b, size_t len) {
    if (len < b->len) {
        b->len = len;
        if (b->cap) b->ptr[len] = '\0';
    }
}

static inline void dyn_buf_reset(struct dyn_buf *b) { dyn_buf_truncate(b, 0); }

static inline dyn_slice dyn_buf_slice(const struct dyn_buf *b) {
    return dyn_slice_make(b->len ? b->ptr : "", b->len);
}

#ifdef __cplusplus
}
#endif
#endif
