/* dyn_buf: growth, NUL termination, hex and integers. */
#include "dynamo/buf.h"
#include "testing.h"

TEST(appends_and_keeps_nul) {
    struct dyn_buf b = DYN_BUF_INIT(dyn_default_allocator());
    int i;
    for (i = 0; i < 1000; i++) CHECK(dyn_buf_append_cstr(&b, "ab") == DYN_OK);
    CHECK_EQ_INT(b.len, 2000);
    CHECK(b.ptr[b.len] == '\0');
    dyn_buf_truncate(&b, 3);
    CHECK_EQ_STR(b.ptr, "aba");
    dyn_buf_free(&b);
    CHECK(b.ptr == NULL);
}

TEST(hex_and_int) {
    struct dyn_buf b = DYN_BUF_INIT(dyn_default_allocator());
    unsigned char bytes[] = {0x00, 0xab, 0xff};
    CHECK(dyn_buf_append_hex(&b, bytes, 3) == DYN_OK);
    CHECK(dyn_buf_putc(&b, ' ') == DYN_OK);
    CHECK(dyn_buf_append_int(&b, INT64_MIN) == DYN_OK);
    CHECK_EQ_STR(b.ptr, "00abff -9223372036854775808");
    dyn_buf_free(&b);
}


TEST(enomem_leaves_buffer_unchanged) {
    struct dyn_allocator a = {testing_failing_alloc, NULL};
    struct dyn_buf b = DYN_BUF_INIT(&a);
    testing_alloc_budget = 1;
    CHECK(dyn_buf_append_cstr(&b, "hello") == DYN_OK);
    CHECK(dyn_buf_reserve(&b, 1 << 20) == DYN_ENOMEM);
    CHECK_EQ_STR(b.ptr, "hello");
    dyn_buf_free(&b);
}

int main(void) {
    RUN(appends_and_keeps_nul);
    RUN(hex_and_int);
    RUN(enomem_leaves_buffer_unchanged);
    return testing_done();
}
