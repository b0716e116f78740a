/*
 * dynamo/sigv4.h - AWS Signature Version 4. No I/O, no Lua, no clock: the
 * time is passed in, so every stage is deterministic and testable against
 * AWS's published vectors (shared/sigv4-test-suite, all 34 cases).
 *
 * Each stage appends to a caller-owned buffer, returns DYN_OK or a negative
 * DYN_E* code, and on failure truncates `out` back to its length on entry.
 * Errors: DYN_EINVAL for input dyn_sigv4_input_error() rejects, DYN_ENOMEM
 * when `out` (or a scratch buffer, which uses out->alloc) cannot grow.
 * Secrets are never copied into any output other than the derived signature.
 *
 * Canonicalisation rules (those of every service but S3):
 *  - path: repeated slashes merged, "." and ".." segments removed as in
 *    RFC 3986 section 5.2.4 (a final "." or ".." leaves a trailing slash),
 *    "" becomes "/", then every byte but A-Z a-z 0-9 - . _ ~ and the
 *    separating slashes is percent-encoded (upper-case hex). The path is taken
 *    as given, so an already-encoded "%20" becomes "%2520": the double
 *    encoding AWS specifies for non-S3 services.
 *  - query: split on '&' (empty pieces dropped) and the first '=' (a missing
 *    '=' means an empty value), each part percent-decoded ("%zz" stays
 *    literal, '+' is a literal plus) and re-encoded as above, then sorted by
 *    encoded key and, for equal keys, by encoded value.
 *  - headers: names lowercased and sorted (stably); values trimmed with every
 *    inner run of whitespace (SP, HT, CR, LF, VT, FF) folded to one space,
 *    even inside quotes; headers of the same name are joined with ',' in the
 *    order given. Every header passed in is signed.
 *  - payload: lowercase hex SHA-256 of the exact bytes.
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

/* Years 0000 to 9999 are all that the 16-character date can express. */
#define DYN_SIGV4_MIN_TIME INT64_C(-62167219200) /* 0000-01-01T00:00:00Z */
#define DYN_SIGV4_MAX_TIME INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

/*
 * "20150830T123600Z" into out (16 chars + NUL), proleptic Gregorian UTC,
 * computed arithmetically (no libc time zone). Times outside
 * [DYN_SIGV4_MIN_TIME, DYN_SIGV4_MAX_TIME] are clamped to that range; the
 * signing stages reject them instead.
 */
void dyn_sigv4_amz_date(int64_t unix_time, char out[17]);

/*
 * NULL when `in` can be signed, else a short static description of the first
 * problem ("header name is empty or not a token", "time out of range" ...),
 * which never contains any input bytes, so it is safe to show. The stages
 * below return DYN_EINVAL exactly when this is non-NULL for the fields they
 * use. Not checked: the token (unused by header signing), the secret (any
 * bytes), the payload and header values (any bytes).
 */
const char *dyn_sigv4_input_error(const struct dyn_sigv4_input *in);

/*
 * The canonical request (6 lines, no trailing newline). Uses method, path,
 * query, headers and payload only.
 */
int dyn_sigv4_canonical_request(const struct dyn_sigv4_input *in, struct dyn_buf *out);
/*
 * "AWS4-HMAC-SHA256\n<amz date>\n<date>/<region>/<service>/aws4_request\n"
 * followed by the hex SHA-256 of creq. Uses unix_time, region and service.
 */
int dyn_sigv4_string_to_sign(const struct dyn_sigv4_input *in, dyn_slice creq, struct dyn_buf *out);
/*
 * The full Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=<64 hex>"). The intermediate strings are built
 * in `out` past its entry length, so out->cap may end up larger than the
 * result needs; reusing one buffer across calls makes signing allocation-free.
 */
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

/* Marks the cache empty (and wipes any key it held). */
void dyn_sigv4_key_cache_init(struct dyn_sigv4_key_cache *cache);
/*
 * As dyn_sigv4_authorization, using and refreshing `cache` (may be NULL).
 * The key is re-derived when the date, region, service or secret fingerprint
 * differ from the cached ones. A region of 64+ bytes or a service of 32+ bytes
 * does not fit: such requests are signed correctly but leave the cache empty.
 * Not thread-safe for one cache; use one cache per thread or signer.
 */
int dyn_sigv4_authorization_cached(const struct dyn_sigv4_input *in, struct dyn_sigv4_key_cache *cache,
                                   struct dyn_buf *out);
/*
 * As dyn_sigv4_authorization_cached, with the secret's fingerprint (the
 * dyn_sha256 of in->secret_key) supplied by a caller that knows it without
 * hashing again, e.g. the Lua signer, which remembers the immutable string it
 * last hashed. secret_fp NULL means "compute it". A wrong fingerprint makes
 * the cache serve a key derived from another secret.
 */
int dyn_sigv4_authorization_cached_fp(const struct dyn_sigv4_input *in, struct dyn_sigv4_key_cache *cache,
                                      const unsigned char secret_fp[32], struct dyn_buf *out);

#ifdef __cplusplus
}
#endif
#endif
