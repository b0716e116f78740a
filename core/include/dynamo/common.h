/*
 * dynamo/common.h - status codes, borrowed slices and the allocator shared by
 * every module of libdynamo.
 *
 * Conventions (see STYLE.md D1):
 *  - functions return DYN_OK (0) or a negative DYN_E* status;
 *  - a dyn_slice is borrowed: never freed by the receiver, valid only as long
 *    as its owner says;
 *  - memory comes from a struct dyn_allocator shaped like lua_Alloc, so the
 *    Lua binding can hand the core its own allocator and specs can install a
 *    failing one. The core never calls abort().
 */
#ifndef DYNAMO_COMMON_H
#define DYNAMO_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dyn_status {
    DYN_OK = 0,
    DYN_ENOMEM = -1,     /* allocation failed */
    DYN_EINVAL = -2,     /* bad input from the caller */
    DYN_ETRANSPORT = -3, /* connection refused, reset, DNS, TLS ... */
    DYN_ETIMEOUT = -4,   /* the request did not finish in time */
    DYN_EHTTP = -5,      /* an HTTP status the protocol does not explain */
    DYN_EAWS = -6,       /* DynamoDB answered with an error document */
    DYN_EJSON = -7,      /* malformed JSON */
    DYN_ECRC = -8,       /* x-amz-crc32 did not match the body */
    DYN_ERANGE = -9      /* a number outside what DynamoDB can store */
};

/* "EAWS", "ENOMEM", ...; "EUNKNOWN" for anything else. Never NULL. */
const char *dyn_status_name(int status);
/* A short lowercase description ("not enough memory"). Never NULL. */
const char *dyn_status_str(int status);

/* A borrowed run of bytes; not NUL-terminated unless said so. */
typedef struct dyn_slice {
    const char *ptr;
    size_t len;
} dyn_slice;

#define DYN_SLICE_LIT(s) ((dyn_slice){(s), sizeof(s) - 1})
#define DYN_SLICE_EMPTY ((dyn_slice){"", 0})

static inline dyn_slice dyn_slice_make(const char *ptr, size_t len) {
    dyn_slice s;
    s.ptr = ptr;
    s.len = len;
    return s;
}

static inline dyn_slice dyn_slice_cstr(const char *s) {
    return dyn_slice_make(s, s ? strlen(s) : 0);
}

static inline int dyn_slice_eq(dyn_slice a, dyn_slice b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline int dyn_slice_eq_cstr(dyn_slice a, const char *b) {
    return dyn_slice_eq(a, dyn_slice_cstr(b));
}

/*
 * lua_Alloc-shaped allocator: nsize == 0 frees ptr and returns NULL; otherwise
 * behaves as realloc (ptr may be NULL, osize is the old size or 0).
 */
typedef void *(*dyn_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

struct dyn_allocator {
    dyn_alloc_fn fn;
    void *ud;
};

/* malloc/realloc/free. */
const struct dyn_allocator *dyn_default_allocator(void);

static inline void *dyn_mem_alloc(const struct dyn_allocator *a, size_t n) {
    return a->fn(a->ud, NULL, 0, n);
}
static inline void *dyn_mem_realloc(const struct dyn_allocator *a, void *p, size_t osize, size_t nsize) {
    return a->fn(a->ud, p, osize, nsize);
}
static inline void dyn_mem_free(const struct dyn_allocator *a, void *p, size_t osize) {
    if (p) a->fn(a->ud, p, osize, 0);
}

#ifdef __cplusplus
}
#endif
#endif
