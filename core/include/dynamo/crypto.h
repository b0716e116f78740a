/*
 * dynamo/crypto.h - SHA-256, HMAC-SHA-256 and CRC-32.
 *
 * crypto.c is the only file that includes OpenSSL. CRC-32 (IEEE, the zlib
 * polynomial) is computed here too, for DynamoDB's x-amz-crc32 header.
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
int dyn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
                    unsigned char out[DYN_SHA256_LEN]);

/* Standard CRC-32 of n bytes, continuing from crc (start with 0). */
uint32_t dyn_crc32(uint32_t crc, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
