/*
 * dynamo/crypto.h - SHA-256, HMAC-SHA-256 and CRC-32.
 *
 * crypto.c is the only file that includes OpenSSL. CRC-32 (IEEE, the zlib
 * polynomial) is computed here too, for DynamoDB's x-amz-crc32 header.
 *
 * Every function is safe to call from several threads at once: the SHA-256
 * implementation is fetched once per process and each thread reuses its own
 * digest context (freed when the thread exits). Memory comes from OpenSSL's
 * own allocator, never from a dyn_allocator; DYN_ENOMEM means it failed.
 */
#ifndef DYNAMO_CRYPTO_H
#define DYNAMO_CRYPTO_H

#include "dynamo/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DYN_SHA256_LEN 32

/* out receives 32 bytes. Returns DYN_OK or DYN_ENOMEM. */
int dyn_sha256(const void *data, size_t n, unsigned char out[DYN_SHA256_LEN]);
/*
 * HMAC-SHA-256 (RFC 2104) of n bytes of data under key_len bytes of key (any
 * length; keys over 64 bytes are hashed first). Returns DYN_OK or DYN_ENOMEM.
 * Key-derived blocks are wiped from the stack before returning.
 */
int dyn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
                    unsigned char out[DYN_SHA256_LEN]);
/*
 * As dyn_hmac_sha256 with the key k1 || k2, without building the
 * concatenation: SigV4's first key is "AWS4" || secret, and the secret must
 * not be copied into scratch memory.
 */
int dyn_hmac_sha256_key2(const void *k1, size_t k1_len, const void *k2, size_t k2_len, const void *data,
                         size_t n, unsigned char out[DYN_SHA256_LEN]);

/* Zeroes n bytes in a way the compiler may not optimise away. */
void dyn_secure_zero(void *p, size_t n);

/*
 * Standard CRC-32 of n bytes, continuing from crc (start with 0): the zlib
 * crc32() convention, so dyn_crc32(dyn_crc32(0, a, na), b, nb) is the CRC of
 * a || b. crc32("123456789") = 0xCBF43926.
 */
uint32_t dyn_crc32(uint32_t crc, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
