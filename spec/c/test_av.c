/* Unit tests for dynamo/av.h: numbers and base64. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "dynamo/av.h"
#include "testing.h"

static char s_zeros[200];

/* "0." + n zeros + tail, or head + n zeros, built at run time. */
static const char *s_pad(const char *head, int n, const char *tail) {
    static char buf[4][DYN_AV_NUM_MAX + 8];
    static int which;
    char *b = buf[which++ & 3];
    snprintf(b, DYN_AV_NUM_MAX + 8, "%s%.*s%s", head, n, s_zeros, tail);
    return b;
}

struct canon_case {
    const char *in;
    int rc;
    enum dyn_av_num_err why;
    const char *out; /* NULL: computed in the test */
};

TEST(canon_table) {
    const struct canon_case cases[] = {
        {"0", DYN_OK, DYN_AV_NUM_OK, "0"},
        {"-0", DYN_OK, DYN_AV_NUM_OK, "0"},
        {"+0.000", DYN_OK, DYN_AV_NUM_OK, "0"},
        {"-0e99", DYN_OK, DYN_AV_NUM_OK, "0"},
        {"0e999999999999999999999", DYN_OK, DYN_AV_NUM_OK, "0"},
        {"00012.3400", DYN_OK, DYN_AV_NUM_OK, "12.34"},
        {"+7", DYN_OK, DYN_AV_NUM_OK, "7"},
        {"1e2", DYN_OK, DYN_AV_NUM_OK, "100"},
        {"1.5E-3", DYN_OK, DYN_AV_NUM_OK, "0.0015"},
        {"-.5", DYN_OK, DYN_AV_NUM_OK, "-0.5"},
        {"5.", DYN_OK, DYN_AV_NUM_OK, "5"},
        {"12.5e1", DYN_OK, DYN_AV_NUM_OK, "125"},
        {"12.5e+3", DYN_OK, DYN_AV_NUM_OK, "12500"},
        {"-1234.5678e-2", DYN_OK, DYN_AV_NUM_OK, "-12.345678"},
        {"100", DYN_OK, DYN_AV_NUM_OK, "100"},
        {"0.10", DYN_OK, DYN_AV_NUM_OK, "0.1"},
        {"1000.0001000", DYN_OK, DYN_AV_NUM_OK, "1000.0001"},
        {"9223372036854775807", DYN_OK, DYN_AV_NUM_OK, "9223372036854775807"},
        {"12345678901234567890123456789012345678", DYN_OK, DYN_AV_NUM_OK,
         "12345678901234567890123456789012345678"},
        {"-1234567890123456789012345678901234567.8", DYN_OK, DYN_AV_NUM_OK,
         "-1234567890123456789012345678901234567.8"},
        {"12345678901234567890123456789012345678000000", DYN_OK, DYN_AV_NUM_OK,
         "12345678901234567890123456789012345678000000"},
        {"0.00000000000000000000000000000000000000000012345678901234567890123456789012345678", DYN_OK,
         DYN_AV_NUM_OK, "0.00000000000000000000000000000000000000000012345678901234567890123456789012345678"},
        {"123456789012345678901234567890123456789", DYN_EINVAL, DYN_AV_NUM_PRECISION, ""},
        {"1.0000000000000000000000000000000000000000000001", DYN_EINVAL, DYN_AV_NUM_PRECISION, ""},
        {"1E126", DYN_ERANGE, DYN_AV_NUM_TOO_LARGE, ""},
        {"-1E126", DYN_ERANGE, DYN_AV_NUM_TOO_LARGE, ""},
        {"10E125", DYN_ERANGE, DYN_AV_NUM_TOO_LARGE, ""},
        {"1e99999999999999999999", DYN_ERANGE, DYN_AV_NUM_TOO_LARGE, ""},
        {"1E-131", DYN_ERANGE, DYN_AV_NUM_TOO_SMALL, ""},
        {"0.9E-130", DYN_ERANGE, DYN_AV_NUM_TOO_SMALL, ""},
        {"-1e-99999999999999999999", DYN_ERANGE, DYN_AV_NUM_TOO_SMALL, ""},
        {"", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"-", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {".", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"abc", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"1e", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"1e+", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"1.2.3", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {" 1", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"1 ", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"0x10", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"--1", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"inf", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"NaN", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
        {"1e5x", DYN_EINVAL, DYN_AV_NUM_SYNTAX, ""},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[DYN_AV_NUM_MAX];
        size_t len = 0;
        enum dyn_av_num_err why = DYN_AV_NUM_SYNTAX;
        int rc = dyn_av_number_canon(dyn_slice_cstr(cases[i].in), out, &len, &why);
        if (rc != cases[i].rc || why != cases[i].why) fprintf(stderr, "case %s\n", cases[i].in);
        CHECK_EQ_INT(rc, cases[i].rc);
        CHECK_EQ_INT(why, cases[i].why);
        if (rc == DYN_OK) {
            CHECK_EQ_MEM(out, len, cases[i].out, strlen(cases[i].out));
            CHECK_EQ_INT(out[len], 0);
        }
    }
}

TEST(canon_range_edges) {
    char out[DYN_AV_NUM_MAX];
    size_t len;
    enum dyn_av_num_err why;
    /* The smallest and largest magnitudes DynamoDB accepts, in plain form. */
    CHECK_EQ_INT(dyn_av_number_canon(dyn_slice_cstr("1E-130"), out, &len, &why), DYN_OK);
    CHECK_EQ_STR(out, s_pad("0.", 129, "1"));
    CHECK_EQ_INT(dyn_av_number_canon(dyn_slice_cstr("-1E-130"), out, &len, &why), DYN_OK);
    CHECK_EQ_STR(out, s_pad("-0.", 129, "1"));
    CHECK_EQ_INT(dyn_av_number_canon(dyn_slice_cstr("9.9999999999999999999999999999999999999E+125"), out, &len,
                                     &why),
                 DYN_OK);
    CHECK_EQ_STR(out, s_pad("99999999999999999999999999999999999999", 88, ""));
    CHECK_EQ_INT(len, 126);
    CHECK_EQ_INT(dyn_av_number_canon(dyn_slice_cstr("1E+125"), out, &len, &why), DYN_OK);
    CHECK_EQ_STR(out, s_pad("1", 125, ""));
    /* The longest canonical text there is fits DYN_AV_NUM_MAX. */
    CHECK_EQ_INT(dyn_av_number_canon(dyn_slice_cstr("-1.0000000000000000000000000000000000001E-130"), out, &len,
                                     &why),
                 DYN_OK);
    CHECK_EQ_STR(out, s_pad("-0.", 129, "10000000000000000000000000000000000001"));
    CHECK(len < DYN_AV_NUM_MAX);
    /* Canonical text is a fixed point. */
    {
        char again[DYN_AV_NUM_MAX];
        size_t len2;
        CHECK_EQ_INT(dyn_av_number_canon(dyn_slice_make(out, len), again, &len2, NULL), DYN_OK);
        CHECK_EQ_MEM(again, len2, out, len);
    }
}

struct double_case {
    double v;
    int rc;
    enum dyn_av_num_err why;
    const char *out;
};

TEST(double_table) {
    volatile double a = 0.1, b = 0.2; /* keep the sum at run time */
    const struct double_case cases[] = {
        {0.1, DYN_OK, DYN_AV_NUM_OK, "0.1"},
        {1e-7, DYN_OK, DYN_AV_NUM_OK, "0.0000001"},
        {1e21, DYN_OK, DYN_AV_NUM_OK, "1000000000000000000000"},
        {1e22, DYN_OK, DYN_AV_NUM_OK, "10000000000000000000000"},
        {1e23, DYN_OK, DYN_AV_NUM_OK, "100000000000000000000000"},
        {100.25, DYN_OK, DYN_AV_NUM_OK, "100.25"},
        {123.25, DYN_OK, DYN_AV_NUM_OK, "123.25"},
        {-2.5, DYN_OK, DYN_AV_NUM_OK, "-2.5"},
        {0.0, DYN_OK, DYN_AV_NUM_OK, "0"},
        {-0.0, DYN_OK, DYN_AV_NUM_OK, "0"},
        {34.0, DYN_OK, DYN_AV_NUM_OK, "34"},
        {-9007199254740992.0, DYN_OK, DYN_AV_NUM_OK, "-9007199254740992"},
        {1.0 / 3.0, DYN_OK, DYN_AV_NUM_OK, "0.3333333333333333"},
        {2.0 / 3.0, DYN_OK, DYN_AV_NUM_OK, "0.6666666666666666"},
        {123456789.123, DYN_OK, DYN_AV_NUM_OK, "123456789.123"},
        {1.5e-130, DYN_OK, DYN_AV_NUM_OK, NULL}, /* checked below */
        {9.2233720368547758e18, DYN_OK, DYN_AV_NUM_OK, "9223372036854776000"},
        {1e125, DYN_OK, DYN_AV_NUM_OK, NULL},
        {3.14159, DYN_OK, DYN_AV_NUM_OK, "3.14159"},
        {5e-324, DYN_ERANGE, DYN_AV_NUM_TOO_SMALL, ""},
        {1e-131, DYN_ERANGE, DYN_AV_NUM_TOO_SMALL, ""},
        {1.7976931348623157e308, DYN_ERANGE, DYN_AV_NUM_TOO_LARGE, ""},
        {-1e126, DYN_ERANGE, DYN_AV_NUM_TOO_LARGE, ""},
        {NAN, DYN_EINVAL, DYN_AV_NUM_NOT_FINITE, ""},
        {INFINITY, DYN_EINVAL, DYN_AV_NUM_NOT_FINITE, ""},
        {-INFINITY, DYN_EINVAL, DYN_AV_NUM_NOT_FINITE, ""},
    };
    size_t i;
    char out[DYN_AV_NUM_MAX];
    size_t len;
    enum dyn_av_num_err why;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = dyn_av_number_from_double(cases[i].v, out, &len, &why);
        if (rc != cases[i].rc) fprintf(stderr, "case %.17g\n", cases[i].v);
        CHECK_EQ_INT(rc, cases[i].rc);
        CHECK_EQ_INT(why, cases[i].why);
        if (rc == DYN_OK && cases[i].out) CHECK_EQ_MEM(out, len, cases[i].out, strlen(cases[i].out));
    }
    CHECK_EQ_INT(dyn_av_number_from_double(a + b, out, &len, NULL), DYN_OK);
    CHECK_EQ_STR(out, "0.30000000000000004");
    CHECK_EQ_INT(dyn_av_number_from_double(1.5e-130, out, &len, NULL), DYN_OK);
    CHECK_EQ_STR(out, s_pad("0.", 129, "15"));
    CHECK_EQ_INT(dyn_av_number_from_double(1e125, out, &len, NULL), DYN_OK);
    CHECK_EQ_STR(out, s_pad("1", 125, ""));
}

TEST(double_digits_extremes) {
    char dig[17];
    int q = 0, n;
    n = dyn_av_double_digits(5e-324, dig, &q);
    CHECK_EQ_MEM(dig, (size_t)n, "5", 1);
    CHECK_EQ_INT(q, -324);
    n = dyn_av_double_digits(1.7976931348623157e308, dig, &q);
    CHECK_EQ_MEM(dig, (size_t)n, "17976931348623157", 17);
    CHECK_EQ_INT(q, 292);
    n = dyn_av_double_digits(2.2250738585072014e-308, dig, &q);
    CHECK_EQ_MEM(dig, (size_t)n, "22250738585072014", 17);
    CHECK_EQ_INT(q, -324);
    n = dyn_av_double_digits(-0.25, dig, &q);
    CHECK_EQ_MEM(dig, (size_t)n, "25", 2);
    CHECK_EQ_INT(q, -2);
    n = dyn_av_double_digits(1200.0, dig, &q);
    CHECK_EQ_MEM(dig, (size_t)n, "12", 2);
    CHECK_EQ_INT(q, 2);
}

/* The minimal precision at which %.*e reads back: the reference answer. */
static int s_ref_digits(double v) {
    char buf[40];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) return p;
    }
    return 17;
}

static uint64_t s_rng = 0x9E3779B97F4A7C15u;
static uint64_t s_next(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/* Every result reads back exactly, and is as short as the reference. */
static int s_check_roundtrip(double v) {
    char dig[17], text[64];
    int q, n = dyn_av_double_digits(v, dig, &q);
    snprintf(text, sizeof text, "%.*se%d", n, dig, q);
    if (strtod(text, NULL) != fabs(v) || n != s_ref_digits(fabs(v)) || dig[0] == '0' || dig[n - 1] == '0') {
        fprintf(stderr, "round trip failed for %.17g: %s\n", v, text);
        return 0;
    }
    return 1;
}

TEST(double_digits_property) {
    int i, bad = 0;
    for (i = 0; i < 40000; i++) {
        uint64_t bits = s_next();
        double v;
        memcpy(&v, &bits, sizeof v);
        if (isnan(v) || isinf(v) || v == 0) continue;
        bad += !s_check_roundtrip(v);
    }
    /* Values with few decimals take the fast path: check them too. */
    /* Subnormals have fewer digits of precision. */
    for (i = 0; i < 2000; i++) {
        uint64_t bits = s_next() >> 12;
        double v;
        memcpy(&v, &bits, sizeof v);
        if (v != 0) bad += !s_check_roundtrip(v);
    }
    for (i = 1; i < 20000; i++) {
        bad += !s_check_roundtrip((double)(int64_t)(s_next() % 100000000) / 100.0 + 0.01);
        bad += !s_check_roundtrip((double)i / 1000.0);
        bad += !s_check_roundtrip((double)i * 1e-9);
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(format_int) {
    char out[24];
    CHECK_EQ_INT(dyn_av_format_int(0, out), 1);
    CHECK_EQ_STR(out, "0");
    dyn_av_format_int(-1, out);
    CHECK_EQ_STR(out, "-1");
    dyn_av_format_int(99, out);
    CHECK_EQ_STR(out, "99");
    dyn_av_format_int(1000, out);
    CHECK_EQ_STR(out, "1000");
    CHECK_EQ_INT(dyn_av_format_int(INT64_MAX, out), 19);
    CHECK_EQ_STR(out, "9223372036854775807");
    CHECK_EQ_INT(dyn_av_format_int(INT64_MIN, out), 20);
    CHECK_EQ_STR(out, "-9223372036854775808");
}

struct class_case {
    const char *text;
    enum dyn_av_num_class cls;
    int64_t i;
    double d;
};

TEST(classify_table) {
    volatile double a = 0.1, b = 0.2;
    const struct class_case cases[] = {
        {"0", DYN_AV_INT, 0, 0},
        {"34", DYN_AV_INT, 34, 0},
        {"-7", DYN_AV_INT, -7, 0},
        {"9007199254740993", DYN_AV_INT, INT64_C(9007199254740993), 0},
        {"9223372036854775807", DYN_AV_INT, INT64_MAX, 0},
        {"-9223372036854775808", DYN_AV_INT, INT64_MIN, 0},
        {"9223372036854775808", DYN_AV_DECIMAL, 0, 0},
        {"-9223372036854775809", DYN_AV_DECIMAL, 0, 0},
        {"0.1", DYN_AV_FLOAT, 0, 0.1},
        {"-0.1", DYN_AV_FLOAT, 0, -0.1},
        {"123.25", DYN_AV_FLOAT, 0, 123.25},
        {"0.0000001", DYN_AV_FLOAT, 0, 1e-7},
        {"1000000000000000000000", DYN_AV_FLOAT, 0, 1e21},
        {"100000000000000000000000", DYN_AV_FLOAT, 0, 1e23},
        {"9223372036854776000", DYN_AV_FLOAT, 0, 9223372036854775808.0},
        {"0.3333333333333333", DYN_AV_FLOAT, 0, 1.0 / 3.0},
        {"0.3000000000000000444", DYN_AV_DECIMAL, 0, 0},
        {"0.30000000000000005", DYN_AV_DECIMAL, 0, 0}, /* reads as 0.1+0.2, whose text differs */
        {"12345678901234567890123456789012345678", DYN_AV_DECIMAL, 0, 0},
        {"123456789012345678901234567890.5", DYN_AV_DECIMAL, 0, 0},
        {"0.1000000000000000055511151231257827", DYN_AV_DECIMAL, 0, 0},
        {"1.5", DYN_AV_FLOAT, 0, 1.5},
        {"12345678901234.5", DYN_AV_FLOAT, 0, 12345678901234.5},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t iv = -1;
        double dv = -1;
        enum dyn_av_num_class c = dyn_av_number_classify(dyn_slice_cstr(cases[i].text), &iv, &dv);
        if (c != cases[i].cls) fprintf(stderr, "case %s\n", cases[i].text);
        CHECK_EQ_INT(c, cases[i].cls);
        if (c == DYN_AV_INT && cases[i].cls == c) CHECK(iv == cases[i].i);
        if (c == DYN_AV_FLOAT && cases[i].cls == c) CHECK(dv == cases[i].d);
    }
    {
        int64_t iv;
        double dv = 0;
        CHECK_EQ_INT(dyn_av_number_classify(dyn_slice_cstr("0.30000000000000004"), &iv, &dv), DYN_AV_FLOAT);
        CHECK(dv == a + b);
        /* 1E-130 and 1E125 are floats too: extreme exponents take strtod. */
        CHECK_EQ_INT(dyn_av_number_classify(dyn_slice_cstr(s_pad("0.", 129, "1")), &iv, &dv), DYN_AV_FLOAT);
        CHECK(dv == 1e-130);
        CHECK_EQ_INT(dyn_av_number_classify(dyn_slice_cstr(s_pad("1", 125, "")), &iv, &dv), DYN_AV_FLOAT);
        CHECK(dv == 1e125);
    }
}

/* Every float the encoder writes classifies back to that same float. */
TEST(classify_inverts_format) {
    int i, bad = 0;
    for (i = 0; i < 50000; i++) {
        uint64_t bits = s_next();
        double v, back = 0;
        int64_t iv;
        char out[DYN_AV_NUM_MAX];
        size_t len;
        enum dyn_av_num_class c;
        memcpy(&v, &bits, sizeof v);
        if (dyn_av_number_from_double(v, out, &len, NULL) != DYN_OK) continue;
        c = dyn_av_number_classify(dyn_slice_make(out, len), &iv, &back);
        if (c == DYN_AV_INT) back = (double)iv;
        if (c == DYN_AV_DECIMAL || back != v) {
            fprintf(stderr, "classify(%s) did not give %.17g back\n", out, v);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(number_cmp) {
    const struct {
        const char *a, *b;
        int sign;
    } cases[] = {
        {"1", "2", -1},   {"2", "1", 1},         {"-1", "1", -1},       {"-2", "-1", -1},
        {"10", "9", 1},   {"0.5", "0.55", -1},   {"1.5", "1.45", 1},    {"0", "-0.1", 1},
        {"0", "0.0001", -1}, {"12.5", "12.5", 0}, {"-0.5", "-0.55", 1}, {"100", "99.999", 1},
        {"12345678901234567890123456789012345678", "12345678901234567890123456789012345677", 1},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = dyn_av_number_cmp(dyn_slice_cstr(cases[i].a), dyn_slice_cstr(cases[i].b));
        int s = c < 0 ? -1 : c > 0;
        if (s != cases[i].sign) fprintf(stderr, "case %s <=> %s\n", cases[i].a, cases[i].b);
        CHECK_EQ_INT(s, cases[i].sign);
    }
}


TEST(parse_double) {
    double d = -1;
    char long_text[400];
    struct dyn_allocator failing = {testing_failing_alloc, NULL};
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_cstr("0.1"), NULL, &d), DYN_OK);
    CHECK(d == 0.1);
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_cstr("-12.5e3"), NULL, &d), DYN_OK);
    CHECK(d == -12500.0);
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_cstr("1e400"), NULL, &d), DYN_OK);
    CHECK(isinf(d) && d > 0);
    /* Only the slice is read, not what follows it. */
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_make("2.5123", 3), NULL, &d), DYN_OK);
    CHECK(d == 2.5);
    /* Longer than any canonical text: copied with the allocator. */
    memset(long_text, '0', sizeof long_text);
    long_text[0] = '1';
    long_text[1] = '.';
    long_text[sizeof long_text - 1] = '5';
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_make(long_text, sizeof long_text), NULL, &d), DYN_OK);
    CHECK(d == 1.0);
    testing_alloc_budget = 0;
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_make(long_text, sizeof long_text), &failing, &d), DYN_ENOMEM);
    testing_alloc_budget = 1;
    CHECK_EQ_INT(dyn_av_parse_double(dyn_slice_make(long_text, sizeof long_text), &failing, &d), DYN_OK);
}

TEST(base64_vectors) {
    /* RFC 4648 section 10. */
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    size_t i;
    struct dyn_buf b;
    dyn_buf_init(&b, NULL);
    for (i = 0; i < 7; i++) {
        dyn_buf_reset(&b);
        CHECK_EQ_INT(dyn_base64_encode(dyn_slice_cstr(plain[i]), &b), DYN_OK);
        CHECK_EQ_MEM(b.len ? b.ptr : "", b.len, coded[i], strlen(coded[i]));
        CHECK_EQ_INT(b.len, dyn_base64_encoded_len(strlen(plain[i])));
        dyn_buf_reset(&b);
        CHECK_EQ_INT(dyn_base64_decode(dyn_slice_cstr(coded[i]), &b), DYN_OK);
        CHECK_EQ_MEM(b.len ? b.ptr : "", b.len, plain[i], strlen(plain[i]));
    }
    dyn_buf_free(&b);
}

TEST(base64_all_bytes) {
    unsigned char all[256];
    struct dyn_buf enc, dec;
    int i;
    for (i = 0; i < 256; i++) all[i] = (unsigned char)i;
    dyn_buf_init(&enc, NULL);
    dyn_buf_init(&dec, NULL);
    CHECK_EQ_INT(dyn_base64_encode(dyn_slice_make((const char *)all, 256), &enc), DYN_OK);
    CHECK_EQ_INT(enc.len, 344);
    CHECK_EQ_INT(dyn_base64_decode(dyn_buf_slice(&enc), &dec), DYN_OK);
    CHECK_EQ_MEM(dec.ptr, dec.len, (const char *)all, (size_t)256);
    dyn_buf_free(&enc);
    dyn_buf_free(&dec);
}

TEST(base64_rejects) {
    const char *bad[] = {"Zg=",  "Zg=a", "Z===", "Zh==", "Zm9=", "Zm 9", "=Zm9", "Zg==Zg==", "-_--",
                         "Zm9v\n", "====", "Zm9vY===", "Zm9vYg=\0"};
    size_t i;
    struct dyn_buf b;
    dyn_buf_init(&b, NULL);
    dyn_buf_append_cstr(&b, "keep");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = dyn_base64_decode(dyn_slice_cstr(bad[i]), &b);
        if (rc != DYN_EINVAL) fprintf(stderr, "accepted %s\n", bad[i]);
        CHECK_EQ_INT(rc, DYN_EINVAL);
        CHECK_EQ_STR(b.ptr, "keep");
    }
    dyn_buf_free(&b);
}

int main(void) {
    memset(s_zeros, '0', sizeof s_zeros);
    RUN(canon_table);
    RUN(canon_range_edges);
    RUN(double_table);
    RUN(double_digits_extremes);
    RUN(double_digits_property);
    RUN(format_int);
    RUN(classify_table);
    RUN(classify_inverts_format);
    RUN(number_cmp);
    RUN(parse_double);
    RUN(base64_vectors);
    RUN(base64_all_bytes);
    RUN(base64_rejects);
    return testing_done();
}
