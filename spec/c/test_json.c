/* Unit tests for dynamo/json.h: writer, UTF-8, pull reader, get_string. */
#include <stdio.h>
#include <stdlib.h>

#include "dynamo/json.h"
#include "testing.h"

#define SL(s) dyn_slice_make((s), sizeof(s) - 1)

struct write_case {
    dyn_slice in;
    const char *out;
};

TEST(write_string_escapes) {
    const struct write_case cases[] = {
        {SL(""), "\"\""},
        {SL("plain"), "\"plain\""},
        {SL("q\"b\\s/"), "\"q\\\"b\\\\s/\""},
        {SL("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\""},
        {SL("\x01\x1f"), "\"\\u0001\\u001f\""},
        {SL("nul\0byte"), "\"nul\\u0000byte\""},
        {SL("\x7f"), "\"\x7f\""},
        {SL("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
        {SL("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\""},
    };
    size_t i;
    struct dyn_buf b;
    dyn_buf_init(&b, NULL);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dyn_buf_reset(&b);
        CHECK_EQ_INT(dyn_json_write_string(&b, cases[i].in), DYN_OK);
        CHECK_EQ_STR(b.ptr, cases[i].out);
        dyn_buf_reset(&b);
        CHECK_EQ_INT(dyn_json_write_string_trusted(&b, cases[i].in), DYN_OK);
        CHECK_EQ_STR(b.ptr, cases[i].out);
    }
    dyn_buf_free(&b);
}

/* Word-at-a-time paths: specials at every offset of strings of many lengths. */
TEST(write_string_long) {
    struct dyn_buf b, want;
    size_t len, at;
    dyn_buf_init(&b, NULL);
    dyn_buf_init(&want, NULL);
    for (len = 1; len < 40; len++) {
        for (at = 0; at < len; at++) {
            char in[64];
            size_t i;
            memset(in, 'a', len);
            in[at] = '"';
            dyn_buf_reset(&want);
            dyn_buf_putc(&want, '"');
            for (i = 0; i < len; i++) dyn_buf_append_cstr(&want, i == at ? "\\\"" : "a");
            dyn_buf_putc(&want, '"');
            dyn_buf_reset(&b);
            CHECK_EQ_INT(dyn_json_write_string(&b, dyn_slice_make(in, len)), DYN_OK);
            CHECK_EQ_MEM(b.ptr, b.len, want.ptr, want.len);
            /* A control character and a two-byte character there too. */
            in[at] = '\x1f';
            dyn_buf_reset(&b);
            CHECK_EQ_INT(dyn_json_write_string(&b, dyn_slice_make(in, len)), DYN_OK);
            CHECK(strstr(b.ptr, "\\u001f") == b.ptr + 1 + at);
            CHECK_EQ_INT(b.len, len + 2 + 5);
            if (at + 1 < len) {
                in[at] = '\xc3';
                in[at + 1] = '\xa9';
                dyn_buf_reset(&b);
                CHECK_EQ_INT(dyn_json_write_string(&b, dyn_slice_make(in, len)), DYN_OK);
                CHECK_EQ_MEM(b.ptr + 1, b.len - 2, in, len);
                in[at + 1] = 'a'; /* now a lone lead byte */
                dyn_buf_reset(&b);
                CHECK_EQ_INT(dyn_json_write_string(&b, dyn_slice_make(in, len)), DYN_EINVAL);
                CHECK_EQ_INT(b.len, 0);
                /* The trusted writer passes bytes through without a look. */
                CHECK_EQ_INT(dyn_json_write_string_trusted(&b, dyn_slice_make(in, len)), DYN_OK);
                CHECK_EQ_MEM(b.ptr + 1, b.len - 2, in, len);
            }
        }
    }
    /* Many escapes in a row grow the buffer as they go. */
    {
        char ctl[300];
        memset(ctl, 1, sizeof ctl);
        dyn_buf_reset(&b);
        CHECK_EQ_INT(dyn_json_write_string(&b, dyn_slice_make(ctl, sizeof ctl)), DYN_OK);
        CHECK_EQ_INT(b.len, 300 * 6 + 2);
        CHECK(memcmp(b.ptr + 1 + 299 * 6, "\\u0001\"", 7) == 0);
    }
    dyn_buf_free(&b);
    dyn_buf_free(&want);
}

struct utf8_case {
    dyn_slice in;
    int valid;
    size_t bad_pos;
};

TEST(utf8_validation) {
    const struct utf8_case cases[] = {
        {SL("ascii only, long enough to take the fast path"), 1, 0},
        {SL("\xc3\xa9"), 1, 0},
        {SL("\xf0\x90\x80\x80"), 1, 0},
        {SL("abc\xc0\x80"), 0, 3},          /* overlong NUL */
        {SL("\xc1\xbf"), 0, 0},             /* overlong */
        {SL("\xe0\x80\xaf"), 0, 0},         /* overlong 3-byte */
        {SL("ok\xed\xa0\x80"), 0, 2},       /* surrogate U+D800 */
        {SL("\xf0\x80\x80\x80"), 0, 0},     /* overlong 4-byte */
        {SL("\xf4\x90\x80\x80"), 0, 0},     /* above U+10FFFF */
        {SL("\xf5\x80\x80\x80"), 0, 0},
        {SL("x\xe2\x82"), 0, 1},            /* truncated */
        {SL("12345678\xff"), 0, 8},
        {SL("\x80"), 0, 0},                 /* lone continuation */
        {SL("\xc3\xa9\xc3"), 0, 2},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t pos = 999;
        int ok = dyn_json_utf8_valid(cases[i].in, &pos);
        CHECK_EQ_INT(ok, cases[i].valid);
        if (!cases[i].valid) CHECK_EQ_INT(pos, cases[i].bad_pos);
        if (!cases[i].valid) {
            /* The writer refuses it and leaves the buffer as it was. */
            struct dyn_buf b;
            dyn_buf_init(&b, NULL);
            dyn_buf_append_cstr(&b, "[");
            CHECK_EQ_INT(dyn_json_write_string(&b, cases[i].in), DYN_EINVAL);
            CHECK_EQ_STR(b.ptr, "[");
            dyn_buf_free(&b);
        }
    }
}

/* Renders the token stream of a document as one line, for table checks. */
static int s_tokens(const char *doc, size_t len, struct dyn_buf *out, struct dyn_json_reader *r) {
    struct dyn_json_token t;
    int rc;
    static const char *names[] = {"END", "{", "}", "[", "]", "K", "S", "N", "T", "F", "null"};
    dyn_json_reader_init(r, dyn_slice_make(doc, len));
    for (;;) {
        if ((rc = dyn_json_next(r, &t)) != DYN_OK) return rc;
        dyn_buf_append_cstr(out, names[t.type]);
        if (t.type == DYN_JSON_KEY || t.type == DYN_JSON_STRING || t.type == DYN_JSON_NUMBER) {
            dyn_buf_append_cstr(out, "(");
            if (t.escaped) dyn_json_unescape(t.text, out);
            else dyn_buf_append_slice(out, t.text);
            dyn_buf_append_cstr(out, ")");
        }
        if (t.type == DYN_JSON_END) return DYN_OK;
        dyn_buf_append_cstr(out, " ");
    }
}

struct tok_case {
    const char *doc;
    const char *tokens;
};

TEST(reader_tokens) {
    const struct tok_case cases[] = {
        {"{}", "{ } END"},
        {"[]", "[ ] END"},
        {" \t\r\n{ \"a\" : 1 , \"b\":[true,false,null,\"x\"]}\n", "{ K(a) N(1) K(b) [ T F null S(x) ] } END"},
        {"[[[]],{}]", "[ [ [ ] ] { } ] END"},
        {"\"top\"", "S(top) END"},
        {"-0.5e+10", "N(-0.5e+10) END"},
        {"[0,-1,12.5,1E3,2e-2]", "[ N(0) N(-1) N(12.5) N(1E3) N(2e-2) ] END"},
        {"[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "[ S(\"\\/\b\f\n\r\t) ]"
                                              " END"},
        {"[\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"]", "[ S(A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80) ] END"},
        {"{\"k\\u0041\":\"\\u0000\"}", "{ K(kA) S(\\u0000) } END"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dyn_buf b;
        struct dyn_json_reader r;
        dyn_buf_init(&b, NULL);
        CHECK_EQ_INT(s_tokens(cases[i].doc, strlen(cases[i].doc), &b, &r), DYN_OK);
        if (i == 9) {
            /* The escaped NUL comes out as a real NUL byte. */
            CHECK_EQ_MEM(b.ptr, b.len, "{ K(kA) S(\0) } END", (size_t)18);
        } else {
            CHECK_EQ_STR(b.ptr, cases[i].tokens);
        }
        dyn_buf_free(&b);
    }
}

TEST(reader_string_slices) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    const char *doc = "[\"plain\",\"a\\nb\"]";
    dyn_json_reader_init(&r, dyn_slice_cstr(doc));
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_STRING);
    CHECK_EQ_INT(t.escaped, 0);
    CHECK(t.text.ptr == doc + 2); /* borrowed from the input */
    CHECK_EQ_MEM(t.text.ptr, t.text.len, "plain", (size_t)5);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.escaped, 1);
    CHECK_EQ_MEM(t.text.ptr, t.text.len, "a\\nb", (size_t)4);
}

struct err_case {
    const char *doc;
    size_t len; /* 0: strlen */
    const char *err;
    size_t pos;
};

TEST(reader_errors) {
    const struct err_case cases[] = {
        {"", 0, "unexpected end of input", 0},
        {"   ", 0, "unexpected end of input", 3},
        {"[1,]", 0, "unexpected character", 3},
        {"{\"a\" 1}", 0, "expected ':'", 5},
        {"{\"a\":1,}", 0, "expected a member name", 7},
        {"{1:2}", 0, "expected a member name", 1},
        {"[1 2]", 0, "expected ',' or ']'", 3},
        {"{\"a\":1 \"b\":2}", 0, "expected ',' or '}'", 7},
        {"[1}", 0, "expected ',' or ']'", 2},
        {"\"abc", 0, "unterminated string", 4},
        {"\"ab\\", 0, "unterminated string", 3},
        {"\"\\x\"", 0, "bad escape", 1},
        {"\"\\u12\"", 0, "bad \\u escape", 1},
        {"\"\\u12g4\"", 0, "bad \\u escape", 1},
        {"[\"\\ud800\"]", 0, "lone high surrogate", 2},
        {"\"\\ud800\\u0041\"", 0, "lone high surrogate", 1},
        {"\"\\udc00\"", 0, "lone low surrogate", 1},
        {"\"a\x01\"", 0, "control character in string", 2},
        {"\"a\nb\"", 0, "control character in string", 2},
        {"\"\xff\"", 0, "invalid UTF-8 in string", 1},
        {"\"\xed\xa0\x80\"", 0, "invalid UTF-8 in string", 1},
        {"01", 0, "unexpected data after the document", 1},
        {"[1] x", 0, "unexpected data after the document", 4},
        {"-", 0, "bad number", 1},
        {"-a", 0, "bad number", 1},
        {"1.", 0, "bad number", 2},
        {"1.e5", 0, "bad number", 2},
        {"1e", 0, "bad number", 2},
        {"1e+", 0, "bad number", 3},
        {".5", 0, "unexpected character", 0},
        {"+1", 0, "unexpected character", 0},
        {"tru", 0, "unexpected character", 0},
        {"nul", 0, "unexpected character", 0},
        {"[True]", 0, "unexpected character", 1},
        {"{", 0, "unexpected end of input", 1},
        {"[1,", 0, "unexpected end of input", 3},
        {"{\"a\"", 0, "unexpected end of input", 4},
        {"{\"a\":", 0, "unexpected end of input", 5},
        {"[\"a\0b\"]", 7, "control character in string", 3},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dyn_buf b;
        struct dyn_json_reader r;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].doc);
        int rc;
        dyn_buf_init(&b, NULL);
        rc = s_tokens(cases[i].doc, len, &b, &r);
        CHECK_EQ_INT(rc, DYN_EJSON);
        if (rc == DYN_EJSON) {
            if (strcmp(r.err, cases[i].err) != 0 || r.err_pos != cases[i].pos)
                fprintf(stderr, "case %zu: got %s at %zu\n", i, r.err, r.err_pos);
            CHECK_EQ_STR(r.err, cases[i].err);
            CHECK_EQ_INT(r.err_pos, cases[i].pos);
        }
        dyn_buf_free(&b);
    }
}

TEST(reader_depth_limit) {
    char *doc = malloc(DYN_JSON_MAX_DEPTH + 2);
    struct dyn_buf b;
    struct dyn_json_reader r;
    dyn_buf_init(&b, NULL);
    memset(doc, '[', DYN_JSON_MAX_DEPTH + 1);
    CHECK_EQ_INT(s_tokens(doc, DYN_JSON_MAX_DEPTH + 1, &b, &r), DYN_EJSON);
    CHECK_EQ_STR(r.err, "nesting too deep");
    CHECK_EQ_INT(r.err_pos, DYN_JSON_MAX_DEPTH);
    /* Exactly the limit is fine. */
    memset(doc, '[', DYN_JSON_MAX_DEPTH);
    memset(doc + DYN_JSON_MAX_DEPTH, ']', 1);
    dyn_json_reader_init(&r, dyn_slice_make(doc, DYN_JSON_MAX_DEPTH + 1));
    {
        struct dyn_json_token t;
        int i, rc = DYN_OK;
        for (i = 0; i < DYN_JSON_MAX_DEPTH + 1 && rc == DYN_OK; i++) rc = dyn_json_next(&r, &t);
        CHECK_EQ_INT(rc, DYN_OK);
        CHECK_EQ_INT(t.type, DYN_JSON_ARR_END);
        CHECK_EQ_INT(r.depth, DYN_JSON_MAX_DEPTH - 1);
    }
    free(doc);
    dyn_buf_free(&b);
}

TEST(reader_errors_stick) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    dyn_json_reader_init(&r, dyn_slice_cstr("[x]"));
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_EJSON);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_EJSON);
    CHECK_EQ_INT(r.err_pos, 1);
    /* After END, reading on is an error too. */
    dyn_json_reader_init(&r, dyn_slice_cstr("1"));
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_END);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_EJSON);
}

TEST(reader_skip) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    dyn_json_reader_init(&r, dyn_slice_cstr("[{\"a\":[1,{\"b\":2}],\"c\":3},\"after\"]"));
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_OBJ_BEGIN);
    CHECK_EQ_INT(dyn_json_skip(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_STRING);
    CHECK_EQ_MEM(t.text.ptr, t.text.len, "after", (size_t)5);
    CHECK_EQ_INT(dyn_json_skip(&r, &t), DYN_OK); /* a scalar: nothing to do */
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_ARR_END);
    /* A malformed container reports the error. */
    dyn_json_reader_init(&r, dyn_slice_cstr("[[1,]"));
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
    CHECK_EQ_INT(dyn_json_skip(&r, &t), DYN_EJSON);
}

/* Errors inside long strings are found at their exact byte. */
TEST(reader_string_errors_long) {
    size_t len, at;
    for (len = 1; len < 30; len++) {
        for (at = 0; at < len; at++) {
            char doc[64];
            struct dyn_json_reader r;
            struct dyn_json_token t;
            doc[0] = '"';
            memset(doc + 1, 'x', len);
            doc[len + 1] = '"';
            doc[1 + at] = '\x02';
            dyn_json_reader_init(&r, dyn_slice_make(doc, len + 2));
            CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_EJSON);
            CHECK_EQ_STR(r.err, "control character in string");
            CHECK_EQ_INT(r.err_pos, 1 + at);
            doc[1 + at] = '\xf5';
            dyn_json_reader_init(&r, dyn_slice_make(doc, len + 2));
            CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_EJSON);
            CHECK_EQ_STR(r.err, "invalid UTF-8 in string");
            CHECK_EQ_INT(r.err_pos, 1 + at);
            doc[1 + at] = 'x';
            /* Without its closing quote: the end is the error. */
            dyn_json_reader_init(&r, dyn_slice_make(doc, len + 1));
            CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_EJSON);
            CHECK_EQ_STR(r.err, "unterminated string");
            CHECK_EQ_INT(r.err_pos, len + 1);
            /* And whole, it reads back. */
            dyn_json_reader_init(&r, dyn_slice_make(doc, len + 2));
            CHECK_EQ_INT(dyn_json_next(&r, &t), DYN_OK);
            CHECK_EQ_INT(t.text.len, len);
        }
    }
}

TEST(scanner) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    const char *doc = " \t\r\n\"k\\u0041\" -12.5e3x";
    dyn_json_reader_init(&r, dyn_slice_cstr(doc));
    r.p = dyn_json_skip_ws(r.p, r.end);
    CHECK(r.p == doc + 4);
    CHECK_EQ_INT(dyn_json_scan_string(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_STRING);
    CHECK_EQ_INT(t.escaped, 1);
    CHECK_EQ_MEM(t.text.ptr, t.text.len, "k\\u0041", (size_t)7);
    r.p = dyn_json_skip_ws(r.p, r.end);
    CHECK_EQ_INT(dyn_json_scan_number(&r, &t), DYN_OK);
    CHECK_EQ_INT(t.type, DYN_JSON_NUMBER);
    CHECK_EQ_MEM(t.text.ptr, t.text.len, "-12.5e3", (size_t)7);
    CHECK_EQ_INT(*r.p, 'x');
    CHECK_EQ_INT(dyn_json_fail(&r, r.p, "custom"), DYN_EJSON);
    CHECK_EQ_STR(r.err, "custom");
    CHECK_EQ_INT(r.err_pos, strlen(doc) - 1);
    /* A bad number through the scanner. */
    dyn_json_reader_init(&r, dyn_slice_cstr("-x"));
    CHECK_EQ_INT(dyn_json_scan_number(&r, &t), DYN_EJSON);
    CHECK_EQ_STR(r.err, "bad number");
    CHECK_EQ_INT(r.err_pos, 1);
    /* Whitespace only: skip_ws stops at the end. */
    dyn_json_reader_init(&r, dyn_slice_cstr("  "));
    CHECK(dyn_json_skip_ws(r.p, r.end) == r.end);
}

#ifdef DYN_JSON_SWAR
/* The word-at-a-time test flags the first byte that needs a look, exactly. */
TEST(special8) {
    static const unsigned char pick[] = {0x00, 0x01, 0x1f, 0x20, 0x21, '"', 0x23, 0x5b, '\\', 0x5d,
                                         0x7f, 0x80, 0x81, 0xa2, 0xdc, 0xdd, 0xff, 'a', 'z', 0x1e};
    uint64_t x = UINT64_C(88172645463325252);
    long i;
    for (i = 0; i < 2000000; i++) {
        unsigned char b[8];
        uint64_t w, m;
        unsigned j, first = 8;
        for (j = 0; j < 8; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[j] = (i & 1) ? pick[x % sizeof pick] : (unsigned char)(x >> 24);
        }
        for (j = 0; j < 8 && first == 8; j++)
            if (b[j] < 0x20 || b[j] == '"' || b[j] == '\\' || b[j] >= 0x80) first = j;
        memcpy(&w, b, 8);
        m = dyn_json_special8(w);
        CHECK_EQ_INT(m ? (unsigned)__builtin_ctzll(m) >> 3 : 8u, first);
    }
}
#endif

/*
 * Runs the fast and the full string scanner on the same bytes, copied into
 * a buffer of exactly that size (so that a sanitizer sees any read past it),
 * and checks that they agree on everything.
 */
static void s_scan_both(const char *doc, size_t len) {
    char *buf = malloc(len ? len : 1);
    struct dyn_json_reader a, b;
    struct dyn_json_token ta, tb;
    int ra, rb;
    memcpy(buf, doc, len);
    dyn_json_reader_init(&a, dyn_slice_make(buf, len));
    dyn_json_reader_init(&b, dyn_slice_make(buf, len));
    ra = dyn_json_scan_string_fast(&a, &ta);
    rb = dyn_json_scan_string(&b, &tb);
    CHECK_EQ_INT(ra, rb);
    CHECK(a.p == b.p);
    if (ra == DYN_OK && rb == DYN_OK) {
        CHECK_EQ_INT(ta.type, tb.type);
        CHECK_EQ_INT(ta.escaped, tb.escaped);
        CHECK(ta.text.ptr == tb.text.ptr && ta.text.len == tb.text.len);
    } else if (a.err && b.err) {
        CHECK_EQ_STR(a.err, b.err);
        CHECK_EQ_INT(a.err_pos, b.err_pos);
    } else {
        CHECK(a.err == b.err);
    }
    free(buf);
}

/*
 * Strings of 0..40 bytes with one escape, multibyte character or bad byte
 * at every position, followed by 0..11 more bytes, whole and cut short at
 * every length: the fast scanner gives what the full one gives.
 */
TEST(scan_string_fast) {
    static const char *const pieces[] = {
        "a", "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\ud83d\\ude00", "\xc3\xa9", "\xe2\x82\xac",
        "\xf0\x9f\x98\x80", "\x01", "\x1f", "\x7f", "\xff", "\xc3", "\xed\xa0\x80", "\\x", "\\u12x4",
        "\\ud800", "\\udc00", "\""};
    size_t len, at, k, tail, cut;
    for (len = 0; len <= 40; len++) {
        for (k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
            for (at = 0; at <= len; at++) {
                char doc[128];
                size_t n = 0, plen = strlen(pieces[k]);
                doc[n++] = '"';
                memset(doc + n, 'x', at);
                n += at;
                memcpy(doc + n, pieces[k], plen);
                n += plen;
                memset(doc + n, 'y', len - at);
                n += len - at;
                doc[n++] = '"';
                for (tail = 0; tail < 12; tail++) {
                    memset(doc + n, tail & 1 ? '}' : ',', tail);
                    s_scan_both(doc, n + tail);
                }
                if (len < 12 || at % 3 == 0)
                    for (cut = 1; cut < n; cut++) s_scan_both(doc, cut);
            }
        }
    }
}

struct get_case {
    const char *body;
    const char *key;
    int rc;
    const char *value;
};

TEST(get_string_table) {
    const struct get_case cases[] = {
        {"{\"__type\":\"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException\",\"message\":\"nope\"}",
         "__type", DYN_OK, "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"},
        {"{\"__type\":\"x\",\"message\":\"Requested resource not found\"}", "message", DYN_OK,
         "Requested resource not found"},
        {"{\"a\":{\"message\":\"inner\"},\"b\":[1,{\"c\":\"d\"}],\"message\":\"outer\"}", "message", DYN_OK,
         "outer"},
        {"{\"Message\":\"caps\"}", "Message", DYN_OK, "caps"},
        {"{\"m\\u0065ssage\":\"escaped key\"}", "message", DYN_OK, "escaped key"},
        {"{\"message\":\"tab\\there \\u00e9\\ud83d\\ude00\"}", "message", DYN_OK, "tab\there \xc3\xa9\xf0\x9f\x98\x80"},
        {"{\"message\":\"first\",\"message\":\"second\"}", "message", DYN_OK, "first"},
        {"{\"message\":\"\"}", "message", DYN_OK, ""},
        {"{\"message\":\"ok\", broken", "message", DYN_OK, "ok"},
        {"{}", "message", DYN_EINVAL, ""},
        {"{\"other\":\"x\"}", "message", DYN_EINVAL, ""},
        {"{\"message\":42}", "message", DYN_EINVAL, ""},
        {"{\"message\":null}", "message", DYN_EINVAL, ""},
        {"{\"message\":{\"S\":\"x\"}}", "message", DYN_EINVAL, ""},
        {"[\"message\"]", "message", DYN_EJSON, ""},
        {"\"message\"", "message", DYN_EJSON, ""},
        {"", "message", DYN_EJSON, ""},
        {"<html>", "message", DYN_EJSON, ""},
        {"{\"a\":[1,}", "message", DYN_EJSON, ""},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dyn_buf out;
        int rc;
        dyn_buf_init(&out, NULL);
        rc = dyn_json_get_string(dyn_slice_cstr(cases[i].body), cases[i].key, &out);
        if (rc != cases[i].rc) fprintf(stderr, "case %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, cases[i].rc);
        CHECK_EQ_MEM(out.len ? out.ptr : "", out.len, cases[i].value, strlen(cases[i].value));
        dyn_buf_free(&out);
    }
}

TEST(get_string_appends) {
    struct dyn_buf out;
    dyn_buf_init(&out, NULL);
    dyn_buf_append_cstr(&out, "type=");
    CHECK_EQ_INT(dyn_json_get_string(dyn_slice_cstr("{\"__type\":\"T\"}"), "__type", &out), DYN_OK);
    CHECK_EQ_STR(out.ptr, "type=T");
    dyn_buf_free(&out);
}

/* An allocator that fails after a number of successful calls. */

TEST(out_of_memory) {
    struct dyn_allocator a = {testing_failing_alloc, NULL};
    struct dyn_buf out;
    testing_alloc_budget = 0;
    dyn_buf_init(&out, &a);
    CHECK_EQ_INT(dyn_json_get_string(dyn_slice_cstr("{\"message\":\"x\"}"), "message", &out), DYN_ENOMEM);
    CHECK_EQ_INT(dyn_json_write_string(&out, dyn_slice_cstr("abc")), DYN_ENOMEM);
    CHECK_EQ_INT(out.len, 0);
    testing_alloc_budget = 1;
    CHECK_EQ_INT(dyn_json_write_string(&out, dyn_slice_cstr("abc")), DYN_OK);
    CHECK_EQ_STR(out.ptr, "\"abc\"");
    dyn_buf_free(&out);
}

int main(void) {
    RUN(write_string_escapes);
    RUN(write_string_long);
    RUN(utf8_validation);
    RUN(reader_tokens);
    RUN(reader_string_slices);
    RUN(reader_errors);
    RUN(reader_depth_limit);
    RUN(reader_errors_stick);
    RUN(reader_skip);
    RUN(reader_string_errors_long);
    RUN(scanner);
#ifdef DYN_JSON_SWAR
    RUN(special8);
#endif
    RUN(scan_string_fast);
    RUN(get_string_table);
    RUN(get_string_appends);
    RUN(out_of_memory);
    return testing_done();
}
