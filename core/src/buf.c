/* Owned growable buffer; see dynamo/buf.h. */
#include "dynamo/buf.h"

#include <inttypes.h>
#include <stdio.h>

void dyn_buf_init(struct dyn_buf *b, const struct dyn_allocator *alloc) {
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->alloc = alloc ? alloc : dyn_default_allocator();
}

void dyn_buf_free(struct dyn_buf *b) {
    if (!b->alloc) b->alloc = dyn_default_allocator();
    dyn_mem_free(b->alloc, b->ptr, b->cap);
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

int dyn_buf_reserve(struct dyn_buf *b, size_t extra) {
    size_t need = b->len + extra + 1; /* room for the NUL */
    size_t ncap;
    char *p;
    if (need < b->len) return DYN_ENOMEM; /* overflow */
    if (need <= b->cap) return DYN_OK;
    if (!b->alloc) b->alloc = dyn_default_allocator();
    ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    p = dyn_mem_realloc(b->alloc, b->ptr, b->cap, ncap);
    if (!p) return DYN_ENOMEM;
    if (b->cap == 0) p[0] = '\0';
    b->ptr = p;
    b->cap = ncap;
    return DYN_OK;
}

int dyn_buf_append(struct dyn_buf *b, const void *data, size_t n) {
    int rc = dyn_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->ptr + b->len, data, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return DYN_OK;
}

int dyn_buf_append_cstr(struct dyn_buf *b, const char *s) { return dyn_buf_append(b, s, strlen(s)); }

int dyn_buf_append_slice(struct dyn_buf *b, dyn_slice s) { return dyn_buf_append(b, s.ptr, s.len); }

int dyn_buf_append_hex(struct dyn_buf *b, const unsigned char *bytes, size_t n) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    int rc = dyn_buf_reserve(b, n * 2);
    if (rc) return rc;
    for (i = 0; i < n; i++) {
        b->ptr[b->len++] = digits[bytes[i] >> 4];
        b->ptr[b->len++] = digits[bytes[i] & 15];
    }
    b->ptr[b->len] = '\0';
    return DYN_OK;
}

int dyn_buf_append_int(struct dyn_buf *b, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    return dyn_buf_append(b, tmp, (size_t)n);
}
