/*
 * libFuzzer target for what the batch engine reads from the network: the
 * scanner's value skippers (dynamo/json.h), key identities from item JSON
 * (dynamo/key.h), and whole BatchWriteItem / BatchGetItem answers fed to a
 * batch (dynamo/batch.h).
 *
 * Besides memory errors (ASan/UBSan), it checks properties:
 *  - where the validating skipper accepts an object or array, the extent
 *    finder ends at the same byte; neither ever ends past the input;
 *  - the identity of a key read in one pass with the object's extent equals
 *    the one read from the object alone;
 *  - whatever an answer holds, a batch ends with every slot done or not
 *    done with a cause, and never sends more than its attempts allow.
 *
 *   CC=clang cmake -S . -B build-fuzz -DDYN_FUZZ=ON && cmake --build build-fuzz --target fuzz_batch
 *   build-fuzz/fuzz_batch -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynamo/batch.h"
#include "dynamo/json.h"
#include "dynamo/key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_check(int ok) {
    if (!ok) abort(); /* a broken property: libFuzzer keeps the input */
}

static void s_fuzz_skippers(dyn_slice text) {
    struct dyn_json_reader a, b;
    int ra, rb;
    dyn_json_reader_init(&a, text);
    dyn_json_reader_init(&b, text);
    ra = dyn_json_scan_skip(&a);
    rb = dyn_json_scan_extent(&b);
    s_check(a.p <= text.ptr + text.len && b.p <= text.ptr + text.len);
    if (ra == DYN_OK && text.len && (text.ptr[0] == '{' || text.ptr[0] == '[')) s_check(rb == DYN_OK && a.p == b.p);
}

static void s_fuzz_key(dyn_slice text) {
    struct dyn_buf x = DYN_BUF_INIT(dyn_default_allocator()), y = DYN_BUF_INIT(dyn_default_allocator());
    struct dyn_json_reader r;
    int rx, ry;
    dyn_json_reader_init(&r, text);
    rx = dyn_key_id_scan(&r, DYN_SLICE_LIT("pk"), DYN_SLICE_LIT("sk"), &x);
    ry = dyn_key_id_from_item(text, DYN_SLICE_LIT("pk"), DYN_SLICE_LIT("sk"), &y);
    s_check(r.p <= text.ptr + text.len);
    if (rx == DYN_OK) {
        s_check(ry == DYN_OK && x.len == y.len && memcmp(x.ptr, y.ptr, x.len) == 0);
    } else {
        s_check(x.len == 0 && r.p == text.ptr);
    }
    dyn_buf_free(&x);
    dyn_buf_free(&y);
}

/* Feeds `answer` to every request of a small batch (reads or writes) until it ends. */
static void s_fuzz_answer(dyn_slice answer, int get) {
    static const char *const keys[] = {"{\"pk\":{\"S\":\"a\"}}", "{\"pk\":{\"S\":\"b\"}}", "{\"pk\":{\"N\":\"1\"}}"};
    static const char *const ids[] = {"Sa", "Sb", "N1"};
    struct dyn_call_config cfg;
    struct dyn_batch_options o;
    struct dyn_batch *b = NULL;
    struct dyn_op *op;
    int sends = 0, i;
    int64_t now = 0; /* a clock of its own: a backoff passes at once */
    size_t k;
    if (dyn_call_config_init(&cfg, NULL, "http://127.0.0.1:1", "us-east-1") != DYN_OK) return;
    dyn_call_config_set_credentials(&cfg, DYN_SLICE_LIT("AKID"), DYN_SLICE_LIT("secret"), DYN_SLICE_EMPTY);
    cfg.retry.max_attempts = 3;
    dyn_batch_options_default(&o, get ? DYN_BATCH_GET : DYN_BATCH_WRITE);
    o.table = DYN_SLICE_LIT("t");
    o.pk = DYN_SLICE_LIT("pk");
    if (dyn_batch_new(&cfg, &o, &b) != DYN_OK) goto cleanup;
    for (i = 0; i < 3; i++) {
        dyn_slice id = dyn_slice_cstr(ids[i]), key = dyn_slice_cstr(keys[i]);
        if (get) dyn_batch_get(b, id, key);
        else if (i == 1) dyn_batch_delete(b, id, key);
        else dyn_batch_put(b, id, key, NULL);
    }
    op = dyn_batch_op(b);
    for (;;) {
        struct dyn_op_step step;
        struct dyn_step cs;
        s_check(op->next(op, 1700000000000, now, &step) == DYN_OK);
        if (step.kind == DYN_OP_DONE) break;
        s_check(step.kind != DYN_OP_IDLE); /* one request at a time: nothing is in flight here */
        if (step.kind == DYN_OP_WAIT) {
            now += step.wait_ms;
            continue;
        }
        s_check(++sends <= 3 * 3);
        s_check(dyn_call_next(step.call, 1700000000000, &cs) == DYN_OK && cs.kind == DYN_STEP_SEND);
        s_check(dyn_call_feed(step.call, 200, NULL, 0, answer) == DYN_OK);
        s_check(op->feed(op, step.call, now) == DYN_OK);
    }
    for (k = 0; k < dyn_batch_slots(b); k++) {
        struct dyn_batch_slot_info info;
        s_check(dyn_batch_slot(b, k, &info) == DYN_OK);
        s_check(info.done || info.cause != NULL);
        s_check(info.attempts <= 3);
        if (info.found) s_check(info.item.len > 0 && info.item.ptr[0] == '{');
    }
cleanup:
    dyn_batch_free(b);
    dyn_call_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The first byte picks the parser, so each gets inputs shaped for it. */
    dyn_slice text;
    if (size == 0) return 0;
    text = dyn_slice_make((const char *)data + 1, size - 1);
    switch (data[0] % 4) {
    case 0: s_fuzz_skippers(text); break;
    case 1: s_fuzz_key(text); break;
    case 2: s_fuzz_answer(text, 0); break;
    default: s_fuzz_answer(text, 1); break;
    }
    return 0;
}
