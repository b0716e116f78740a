/* SHA-256 (FIPS 180 examples), HMAC-SHA-256 (RFC 4231) and CRC-32. */
#include "dynamo/buf.h"
#include "dynamo/crypto.h"
#include "testing.h"

#include <pthread.h>
#include <stdlib.h>

/* Lowercase hex of a digest, for comparing with published vectors. */
static void hex32(const unsigned char d[DYN_SHA256_LEN], char out[65]) {
    static const char digits[] = "0123456789abcdef";
    int i;
    for (i = 0; i < DYN_SHA256_LEN; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[64] = '\0';
}

static void check_sha256(const void *data, size_t n, const char *want) {
    unsigned char d[DYN_SHA256_LEN];
    char hex[65];
    CHECK(dyn_sha256(data, n, d) == DYN_OK);
    hex32(d, hex);
    CHECK_EQ_STR(hex, want);
}

TEST(sha256_vectors) {
    char *million = malloc(1000000);
    check_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha256(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(million != NULL);
    if (million) {
        memset(million, 'a', 1000000);
        check_sha256(million, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
    free(million);
}

static void check_hmac(const unsigned char *key, size_t klen, const void *data, size_t n, const char *want) {
    unsigned char d[DYN_SHA256_LEN];
    char hex[65];
    CHECK(dyn_hmac_sha256(key, klen, data, n, d) == DYN_OK);
    hex32(d, hex);
    CHECK_EQ_STR(hex, want);
}

TEST(hmac_rfc4231) {
    unsigned char key[131], data[50];
    size_t i;
    /* 1: 20 bytes of 0x0b */
    memset(key, 0x0b, 20);
    check_hmac(key, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* 2: key shorter than the output */
    check_hmac((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28,
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* 3: 20 x 0xaa, 50 x 0xdd */
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    check_hmac(key, 20, data, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    /* 4: key 0x01..0x19, 50 x 0xcd */
    for (i = 0; i < 25; i++) key[i] = (unsigned char)(i + 1);
    memset(data, 0xcd, 50);
    check_hmac(key, 25, data, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    /* 6 and 7: 131-byte key, hashed first */
    memset(key, 0xaa, 131);
    check_hmac(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    check_hmac(key, 131,
               "This is a test using a larger than block-size key and a larger than block-size data. The key "
               "needs to be hashed before being used by the HMAC algorithm.",
               152, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* A split key must give the HMAC of the joined key, on both sides of 64 bytes. */
TEST(hmac_key2_matches_joined_key) {
    unsigned char key[200], a[DYN_SHA256_LEN], b[DYN_SHA256_LEN];
    size_t total, split, i;
    for (i = 0; i < sizeof key; i++) key[i] = (unsigned char)(i * 7 + 3);
    for (total = 0; total <= 140; total += 4) {
        for (split = 0; split <= total; split += (total > 8 ? total / 4 : 1)) {
            CHECK(dyn_hmac_sha256(key, total, "msg", 3, a) == DYN_OK);
            CHECK(dyn_hmac_sha256_key2(key, split, key + split, total - split, "msg", 3, b) == DYN_OK);
            CHECK(memcmp(a, b, sizeof a) == 0);
        }
    }
    /* 64 exactly is not hashed, 65 is: the two must differ from each other */
    CHECK(dyn_hmac_sha256(key, 64, "m", 1, a) == DYN_OK);
    CHECK(dyn_hmac_sha256(key, 65, "m", 1, b) == DYN_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

TEST(secure_zero) {
    unsigned char b[16];
    size_t i;
    int all_zero = 1;
    memset(b, 0x5a, sizeof b);
    dyn_secure_zero(b, sizeof b);
    for (i = 0; i < sizeof b; i++) all_zero &= b[i] == 0;
    CHECK(all_zero);
    dyn_secure_zero(NULL, 4); /* allowed no-op */
}

/* Bit-at-a-time reference CRC continuing from crc, written independently of the table code. */
static uint32_t crc_ref_from(uint32_t crc, const unsigned char *p, size_t n) {
    uint32_t c = ~crc;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static uint32_t crc_ref(const unsigned char *p, size_t n) { return crc_ref_from(0, p, n); }

/* Bytes that look random enough to catch a wrong table entry or constant. */
static void crc_fill(unsigned char *p, size_t n, uint32_t seed) {
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

TEST(crc32_vectors) {
    CHECK_EQ_INT(dyn_crc32(0, "123456789", 9), 0xCBF43926u);
    CHECK_EQ_INT(dyn_crc32(0, "", 0), 0);
    CHECK_EQ_INT(dyn_crc32(0, NULL, 0), 0);
    CHECK_EQ_INT(dyn_crc32(0, "a", 1), 0xE8B7BE43u);
    CHECK_EQ_INT(dyn_crc32(0, "The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
    CHECK_EQ_INT(dyn_crc32(0, "{}", 2), crc_ref((const unsigned char *)"{}", 2));
}

TEST(crc32_incremental_and_alignment) {
    unsigned char buf[1031];
    size_t i, split, off, len;
    uint32_t whole;
    for (i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)((i * 2654435761u) >> 13);
    /* every offset and length mix exercises the 16-byte loop, the folding path and the tail */
    for (off = 0; off < 9; off++)
        for (len = 0; len + off <= sizeof buf; len += 37) CHECK_EQ_INT(dyn_crc32(0, buf + off, len), crc_ref(buf + off, len));
    whole = dyn_crc32(0, buf, sizeof buf);
    CHECK_EQ_INT(whole, crc_ref(buf, sizeof buf));
    for (split = 0; split <= sizeof buf; split += 13)
        CHECK_EQ_INT(dyn_crc32(dyn_crc32(0, buf, split), buf + split, sizeof buf - split), whole);
    /* three pieces, one of them empty */
    CHECK_EQ_INT(dyn_crc32(dyn_crc32(dyn_crc32(0, buf, 100), buf + 100, 0), buf + 100, sizeof buf - 100), whole);
}

/* Longer inputs take the folding path where the CPU has one; the values come from zlib. */
TEST(crc32_long_vectors) {
    size_t n = 1000000;
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    if (!p) return;
    memset(p, 'a', n);
    CHECK_EQ_INT(dyn_crc32(0, p, n), 0xDC25BFBCu);
    memset(p, 0, 4096);
    CHECK_EQ_INT(dyn_crc32(0, p, 4096), 0xC71C0011u);
    memset(p, 0xff, 4096);
    CHECK_EQ_INT(dyn_crc32(0, p, 4096), 0xF154670Au);
    crc_fill(p, n, 7);
    CHECK_EQ_INT(dyn_crc32(0, p, n), crc_ref(p, n));
    CHECK_EQ_INT(dyn_crc32(0, p + 3, n - 3), crc_ref(p + 3, n - 3));
    free(p);
}

/*
 * Every length up to 300 (the word, 16-byte and folding loops and each tail)
 * from sixteen consecutive starts, so every alignment mod 16 whatever the
 * buffer's own, and continuing from 0 and from a running value.
 */
TEST(crc32_every_length_and_offset) {
    static const uint32_t seeds[] = {0, 0xCBF43926u, 0xFFFFFFFFu};
    unsigned char buf[300 + 16];
    size_t off, len, s;
    int bad = 0;
    crc_fill(buf, sizeof buf, 1);
    for (s = 0; s < sizeof seeds / sizeof *seeds; s++)
        for (off = 0; off < 16; off++)
            for (len = 0; len <= 300; len++)
                bad += dyn_crc32(seeds[s], buf + off, len) != crc_ref_from(seeds[s], buf + off, len);
    CHECK_EQ_INT(bad, 0);
}

/* Any cut into pieces gives the CRC of the whole, as a response read in chunks would. */
TEST(crc32_pieces_equal_whole) {
    size_t n = 70000, at, piece, split;
    unsigned char *p = malloc(n);
    uint32_t whole, c, seed = 99;
    int bad = 0;
    CHECK(p != NULL);
    if (!p) return;
    crc_fill(p, n, 3);
    whole = crc_ref(p, n);
    CHECK_EQ_INT(dyn_crc32(0, p, n), whole);
    /* pieces of 0 to 300 bytes, then of up to 5000 */
    for (c = 0, at = 0; at < n; at += piece) {
        seed = seed * 1103515245u + 12345u;
        piece = (seed >> 8) % (at < n / 2 ? 301 : 5001);
        if (piece > n - at) piece = n - at;
        c = dyn_crc32(c, p + at, piece);
    }
    CHECK_EQ_INT(c, whole);
    /* two pieces, cut at every point of a 300-byte prefix */
    for (split = 0; split <= 300; split++)
        bad += dyn_crc32(dyn_crc32(0, p, split), p + split, 300 - split) != crc_ref(p, 300);
    CHECK_EQ_INT(bad, 0);
    free(p);
}

/* Threads share the fetched algorithm but each uses its own context. */
static void *hash_worker(void *arg) {
    unsigned char d[DYN_SHA256_LEN], m[DYN_SHA256_LEN];
    char hex[65];
    int i, *bad = arg;
    for (i = 0; i < 2000; i++) {
        if (dyn_sha256("abc", 3, d) != DYN_OK) (*bad)++;
        hex32(d, hex);
        if (strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != 0) (*bad)++;
        if (dyn_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, m) != DYN_OK) (*bad)++;
        hex32(m, hex);
        if (strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") != 0) (*bad)++;
    }
    return NULL;
}

TEST(threads_hash_concurrently) {
    pthread_t t[4];
    int bad[4] = {0, 0, 0, 0}, i, started[4];
    for (i = 0; i < 4; i++) started[i] = pthread_create(&t[i], NULL, hash_worker, &bad[i]) == 0;
    for (i = 0; i < 4; i++) {
        CHECK(started[i]);
        if (started[i]) pthread_join(t[i], NULL);
        CHECK_EQ_INT(bad[i], 0);
    }
}

int main(void) {
    RUN(sha256_vectors);
    RUN(hmac_rfc4231);
    RUN(hmac_key2_matches_joined_key);
    RUN(secure_zero);
    RUN(crc32_vectors);
    RUN(crc32_incremental_and_alignment);
    RUN(crc32_long_vectors);
    RUN(crc32_every_length_and_offset);
    RUN(crc32_pieces_equal_whole);
    RUN(threads_hash_concurrently);
    return testing_done();
}
