/*
 * dynamo/sigv4.h - AWS Signature Version 4. No I/O, no Lua, no clock: the
 * time is passed in, so every stage is deterministic and testable against
 * AWS's published vectors.
 *
 * Each stage appends to a caller-owned buffer, returns DYN_OK or a negative
 * DYN_E* code, and on failure truncates `out` back to its length on entry.
 * Secrets are never copied into any output other than the derived signature.
 */
#ifndef DYNAMO_SIGV4_H
#define DYNAMO_SIGV4_H

#include "dynamo/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dyn_header {
    dyn_slice name;  /* any case; canonicalised to lowercase */
    dyn_slice value; /* trimmed and sequential spaces folded when canonicalised */
};

struct dyn_sigv4_input {
    dyn_slice method;                 /* "POST" */
    dyn_slice path;                   /* raw request path, e.g. "/" */
    dyn_slice query;                  /* raw query string without '?', may be empty */
    const struct dyn_header *headers; /* every header to sign (host, x-amz-date ...) */
    size_t n_headers;
    dyn_slice payload;    /* exact body bytes */
    dyn_slice region;     /* "us-east-1" */
    dyn_slice service;    /* "dynamodb" */
    dyn_slice access_key; /* AKID... */
    dyn_slice secret_key;
    dyn_slice token;      /* session token or empty; the caller adds x-amz-security-token to headers */
    int64_t unix_time;    /* seconds since the epoch, UTC */
};

/* "20150830T123600Z" into out (16 chars + NUL). */
void dyn_sigv4_amz_date(int64_t unix_time, char out[17]);

int dyn_sigv4_canonical_request(const struct dyn_sigv4_input *in, struct dyn_buf *out);
int dyn_sigv4_string_to_sign(const struct dyn_sigv4_input *in, dyn_slice creq, struct dyn_buf *out);
/* The full Authorization header value ("AWS4-HMAC-SHA256 Credential=..."). */
int dyn_sigv4_authorization(const struct dyn_sigv4_input *in, struct dyn_buf *out);

/*
 * Signing keys depend only on (secret, date, region, service), so a signer
 * that signs many requests caches the derived key. The cache holds a copy of
 * the derived key only (never the secret itself) plus a SHA-256 fingerprint
 * of the secret to detect rotation.
 */
struct dyn_sigv4_key_cache {
    char date[9];                     /* YYYYMMDD, "" when empty */
    char region[64];
    char service[32];
    unsigned char secret_fp[32];
    unsigned char key[32];
};

void dyn_sigv4_key_cache_init(struct dyn_sigv4_key_cache *cache);
/* As dyn_sigv4_authorization, using and refreshing `cache` (may be NULL). */
int dyn_sigv4_authorization_cached(const struct dyn_sigv4_input *in, struct dyn_sigv4_key_cache *cache,
                                   struct dyn_buf *out);

#ifdef __cplusplus
}
#endif
#endif
