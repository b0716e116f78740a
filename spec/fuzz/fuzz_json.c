/*
 * libFuzzer target for what reads bytes from the network: the JSON pull
 * reader (dynamo/json.h) and the number and base64 codecs (dynamo/av.h).
 *
 * Besides memory errors (ASan/UBSan), it checks properties:
 *  - the reader ends every document with DYN_JSON_END or DYN_EJSON, never
 *    loops, and an error position lies inside the input;
 *  - a string token that is not escaped is valid UTF-8, and unescaping an
 *    escaped one gives valid UTF-8;
 *  - canonical number text is a fixed point (canon(canon(x)) == canon(x)),
 *    and classifying it as a float or integer gives the same text back;
 *  - base64 that decodes re-encodes to the same text (one text per bytes);
 *  - the inlined fast string scanner agrees with the full one: same status,
 *    token, end position and error.
 *
 *   CC=clang cmake -S . -B build-fuzz -DDYN_FUZZ=ON && cmake --build build-fuzz --target fuzz_json
 *   build-fuzz/fuzz_json -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynamo/av.h"
#include "dynamo/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_check(int ok) {
    if (!ok) abort(); /* a broken property: libFuzzer keeps the input */
}

static void s_fuzz_reader(dyn_slice text) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    struct dyn_buf tmp = DYN_BUF_INIT(dyn_default_allocator());
    size_t steps = 0;
    dyn_json_reader_init(&r, text);
    for (;;) {
        int rc = dyn_json_next(&r, &t);
        s_check(++steps <= text.len + 2); /* every token consumes input */
        if (rc != DYN_OK) {
            s_check(rc == DYN_EJSON && r.err != NULL && r.err_pos <= text.len);
            break;
        }
        if (t.type == DYN_JSON_END) break;
        if (t.type == DYN_JSON_STRING || t.type == DYN_JSON_KEY) {
            if (t.escaped) {
                dyn_buf_reset(&tmp);
                s_check(dyn_json_unescape(t.text, &tmp) == DYN_OK);
                s_check(dyn_json_utf8_valid(dyn_buf_slice(&tmp), NULL) == 1);
            } else {
                s_check(dyn_json_utf8_valid(t.text, NULL) == 1);
            }
        }
    }
    dyn_buf_free(&tmp);
}

/* Both string scanners from the same quote: every outcome must be equal. */
static void s_fuzz_scan_string(dyn_slice text) {
    struct dyn_json_reader a, b;
    struct dyn_json_token ta, tb;
    int ra, rb;
    /* an exact-size copy, so ASan sees any read past the end */
    char *copy = malloc(text.len + 1);
    if (!copy) return;
    copy[0] = '"';
    if (text.len) memcpy(copy + 1, text.ptr, text.len);
    dyn_json_reader_init(&a, dyn_slice_make(copy, text.len + 1));
    dyn_json_reader_init(&b, dyn_slice_make(copy, text.len + 1));
    ra = dyn_json_scan_string(&a, &ta);
    rb = dyn_json_scan_string_fast(&b, &tb);
    s_check(ra == rb && a.p == b.p);
    if (ra == DYN_OK) {
        s_check(ta.text.ptr == tb.text.ptr && ta.text.len == tb.text.len && ta.escaped == tb.escaped);
    } else {
        s_check(a.err_pos == b.err_pos && strcmp(a.err, b.err) == 0);
    }
    free(copy);
}

static void s_fuzz_number(dyn_slice text) {
    char canon[DYN_AV_NUM_MAX], again[DYN_AV_NUM_MAX], back[DYN_AV_NUM_MAX];
    size_t len, len2, len3;
    int64_t i;
    double d;
    if (dyn_av_number_canon(text, canon, &len, NULL) != DYN_OK) return;
    s_check(dyn_av_number_canon(dyn_slice_make(canon, len), again, &len2, NULL) == DYN_OK);
    s_check(len == len2 && memcmp(canon, again, len) == 0);
    switch (dyn_av_number_classify(dyn_slice_make(canon, len), &i, &d)) {
    case DYN_AV_INT:
        len3 = dyn_av_format_int(i, back);
        s_check(len3 == len && memcmp(back, canon, len) == 0);
        break;
    case DYN_AV_FLOAT:
        s_check(dyn_av_number_from_double(d, back, &len3, NULL) == DYN_OK);
        s_check(len3 == len && memcmp(back, canon, len) == 0);
        break;
    default: break;
    }
}

static void s_fuzz_base64(dyn_slice text) {
    struct dyn_buf bytes = DYN_BUF_INIT(dyn_default_allocator());
    struct dyn_buf again = DYN_BUF_INIT(dyn_default_allocator());
    if (dyn_base64_decode(text, &bytes) == DYN_OK) {
        s_check(dyn_base64_encode(dyn_buf_slice(&bytes), &again) == DYN_OK);
        s_check(again.len == text.len && (text.len == 0 || memcmp(again.ptr, text.ptr, text.len) == 0));
    }
    dyn_buf_free(&bytes);
    dyn_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The first byte picks the codec, so each gets inputs shaped for it. */
    dyn_slice text;
    struct dyn_buf out = DYN_BUF_INIT(dyn_default_allocator());
    if (size == 0) return 0;
    text = dyn_slice_make((const char *)data + 1, size - 1);
    switch (data[0] % 5) {
    case 0: s_fuzz_reader(text); break;
    case 1: s_fuzz_number(text); break;
    case 2: s_fuzz_base64(text); break;
    case 4: s_fuzz_scan_string(text); break;
    default:
        /* error documents: the lookup must agree with the reader on validity */
        if (dyn_json_get_string(text, "__type", &out) == DYN_OK)
            s_check(dyn_json_utf8_valid(dyn_buf_slice(&out), NULL) == 1);
        break;
    }
    dyn_buf_free(&out);
    return 0;
}
