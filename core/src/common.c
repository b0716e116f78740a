/* Status names and the default allocator. */
#include "dynamo/common.h"

#include <stdlib.h>

const char *dyn_status_name(int status) {
    switch (status) {
    case DYN_OK: return "OK";
    case DYN_ENOMEM: return "ENOMEM";
    case DYN_EINVAL: return "EINVAL";
    case DYN_ETRANSPORT: return "ETRANSPORT";
    case DYN_ETIMEOUT: return "ETIMEOUT";
    case DYN_EHTTP: return "EHTTP";
    case DYN_EAWS: return "EAWS";
    case DYN_EJSON: return "EJSON";
    case DYN_ECRC: return "ECRC";
    case DYN_ERANGE: return "ERANGE";
    default: return "EUNKNOWN";
    }
}

const char *dyn_status_str(int status) {
    switch (status) {
    case DYN_OK: return "success";
    case DYN_ENOMEM: return "not enough memory";
    case DYN_EINVAL: return "invalid argument";
    case DYN_ETRANSPORT: return "transport error";
    case DYN_ETIMEOUT: return "request timed out";
    case DYN_EHTTP: return "unexpected http status";
    case DYN_EAWS: return "dynamodb error";
    case DYN_EJSON: return "malformed json";
    case DYN_ECRC: return "response checksum mismatch";
    case DYN_ERANGE: return "number out of range";
    default: return "unknown error";
    }
}

static void *s_default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

static const struct dyn_allocator s_default = {s_default_alloc, NULL};

const struct dyn_allocator *dyn_default_allocator(void) { return &s_default; }
