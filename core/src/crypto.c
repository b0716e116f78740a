/*
 * SHA-256 and HMAC-SHA-256 over OpenSSL's EVP interface, and a table-driven
 * CRC-32; see dynamo/crypto.h.
 *
 * Speed matters here: a request signature hashes the payload, the canonical
 * request and the string to sign. EVP_sha256() makes OpenSSL 3 look the
 * algorithm up on every init and EVP_Digest() allocates a context per call,
 * so the algorithm is fetched once per process and each thread keeps one
 * EVP_MD_CTX (in a pthread key, freed by the key's destructor). HMAC is
 * built directly on that context, which avoids EVP_MAC's per-call setup.
 */
#include "dynamo/crypto.h"

#include <openssl/evp.h>
#include <pthread.h>

#define S_BLOCK 64 /* SHA-256 block size, the HMAC pad length */

static pthread_once_t s_sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *s_md;          /* NULL when the fetch failed: fall back to EVP_sha256() */
static pthread_key_t s_ctx_key;
static int s_ctx_key_ok;      /* 0 when pthread_key_create failed: one context per call */

static void s_ctx_destroy(void *ctx) { EVP_MD_CTX_free(ctx); }

static void s_sha_init(void) {
    s_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    s_ctx_key_ok = pthread_key_create(&s_ctx_key, s_ctx_destroy) == 0;
}

/* This thread's digest context; *owned says the caller must free it. */
static EVP_MD_CTX *s_ctx_acquire(int *owned) {
    EVP_MD_CTX *ctx = NULL;
    *owned = 0;
    pthread_once(&s_sha_once, s_sha_init);
    if (s_ctx_key_ok) {
        ctx = pthread_getspecific(s_ctx_key);
        if (ctx) return ctx;
        ctx = EVP_MD_CTX_new();
        if (ctx && pthread_setspecific(s_ctx_key, ctx) == 0) return ctx;
    } else {
        ctx = EVP_MD_CTX_new();
    }
    *owned = ctx != NULL;
    return ctx;
}

static void s_ctx_release(EVP_MD_CTX *ctx, int owned) {
    if (owned) EVP_MD_CTX_free(ctx);
}

/*
 * SHA-256 of a || b. Returns 1 on success, as OpenSSL does. The context is
 * not reset afterwards (that measurably slows signing): what lingers is the
 * state of the last hash, which the next init clears and frees. In a
 * signature that last hash is keyed by the derived signing key, never by the
 * secret itself, whose use is always followed by further key derivation.
 */
static int s_digest2(EVP_MD_CTX *ctx, const void *a, size_t an, const void *b, size_t bn,
                     unsigned char out[DYN_SHA256_LEN]) {
    unsigned int olen = 0;
    return EVP_DigestInit_ex2(ctx, s_md ? s_md : EVP_sha256(), NULL) && (an == 0 || EVP_DigestUpdate(ctx, a, an)) &&
           (bn == 0 || EVP_DigestUpdate(ctx, b, bn)) && EVP_DigestFinal_ex(ctx, out, &olen) &&
           olen == DYN_SHA256_LEN;
}

int dyn_sha256(const void *data, size_t n, unsigned char out[DYN_SHA256_LEN]) {
    int owned;
    int rc = DYN_ENOMEM;
    EVP_MD_CTX *ctx = s_ctx_acquire(&owned);
    if (!ctx) return DYN_ENOMEM;
    if (s_digest2(ctx, data, n, NULL, 0, out)) rc = DYN_OK;
    s_ctx_release(ctx, owned);
    return rc;
}

int dyn_hmac_sha256_key2(const void *k1, size_t k1_len, const void *k2, size_t k2_len, const void *data,
                         size_t n, unsigned char out[DYN_SHA256_LEN]) {
    unsigned char pad[S_BLOCK], inner[DYN_SHA256_LEN];
    int owned = 0, rc = DYN_ENOMEM;
    size_t i;
    EVP_MD_CTX *ctx = s_ctx_acquire(&owned);
    if (!ctx) return DYN_ENOMEM;

    memset(pad, 0, sizeof pad);
    if (k1_len > S_BLOCK || k2_len > S_BLOCK - k1_len) {
        /* RFC 2104: a key longer than the block is replaced by its hash. */
        if (!s_digest2(ctx, k1, k1_len, k2, k2_len, pad)) goto cleanup;
    } else {
        if (k1_len) memcpy(pad, k1, k1_len);
        if (k2_len) memcpy(pad + k1_len, k2, k2_len);
    }
    for (i = 0; i < S_BLOCK; i++) pad[i] ^= 0x36;
    if (!s_digest2(ctx, pad, S_BLOCK, data, n, inner)) goto cleanup;
    for (i = 0; i < S_BLOCK; i++) pad[i] ^= 0x36 ^ 0x5c;
    if (!s_digest2(ctx, pad, S_BLOCK, inner, sizeof inner, out)) goto cleanup;
    rc = DYN_OK;

cleanup:
    dyn_secure_zero(pad, sizeof pad);
    dyn_secure_zero(inner, sizeof inner);
    s_ctx_release(ctx, owned);
    return rc;
}

int dyn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
                    unsigned char out[DYN_SHA256_LEN]) {
    return dyn_hmac_sha256_key2(key, key_len, NULL, 0, data, n, out);
}

/*
 * memset called through a volatile pointer cannot be proven dead, so the
 * store survives optimisation; it is also much faster than OPENSSL_cleanse's
 * byte loop on the short blocks wiped on every signature.
 */
static void *(*volatile s_memset)(void *, int, size_t) = memset;

void dyn_secure_zero(void *p, size_t n) {
    if (p && n) s_memset(p, 0, n);
}

/*
 * CRC-32, reflected polynomial 0xEDB88320, slice-by-8: table k maps a byte to
 * its contribution k bytes further on, so eight table lookups consume eight
 * input bytes per step instead of one.
 */
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;
static uint32_t s_crc_table[8][256];

static void s_crc_init(void) {
    uint32_t i, c;
    int k;
    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        s_crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            c = s_crc_table[k - 1][i];
            s_crc_table[k][i] = (c >> 8) ^ s_crc_table[0][c & 0xff];
        }
    }
}

/* Little-endian load that is alignment- and endian-neutral. */
static uint32_t s_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t dyn_crc32(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    const uint32_t(*t)[256] = (const uint32_t(*)[256])s_crc_table;
    uint32_t a, b;
    if (n == 0) return crc;
    pthread_once(&s_crc_once, s_crc_init);
    crc = ~crc;
    while (n >= 8) {
        a = crc ^ s_le32(p);
        b = s_le32(p + 4);
        crc = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^
              t[3][b & 0xff] ^ t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}
