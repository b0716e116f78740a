/*
 * libFuzzer target for dynamo/expr.h: the path parser, the compiler and
 * combiner, templates and the request renderer.
 *
 * The input is a small program: each step reads an opcode byte and builds a
 * condition, projection or update from fuzzed paths and operands, or
 * combines / negates the expressions built so far. The last expressions go
 * into the five request slots with fuzzed value shapes and are rendered.
 * Besides memory errors (ASan/UBSan), it checks properties:
 *  - a normalized path normalizes to itself;
 *  - a render that succeeds uses every placeholder it reports and reports
 *    every placeholder it uses, keeps each string within 4096 bytes, and
 *    gives the same bytes when repeated.
 *
 *   cmake -S . -B build-fuzz -DDYN_FUZZ=ON -DCMAKE_C_COMPILER=clang && cmake --build build-fuzz --target fuzz_expr
 *   build-fuzz/fuzz_expr -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynamo/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STACK 8

struct reader {
    const uint8_t *p;
    size_t n;
    char text[8][64]; /* strings mapped to the path alphabet */
    int next;
};

static uint8_t s_byte(struct reader *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

/* A short string: raw bytes, or (when the length byte's top bit is set)
 * bytes mapped onto characters that make valid paths likely. */
static dyn_slice s_str(struct reader *r) {
    static const char alphabet[] = "abcab.[]0123\\x yz";
    uint8_t head = s_byte(r);
    size_t len = head & 31u, i;
    char *buf;
    if (len > r->n) len = r->n;
    if (!(head & 0x80u)) {
        dyn_slice s = dyn_slice_make((const char *)r->p, len);
        r->p += len;
        r->n -= len;
        return s;
    }
    buf = r->text[r->next++ & 7];
    for (i = 0; i < len; i++) buf[i] = alphabet[r->p[i] % (sizeof alphabet - 1)];
    r->p += len;
    r->n -= len;
    return dyn_slice_make(buf, len);
}

static void s_check_normalize(dyn_slice path) {
    struct dyn_buf a = DYN_BUF_INIT(dyn_default_allocator()), b = DYN_BUF_INIT(dyn_default_allocator());
    if (dyn_expr_path_normalize(path, &a, NULL) == DYN_OK) {
        if (dyn_expr_path_normalize(dyn_buf_slice(&a), &b, NULL) != DYN_OK) abort();
        if (a.len != b.len || memcmp(a.ptr, b.ptr, a.len) != 0) abort();
    }
    dyn_buf_free(&a);
    dyn_buf_free(&b);
}

static struct dyn_expr *s_build(struct reader *r, uint8_t op) {
    struct dyn_expr_operand ops[4];
    struct dyn_expr_update_item items[4];
    dyn_slice paths[4];
    struct dyn_expr *e = NULL;
    size_t n, i;
    switch (op % 3) {
    case 0: {
        int code = s_byte(r) % DYN_EXPR_OP_COUNT, size_of = s_byte(r) & 1;
        dyn_slice path = s_str(r);
        n = s_byte(r) % 4;
        for (i = 0; i < n; i++) {
            ops[i].literal = s_byte(r) & 1;
            ops[i].text = s_str(r);
        }
        s_check_normalize(path);
        (void)dyn_expr_condition_new(NULL, code, path, size_of, ops, n, &e, NULL);
        break;
    }
    case 1:
        n = 1 + s_byte(r) % 4;
        for (i = 0; i < n; i++) paths[i] = s_str(r);
        (void)dyn_expr_projection_new(NULL, paths, n, &e, NULL);
        break;
    default:
        n = 1 + s_byte(r) % 4;
        for (i = 0; i < n; i++) {
            items[i].action = s_byte(r) % DYN_EXPR_ACTION_COUNT;
            items[i].path = s_str(r);
            items[i].value.literal = s_byte(r) & 1;
            items[i].value.text = s_str(r);
        }
        (void)dyn_expr_update_new(NULL, items, n, &e, NULL);
        break;
    }
    return e;
}

/* Every placeholder in the rendered strings is reported, and every reported one is used. */
static void s_check_render(const struct dyn_expr_renderer *r) {
    size_t i, j, k;
    char *name_used = calloc(r->n_names + 1, 1), *value_used = calloc(r->n_values + 1, 1);
    for (i = 0; i < DYN_EXPR_SLOTS; i++) {
        const char *t = r->text.ptr + r->off[i];
        size_t len = r->len[i];
        if (len > DYN_EXPR_MAX_LEN) abort();
        for (j = 0; j < len; j++) {
            uint32_t seq;
            int32_t elem = -1;
            if (t[j] != '#' && t[j] != ':') continue;
            if (j + 3 >= len) abort();
            for (k = 1; k <= 3; k++)
                if (t[j + k] < 'a' || t[j + k] > 'z') abort();
            seq = (uint32_t)(t[j + 1] - 'a') * 676u + (uint32_t)(t[j + 2] - 'a') * 26u + (uint32_t)(t[j + 3] - 'a');
            if (t[j] == '#') {
                if (seq >= r->n_names) abort();
                name_used[seq] = 1;
                j += 3;
                continue;
            }
            k = j + 4;
            if (k < len && t[k] == '_') {
                elem = 0;
                for (k++; k < len && t[k] >= '0' && t[k] <= '9'; k++) elem = elem * 10 + (t[k] - '0');
            }
            for (k = 0; k < r->n_values; k++)
                if (r->values[k].seq == seq && r->values[k].elem == elem) break;
            if (k == r->n_values) abort();
            value_used[k] = 1;
            j += 3;
        }
    }
    for (i = 0; i < r->n_names; i++)
        if (!name_used[i]) abort();
    for (i = 0; i < r->n_values; i++)
        if (!value_used[i]) abort();
    free(name_used);
    free(value_used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct reader r;
    struct dyn_expr *stack[STACK] = {NULL};
    const struct dyn_expr *slots[DYN_EXPR_SLOTS] = {NULL};
    struct dyn_expr_value_info infos[DYN_EXPR_SLOTS][32];
    const struct dyn_expr_value_info *ip[DYN_EXPR_SLOTS];
    struct dyn_expr_renderer rd;
    struct dyn_buf tmpl = DYN_BUF_INIT(dyn_default_allocator()), first = DYN_BUF_INIT(dyn_default_allocator());
    int top = 0, steps, s, i;

    memset(&r, 0, sizeof r);
    r.p = data;
    r.n = size;
    for (steps = 0; steps < 16 && r.n; steps++) {
        uint8_t op = s_byte(&r);
        struct dyn_expr *e = NULL;
        if (op < 160) {
            e = s_build(&r, op);
        } else if (op < 220 && top >= 2) {
            (void)dyn_expr_combine(op & 1 ? DYN_EXPR_OR : DYN_EXPR_AND, stack[top - 2], stack[top - 1], &e, NULL, NULL);
        } else if (top >= 1) {
            (void)dyn_expr_negate(stack[top - 1], &e, NULL);
        }
        if (!e) continue;
        if (dyn_expr_template(e, &tmpl) != DYN_OK) abort();
        dyn_buf_reset(&tmpl);
        if (top == STACK) {
            dyn_expr_free(stack[0]);
            memmove(stack, stack + 1, (STACK - 1) * sizeof *stack);
            top--;
        }
        stack[top++] = e;
    }

    /* slots: each takes the expression the next byte points at (or none) */
    for (s = 0; s < DYN_EXPR_SLOTS; s++) {
        uint8_t pick = s_byte(&r);
        slots[s] = top && pick < 200 ? stack[pick % top] : NULL;
        if (slots[s] && dyn_expr_value_count(slots[s]) > 32) slots[s] = NULL;
        for (i = 0; i < 32; i++) {
            uint8_t t = s_byte(&r);
            infos[s][i].type = t % 6;
            infos[s][i].count = (size_t)(t >> 3) * 4u;
            infos[s][i].size = t;
            infos[s][i].type_name = NULL;
        }
        ip[s] = infos[s];
    }
    dyn_expr_renderer_init(&rd, NULL);
    if (dyn_expr_render(&rd, slots, ip) == DYN_OK) {
        s_check_render(&rd);
        (void)dyn_buf_append(&first, rd.text.ptr, rd.text.len);
        if (dyn_expr_render(&rd, slots, ip) != DYN_OK) abort();
        if (rd.text.len != first.len || memcmp(rd.text.ptr, first.ptr, first.len) != 0) abort();
    }
    dyn_expr_renderer_free(&rd);
    dyn_buf_free(&tmpl);
    dyn_buf_free(&first);
    for (i = 0; i < top; i++) dyn_expr_free(stack[i]);
    return 0;
}
