/* Tests for dynamo/key.h: identities from values and from AttributeValue JSON agree, exactly. */
#include "dynamo/key.h"
#include "testing.h"

static int id_of_item(const char *json, const char *pk, const char *sk, struct dyn_buf *out) {
    dyn_buf_reset(out);
    return dyn_key_id_from_item(dyn_slice_cstr(json), dyn_slice_cstr(pk), dyn_slice_cstr(sk), out);
}

TEST(layout_of_one_and_two_parts) {
    struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
    struct dyn_key_part a = {'S', DYN_SLICE_LIT("ab")}, b = {'N', DYN_SLICE_LIT("12")};
    CHECK_EQ_INT(dyn_key_id(&a, NULL, &id), DYN_OK);
    CHECK_EQ_MEM(id.ptr, id.len, "Sab", 3);
    CHECK_EQ_INT(dyn_key_id_size(&a, NULL), 3);
    dyn_buf_reset(&id);
    CHECK_EQ_INT(dyn_key_id(&a, &b, &id), DYN_OK);
    CHECK_EQ_MEM(id.ptr, id.len, "\0\0\0\3SabN12", 10);
    CHECK_EQ_INT(dyn_key_id_size(&a, &b), 10);
    a.type = 'X';
    CHECK_EQ_INT(dyn_key_id(&a, NULL, &id), DYN_EINVAL);
    dyn_buf_free(&id);
}

/* Two keys whose concatenated bytes are equal must differ: the length prefix separates them. */
TEST(no_two_keys_share_an_identity) {
    struct dyn_buf x = DYN_BUF_INIT(dyn_default_allocator()), y = DYN_BUF_INIT(dyn_default_allocator());
    struct dyn_key_part a1 = {'S', DYN_SLICE_LIT("ab")}, b1 = {'S', DYN_SLICE_LIT("c")};
    struct dyn_key_part a2 = {'S', DYN_SLICE_LIT("a")}, b2 = {'S', DYN_SLICE_LIT("bc")};
    CHECK_EQ_INT(dyn_key_id(&a1, &b1, &x), DYN_OK);
    CHECK_EQ_INT(dyn_key_id(&a2, &b2, &y), DYN_OK);
    CHECK(!(x.len == y.len && memcmp(x.ptr, y.ptr, x.len) == 0));
    dyn_buf_free(&x);
    dyn_buf_free(&y);
}

struct item_case {
    const char *json, *pk, *sk;
    int rc;
    const char *want; /* with the length prefix written as \0\0\0\N */
    size_t want_len;
};

TEST(identity_from_items) {
    static const struct item_case cases[] = {
        {"{\"pk\":{\"S\":\"a\"}}", "pk", "", DYN_OK, "Sa", 2},
        /* members in any order, others skipped (nested objects too) */
        {"{\"x\":{\"M\":{\"pk\":{\"S\":\"no\"}}},\"sk\":{\"N\":\"2\"},\"pk\":{\"S\":\"a\"}}", "pk", "sk", DYN_OK,
         "\0\0\0\2SaN2", 8},
        /* escapes are the string's value */
        {"{\"pk\":{\"S\":\"\\u00e9\\n\"}}", "pk", "", DYN_OK, "S\xc3\xa9\n", 4},
        /* numbers in canonical form: 1.50, 15E-1 and 1.5 are one key */
        {"{\"pk\":{\"N\":\"1.50\"}}", "pk", "", DYN_OK, "N1.5", 4},
        {"{\"pk\":{\"N\":\"15E-1\"}}", "pk", "", DYN_OK, "N1.5", 4},
        {"{\"pk\":{\"N\":\"-0\"}}", "pk", "", DYN_OK, "N0", 2},
        /* binaries by their bytes */
        {"{\"pk\":{\"B\":\"AAEC\"}}", "pk", "", DYN_OK, "B\0\1\2", 4},
        /* an escaped member name */
        {"{\"p\\u006b\":{\"S\":\"a\"}}", "pk", "", DYN_OK, "Sa", 2},
        {"{\"pk\":{\"S\":\"a\"}}", "pk", "sk", DYN_EINVAL, NULL, 0},
        {"{\"pk\":{\"BOOL\":true}}", "pk", "", DYN_EINVAL, NULL, 0},
        {"{\"pk\":{\"N\":\"abc\"}}", "pk", "", DYN_EINVAL, NULL, 0},
        {"{\"pk\":{\"B\":\"A\"}}", "pk", "", DYN_EINVAL, NULL, 0},
        {"{\"pk\":{\"S\":\"a\",\"N\":\"1\"}}", "pk", "", DYN_EINVAL, NULL, 0},
        {"[1]", "pk", "", DYN_EJSON, NULL, 0},
        {"{\"pk\":", "pk", "", DYN_EJSON, NULL, 0},
    };
    struct dyn_buf id = DYN_BUF_INIT(dyn_default_allocator());
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = id_of_item(cases[i].json, cases[i].pk, cases[i].sk, &id);
        if (rc != cases[i].rc) fprintf(stderr, "case %zu: %s\n", i, cases[i].json);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == DYN_OK) CHECK_EQ_MEM(id.ptr, id.len, cases[i].want, cases[i].want_len);
        else CHECK_EQ_INT(id.len, 0);
    }
    dyn_buf_free(&id);
}

TEST(values_and_items_agree) {
    struct dyn_buf a = DYN_BUF_INIT(dyn_default_allocator()), b = DYN_BUF_INIT(dyn_default_allocator());
    struct dyn_key_part p = {'S', DYN_SLICE_LIT("user#1")}, s = {'N', DYN_SLICE_LIT("42.5")};
    CHECK_EQ_INT(dyn_key_id(&p, &s, &a), DYN_OK);
    CHECK_EQ_INT(id_of_item("{\"sk\":{\"N\":\"42.50\"},\"pk\":{\"S\":\"user#1\"},\"v\":{\"L\":[]}}", "pk", "sk", &b),
                 DYN_OK);
    CHECK_EQ_MEM(a.ptr, a.len, b.ptr, b.len);
    dyn_buf_free(&a);
    dyn_buf_free(&b);
}

TEST(allocation_failures) {
    struct dyn_allocator fa = {testing_failing_alloc, NULL};
    int budget, ok = 0;
    for (budget = 0; budget < 20 && !ok; budget++) {
        struct dyn_buf id = DYN_BUF_INIT(&fa);
        int rc;
        testing_alloc_budget = budget;
        rc = dyn_key_id_from_item(DYN_SLICE_LIT("{\"sk\":{\"S\":\"\\u00e9\"},\"pk\":{\"B\":\"AAEC\"}}"),
                                  DYN_SLICE_LIT("pk"), DYN_SLICE_LIT("sk"), &id);
        CHECK(rc == DYN_OK || rc == DYN_ENOMEM);
        if (rc == DYN_OK) {
            ok = 1;
            CHECK_EQ_MEM(id.ptr, id.len, "\0\0\0\4B\0\1\2S\xc3\xa9", 11);
        } else {
            CHECK_EQ_INT(id.len, 0);
        }
        dyn_buf_free(&id);
    }
    CHECK(ok);
}

int main(void) {
    RUN(layout_of_one_and_two_parts);
    RUN(no_two_keys_share_an_identity);
    RUN(identity_from_items);
    RUN(values_and_items_agree);
    RUN(allocation_failures);
    return testing_done();
}
