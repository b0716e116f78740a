/*
 * SigV4: every case of the AWS test suite (read from $DYN_SHARED_DIR at run
 * time, each stage checked), a DynamoDB request with a known answer, the key
 * cache, dates, canonicalisation edge cases, validation and
 * truncation-on-failure.
 */
#include "dynamo/crypto.h"
#include "dynamo/sigv4.h"
#include "testing.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME INT64_C(1440938160) /* 20150830T123600Z */
#define SUITE_TOKEN "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
#define MAX_HEADERS 32
#define MAX_CASES 64

/* ---- helpers --------------------------------------------------------- */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        text = malloc((size_t)n + 1);
        if (text && fread(text, 1, (size_t)n, f) == (size_t)n) {
            text[n] = '\0';
            *len = (size_t)n;
        } else {
            free(text);
            text = NULL;
        }
    }
    fclose(f);
    return text;
}

static int contains(const char *hay, size_t hn, const char *needle) {
    size_t nn = strlen(needle), i;
    for (i = 0; i + nn <= hn; i++)
        if (memcmp(hay + i, needle, nn) == 0) return 1;
    return 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static dyn_slice sl(const char *s) { return dyn_slice_cstr(s); }

/* ---- the .req parser ------------------------------------------------- */

struct req {
    char *text;
    dyn_slice method, path, query, payload;
    struct dyn_header headers[MAX_HEADERS];
    size_t n_headers;
};

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/*
 * "METHOD SP target SP HTTP/1.1", then "Name:value" lines (a line starting
 * with whitespace continues the previous value, joined with one space), then
 * an optional blank line and the body. Folded values are compacted in place,
 * which never needs more room than the original text.
 */
static int parse_req(char *text, size_t len, struct req *r) {
    char *p = text, *end = text + len, *eol, *sp1, *sp2, *q, *colon, *w = NULL;
    memset(r, 0, sizeof *r);
    r->text = text;
    eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    sp1 = memchr(p, ' ', (size_t)(eol - p));
    for (sp2 = eol; sp2 > p && sp2[-1] != ' ';) sp2--;
    if (!sp1 || sp2 <= sp1 + 1) return -1;
    sp2--; /* the space before HTTP/1.1 */
    r->method = dyn_slice_make(p, (size_t)(sp1 - p));
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    r->path = dyn_slice_make(sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1));
    r->query = q ? dyn_slice_make(q + 1, (size_t)(sp2 - q - 1)) : DYN_SLICE_EMPTY;
    r->payload = DYN_SLICE_EMPTY;
    p = eol < end ? eol + 1 : end;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if (eol == p) { /* blank line: the body follows */
            p = eol < end ? eol + 1 : end;
            r->payload = dyn_slice_make(p, (size_t)(end - p));
            break;
        }
        if (is_blank(*p)) { /* continuation */
            struct dyn_header *h;
            char *s = p, *e = eol;
            if (r->n_headers == 0) return -1;
            h = &r->headers[r->n_headers - 1];
            while (s < e && is_blank(*s)) s++;
            while (e > s && is_blank(e[-1])) e--;
            *w++ = ' ';
            memmove(w, s, (size_t)(e - s));
            w += e - s;
            h->value.len = (size_t)(w - h->value.ptr);
        } else {
            colon = memchr(p, ':', (size_t)(eol - p));
            if (!colon || r->n_headers == MAX_HEADERS) return -1;
            r->headers[r->n_headers].name = dyn_slice_make(p, (size_t)(colon - p));
            r->headers[r->n_headers].value = dyn_slice_make(colon + 1, (size_t)(eol - colon - 1));
            r->n_headers++;
            w = eol;
        }
        p = eol < end ? eol + 1 : end;
    }
    return 0;
}

static struct dyn_sigv4_input suite_input(const struct req *r) {
    struct dyn_sigv4_input in;
    memset(&in, 0, sizeof in);
    in.method = r->method;
    in.path = r->path;
    in.query = r->query;
    in.headers = r->headers;
    in.n_headers = r->n_headers;
    in.payload = r->payload;
    in.region = sl("us-east-1");
    in.service = sl("service");
    in.access_key = sl("AKIDEXAMPLE");
    in.secret_key = sl(SECRET);
    in.token = DYN_SLICE_EMPTY;
    in.unix_time = SUITE_TIME;
    return in;
}

/* ---- the AWS suite --------------------------------------------------- */

struct suite_case {
    char dir[1024]; /* the case directory */
    char name[600]; /* relative, e.g. "normalize-path/get-slash" */
    char base[300]; /* file stem, e.g. "get-slash" */
};

static int case_cmp(const void *a, const void *b) {
    return strcmp(((const struct suite_case *)a)->name, ((const struct suite_case *)b)->name);
}

/* A case is a directory D holding D/<basename D>.req; groups nest one level. */
static void collect(const char *dir, const char *prefix, int depth, struct suite_case *cases, size_t *n) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char sub[1024], probe[1400], name[600];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (!is_dir(sub)) continue;
        snprintf(name, sizeof name, "%s%s", prefix, e->d_name);
        snprintf(probe, sizeof probe, "%s/%s.req", sub, e->d_name);
        if (is_file(probe)) {
            if (*n < MAX_CASES) {
                snprintf(cases[*n].dir, sizeof cases[*n].dir, "%s", sub);
                snprintf(cases[*n].name, sizeof cases[*n].name, "%s", name);
                snprintf(cases[*n].base, sizeof cases[*n].base, "%s", e->d_name);
            }
            (*n)++;
        } else if (depth == 0) {
            char pre[700];
            snprintf(pre, sizeof pre, "%s/", name);
            collect(sub, pre, 1, cases, n);
        }
    }
    closedir(d);
}

static char *read_case_file(const struct suite_case *c, const char *ext, size_t *len) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.%s", c->dir, c->base, ext);
    return read_file(path, len);
}

/* The last non-empty line of post-sts-token/readme.txt is the example token. */
static char *read_sts_token(const char *shared) {
    char path[600];
    size_t len = 0;
    char *text, *e, *s;
    snprintf(path, sizeof path, "%s/sigv4-test-suite/post-sts-token/readme.txt", shared);
    text = read_file(path, &len);
    if (!text) return NULL;
    e = text + len;
    while (e > text && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ')) e--;
    *e = '\0';
    s = e;
    while (s > text && s[-1] != '\n') s--;
    memmove(text, s, (size_t)(e - s) + 1);
    return text;
}

/* Signs one case; returns 1 when creq, sts, authz (plain and cached) all match. */
static int run_case(const struct suite_case *c, const char *sts_token, struct dyn_sigv4_key_cache *cache) {
    size_t req_len = 0, creq_len = 0, sts_len = 0, authz_len = 0;
    char *req_text = read_case_file(c, "req", &req_len);
    char *creq = read_case_file(c, "creq", &creq_len);
    char *sts = read_case_file(c, "sts", &sts_len);
    char *authz = read_case_file(c, "authz", &authz_len);
    struct dyn_buf got = DYN_BUF_INIT(NULL), got_sts = DYN_BUF_INIT(NULL), got_cached = DYN_BUF_INIT(NULL);
    struct dyn_sigv4_input in;
    struct req r;
    int before = testing_checks_failed;

    CHECK(req_text && creq && sts && authz);
    if (!req_text || !creq || !sts || !authz) goto cleanup;
    CHECK(parse_req(req_text, req_len, &r) == 0);
    in = suite_input(&r);
    if (strcmp(c->base, "get-vanilla-with-session-token") == 0) {
        /* the token is added before signing (as DynamoDB clients do) */
        r.headers[r.n_headers].name = sl("X-Amz-Security-Token");
        r.headers[r.n_headers].value = sl(SUITE_TOKEN);
        in.n_headers = ++r.n_headers;
        in.token = sl(SUITE_TOKEN);
    } else if (strncmp(c->name, "post-sts-token/", 15) == 0) {
        CHECK(sts_token != NULL);
        in.token = sl(sts_token ? sts_token : "");
        if (strcmp(c->base, "post-sts-header-before") == 0) {
            /* the .req carries the same token the readme gives */
            size_t i;
            int found = 0;
            for (i = 0; i < r.n_headers; i++)
                if (dyn_slice_eq_cstr(r.headers[i].name, "X-Amz-Security-Token"))
                    found = dyn_slice_eq(r.headers[i].value, in.token);
            CHECK(found);
        }
    }

    CHECK(dyn_sigv4_canonical_request(&in, &got) == DYN_OK);
    CHECK_EQ_MEM(got.ptr, got.len, creq, creq_len);
    CHECK(dyn_sigv4_string_to_sign(&in, dyn_buf_slice(&got), &got_sts) == DYN_OK);
    CHECK_EQ_MEM(got_sts.ptr, got_sts.len, sts, sts_len);
    dyn_buf_reset(&got);
    CHECK(dyn_sigv4_authorization(&in, &got) == DYN_OK);
    CHECK_EQ_MEM(got.ptr, got.len, authz, authz_len);
    CHECK(dyn_sigv4_authorization_cached(&in, cache, &got_cached) == DYN_OK);
    CHECK_EQ_MEM(got_cached.ptr, got_cached.len, authz, authz_len);

cleanup:
    dyn_buf_free(&got);
    dyn_buf_free(&got_sts);
    dyn_buf_free(&got_cached);
    free(req_text);
    free(creq);
    free(sts);
    free(authz);
    return testing_checks_failed == before;
}

TEST(aws_suite_all_cases) {
    const char *shared = getenv("DYN_SHARED_DIR");
    static struct suite_case cases[MAX_CASES];
    struct dyn_sigv4_key_cache cache;
    char root[600];
    char *sts_token;
    size_t n = 0, i, passed = 0;

    CHECK(shared != NULL);
    if (!shared) return;
    snprintf(root, sizeof root, "%s/sigv4-test-suite", shared);
    collect(root, "", 0, cases, &n);
    CHECK(n <= MAX_CASES);
    if (n > MAX_CASES) n = MAX_CASES;
    qsort(cases, n, sizeof cases[0], case_cmp);
    sts_token = read_sts_token(shared);
    dyn_sigv4_key_cache_init(&cache);
    for (i = 0; i < n; i++) {
        int ok = run_case(&cases[i], sts_token, &cache);
        printf("  %-50s %s\n", cases[i].name, ok ? "ok" : "FAILED");
        passed += (size_t)ok;
    }
    printf("  sigv4 suite: %zu of %zu cases passed\n", passed, n);
    CHECK(n >= 34);
    CHECK_EQ_INT(passed, n);
    free(sts_token);
}

/* ---- a DynamoDB request (expected values computed independently) ------ */

static const char *const ddb_header_text[5][2] = {
    {"Host", "dynamodb.us-east-1.amazonaws.com"},
    {"X-Amz-Date", "20240229T081500Z"},
    {"X-Amz-Target", "DynamoDB_20120810.PutItem"},
    {"Content-Type", "application/x-amz-json-1.0"},
    {"X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE//token+value="},
};
static struct dyn_header ddb_headers[5];
static const char ddb_body[] =
    "{\"TableName\":\"users\",\"Item\":{\"pk\":{\"S\":\"user#1\"},\"age\":{\"N\":\"34\"},\"name\":{\"S\":\"J\xc3\xbcrgen\"}}}";

static struct dyn_sigv4_input ddb_input(void) {
    struct dyn_sigv4_input in;
    size_t i;
    for (i = 0; i < 5; i++) {
        ddb_headers[i].name = sl(ddb_header_text[i][0]);
        ddb_headers[i].value = sl(ddb_header_text[i][1]);
    }
    memset(&in, 0, sizeof in);
    in.method = sl("POST");
    in.path = sl("/");
    in.query = DYN_SLICE_EMPTY;
    in.headers = ddb_headers;
    in.n_headers = 5;
    in.payload = dyn_slice_make(ddb_body, sizeof ddb_body - 1);
    in.region = sl("us-east-1");
    in.service = sl("dynamodb");
    in.access_key = sl("AKIDEXAMPLE");
    in.secret_key = sl(SECRET);
    in.token = sl("FwoGZXIvYXdzEXAMPLE//token+value=");
    in.unix_time = INT64_C(1709194500); /* 2024-02-29T08:15:00Z */
    return in;
}

TEST(dynamodb_request_known_answer) {
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_buf b = DYN_BUF_INIT(NULL), s = DYN_BUF_INIT(NULL);
    CHECK_EQ_INT(sizeof ddb_body - 1, 90);
    /* zero-filled so the scratch area can be searched for the secret below */
    CHECK(dyn_buf_reserve(&b, 4000) == DYN_OK);
    if (b.ptr) memset(b.ptr, 0, b.cap);
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_OK);
    CHECK_EQ_STR(b.ptr, "POST\n/\n\n"
                        "content-type:application/x-amz-json-1.0\n"
                        "host:dynamodb.us-east-1.amazonaws.com\n"
                        "x-amz-date:20240229T081500Z\n"
                        "x-amz-security-token:FwoGZXIvYXdzEXAMPLE//token+value=\n"
                        "x-amz-target:DynamoDB_20120810.PutItem\n\n"
                        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n"
                        "ab10018cdbb4da3954296d82b9616b18a4e1d9cce09354381c519c310cf2ec5c");
    CHECK(dyn_sigv4_string_to_sign(&in, dyn_buf_slice(&b), &s) == DYN_OK);
    CHECK_EQ_STR(s.ptr, "AWS4-HMAC-SHA256\n20240229T081500Z\n20240229/us-east-1/dynamodb/aws4_request\n"
                        "e50b030037b1ae1d1e415388ffb30c505e7c5a4e9ab6524485bb32f43f4dafe1");
    dyn_buf_reset(&b);
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_OK);
    CHECK_EQ_STR(b.ptr, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240229/us-east-1/dynamodb/aws4_request, "
                        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
                        "Signature=49440b54921edda811237042c2fcdd045d56d274822b29fafe289bfa815d1f84");
    /* the scratch space used past the result never held the secret */
    CHECK(!contains(b.ptr, b.cap, SECRET));
    dyn_buf_free(&b);
    dyn_buf_free(&s);
}

/* Appending keeps what was in the buffer before. */
TEST(stages_append) {
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_buf a = DYN_BUF_INIT(NULL), b = DYN_BUF_INIT(NULL);
    CHECK(dyn_sigv4_authorization(&in, &a) == DYN_OK);
    CHECK(dyn_buf_append_cstr(&b, "Authorization: ") == DYN_OK);
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_OK);
    CHECK_EQ_INT(b.len, a.len + 15);
    CHECK(memcmp(b.ptr, "Authorization: ", 15) == 0 && memcmp(b.ptr + 15, a.ptr, a.len) == 0);
    dyn_buf_free(&a);
    dyn_buf_free(&b);
}

/* ---- key cache ------------------------------------------------------- */

static void sign_both(const struct dyn_sigv4_input *in, struct dyn_sigv4_key_cache *c, struct dyn_buf *cached,
                      struct dyn_buf *plain) {
    dyn_buf_reset(cached);
    dyn_buf_reset(plain);
    CHECK(dyn_sigv4_authorization_cached(in, c, cached) == DYN_OK);
    CHECK(dyn_sigv4_authorization(in, plain) == DYN_OK);
}

static int same(const struct dyn_buf *a, const struct dyn_buf *b) {
    return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

TEST(key_cache) {
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_sigv4_key_cache c;
    struct dyn_buf x = DYN_BUF_INIT(NULL), y = DYN_BUF_INIT(NULL), old = DYN_BUF_INIT(NULL);
    char long_region[80];

    dyn_sigv4_key_cache_init(&c);
    CHECK_EQ_STR(c.date, "");
    sign_both(&in, &c, &x, &y);
    CHECK(same(&x, &y));
    CHECK_EQ_STR(c.date, "20240229");
    CHECK_EQ_STR(c.region, "us-east-1");
    CHECK_EQ_STR(c.service, "dynamodb");
    /* the cache holds neither the secret nor the "AWS4"-prefixed key */
    CHECK(!contains((const char *)&c, sizeof c, SECRET));

    /* a corrupted key shows whether the cache is used or re-derived */
    c.key[0] ^= 1;
    sign_both(&in, &c, &x, &y);
    CHECK(!same(&x, &y)); /* same day, region, service, secret: reused */
    in.unix_time += 3600;  /* later the same day: still reused */
    sign_both(&in, &c, &x, &y);
    CHECK(!same(&x, &y));

    in.unix_time += 86400; /* next day: re-derived */
    sign_both(&in, &c, &x, &y);
    CHECK(same(&x, &y));
    CHECK_EQ_STR(c.date, "20240301");

    c.key[0] ^= 1;
    CHECK(dyn_buf_append(&old, y.ptr, y.len) == DYN_OK);
    in.secret_key = sl("another/secret+key0000000000000000000000");
    sign_both(&in, &c, &x, &y); /* rotated secret: re-derived */
    CHECK(same(&x, &y));
    CHECK(!same(&y, &old));

    c.key[0] ^= 1;
    in.region = sl("eu-west-1");
    sign_both(&in, &c, &x, &y);
    CHECK(same(&x, &y));
    CHECK_EQ_STR(c.region, "eu-west-1");

    c.key[0] ^= 1;
    in.service = sl("dynamodb-streams");
    sign_both(&in, &c, &x, &y);
    CHECK(same(&x, &y));
    CHECK_EQ_STR(c.service, "dynamodb-streams");

    /* too long to cache: still correct, cache left empty */
    memset(long_region, 'r', sizeof long_region - 1);
    long_region[sizeof long_region - 1] = '\0';
    in.region = sl(long_region);
    sign_both(&in, &c, &x, &y);
    CHECK(same(&x, &y));
    CHECK_EQ_STR(c.date, "");
    sign_both(&in, &c, &x, &y);
    CHECK(same(&x, &y));

    /* a NULL cache is allowed */
    dyn_buf_reset(&x);
    CHECK(dyn_sigv4_authorization_cached(&in, NULL, &x) == DYN_OK);
    CHECK(same(&x, &y));

    dyn_buf_free(&x);
    dyn_buf_free(&y);
    dyn_buf_free(&old);
}

/* ---- dates ----------------------------------------------------------- */

static void check_date(int64_t t, const char *want) {
    char got[17];
    memset(got, 'x', sizeof got);
    dyn_sigv4_amz_date(t, got);
    CHECK_EQ_STR(got, want);
}

TEST(amz_date_known) {
    check_date(0, "19700101T000000Z");
    check_date(-1, "19691231T235959Z");
    check_date(SUITE_TIME, "20150830T123600Z");
    check_date(INT64_C(951782400), "20000229T000000Z");
    check_date(INT64_C(951868799), "20000229T235959Z");
    check_date(INT64_C(951868800), "20000301T000000Z");
    check_date(INT64_C(1709164800), "20240229T000000Z");
    check_date(INT64_C(4107456000), "21000228T000000Z"); /* 2100 is not a leap year */
    check_date(INT64_C(4107542400), "21000301T000000Z");
    check_date(INT64_C(-2203891200), "19000301T000000Z");
    check_date(INT64_C(946684799), "19991231T235959Z");
    check_date(DYN_SIGV4_MAX_TIME, "99991231T235959Z");
    check_date(DYN_SIGV4_MIN_TIME, "00000101T000000Z");
    check_date(INT64_MAX, "99991231T235959Z"); /* clamped */
    check_date(INT64_MIN, "00000101T000000Z");
}

/* Compared with the C library's gmtime_r over 1900..2100, every ~2.2 hours. */
TEST(amz_date_matches_gmtime) {
    int64_t t;
    int mismatches = 0;
    char got[17], want[32];
    for (t = INT64_C(-2208988800); t < INT64_C(4102444800); t += 7919) {
        time_t tt = (time_t)t;
        struct tm tm;
        if (!gmtime_r(&tt, &tm)) continue;
        strftime(want, sizeof want, "%Y%m%dT%H%M%SZ", &tm);
        dyn_sigv4_amz_date(t, got);
        if (strcmp(got, want) != 0 && mismatches++ < 5) fprintf(stderr, "  %s != %s\n", got, want);
    }
    CHECK_EQ_INT(mismatches, 0);
}

/* ---- canonicalisation edge cases ------------------------------------- */

/* Line `line` (0-based) of the canonical request of in. */
static void creq_line(const struct dyn_sigv4_input *in, int line, char *out, size_t cap) {
    struct dyn_buf b = DYN_BUF_INIT(NULL);
    const char *p, *e;
    out[0] = '\0';
    CHECK(dyn_sigv4_canonical_request(in, &b) == DYN_OK);
    if (!b.ptr) return;
    p = b.ptr;
    while (line-- > 0 && p) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (p) {
        e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        snprintf(out, cap, "%.*s", (int)(e - p), p);
    }
    dyn_buf_free(&b);
}

TEST(path_canonicalisation) {
    static const char *cases[][2] = {
        {"", "/"},
        {"/", "/"},
        {"//", "/"},
        {"/a/b/../c/./d", "/a/c/d"},
        {"/a/b/..", "/a/"},
        {"/a/b/.", "/a/b/"},
        {"/../a", "/a"},
        {"a/b", "/a/b"},
        {"/a//b//", "/a/b/"},
        {"/%2F x", "/%252F%20x"},
        {"/~user/-._", "/~user/-._"},
        {"/\xc3\xbc", "/%C3%BC"},
        {"/.../a", "/.../a"},
        {"/a/..b/c..", "/a/..b/c.."},
        {"/a/b/c/../../..", "/"},
        {"/a+b=c&d", "/a%2Bb%3Dc%26d"},
    };
    struct dyn_sigv4_input in = ddb_input();
    char got[128];
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        in.path = sl(cases[i][0]);
        creq_line(&in, 1, got, sizeof got);
        CHECK_EQ_STR(got, cases[i][1]);
    }
}

TEST(query_canonicalisation) {
    static const char *cases[][2] = {
        {"", ""},
        {"&", ""},
        {"a=1&&b", "a=1&b="},
        {"b=2&a=3&a=1", "a=1&a=3&b=2"},
        {"%zz=1", "%25zz=1"},
        {"%4", "%254="},
        {"a+b=c d", "a%2Bb=c%20d"},
        {"=v", "=v"},
        {"k=%41%2f", "k=A%2F"},
        {"a=1=2", "a=1%3D2"},
        {"Param-3=Value3&Param=Value2&%E1%88%B4=Value1", "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"},
        {"x=\xe1\x88\xb4", "x=%E1%88%B4"},
    };
    struct dyn_sigv4_input in = ddb_input();
    char got[128];
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        in.query = sl(cases[i][0]);
        creq_line(&in, 2, got, sizeof got);
        CHECK_EQ_STR(got, cases[i][1]);
    }
}

TEST(header_canonicalisation) {
    static const char *const text[5][2] = {
        {"X-B", "2"}, {"x-a", "  1 \t  2 "}, {"X-A", "\t3\r\n"}, {"x-b", ""}, {"Y", "\"a   b\""},
    };
    struct dyn_header h[5];
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_buf b = DYN_BUF_INIT(NULL);
    size_t i;
    for (i = 0; i < 5; i++) {
        h[i].name = sl(text[i][0]);
        h[i].value = sl(text[i][1]);
    }
    in.headers = h;
    in.n_headers = 5;
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_OK);
    CHECK(b.ptr && strncmp(b.ptr, "POST\n/\n\nx-a:1 2,3\nx-b:2,\ny:\"a b\"\n\nx-a;x-b;y\n", 43) == 0);
    dyn_buf_free(&b);

    /* no headers at all */
    in.n_headers = 0;
    in.headers = NULL;
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_OK);
    CHECK(b.ptr && strncmp(b.ptr, "POST\n/\n\n\n\n", 10) == 0);
    dyn_buf_free(&b);
}

/* Reference folding: trim, then every whitespace run becomes one space. */
static size_t fold_ref(const unsigned char *v, size_t n, char *out) {
    size_t i, o = 0;
    int pending = 0;
    for (i = 0; i < n; i++) {
        int sp = v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r' || v[i] == '\v' || v[i] == '\f';
        if (sp) {
            pending = o > 0;
        } else {
            if (pending) out[o++] = ' ';
            out[o++] = (char)v[i];
            pending = 0;
        }
    }
    return o;
}

/* Generated values (long runs, spaces near 8-byte boundaries, bytes >= 0x80). */
TEST(header_value_folding_matches_reference) {
    static const unsigned char alphabet[] = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', ' ', ' ', '\t', '\n', '\r', '\v',
                                             '\f', 0x80, 0xc3, 0xff, '"', 0x01, 0x7f, 0x21, 0x1f};
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_header h[1];
    struct dyn_buf b = DYN_BUF_INIT(NULL);
    unsigned char v[64];
    char want[80], line[96];
    uint32_t seed = 12345;
    int iter, bad = 0;
    size_t n, i, wn, ln;
    h[0].name = sl("X");
    in.headers = h;
    in.n_headers = 1;
    for (iter = 0; iter < 3000; iter++) {
        n = (size_t)(iter % 61);
        for (i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly letters, so that long whitespace-free runs occur */
            v[i] = (seed >> 16) % 4 ? (unsigned char)('a' + (seed >> 20) % 8) : alphabet[(seed >> 18) % sizeof alphabet];
        }
        h[0].value = dyn_slice_make((const char *)v, n);
        wn = fold_ref(v, n, want);
        dyn_buf_reset(&b);
        if (dyn_sigv4_canonical_request(&in, &b) != DYN_OK) {
            bad++;
            continue;
        }
        /* "POST\n/\n\nx:<value>\n\nx\n<hash>" */
        ln = (size_t)snprintf(line, sizeof line, "POST\n/\n\nx:");
        memcpy(line + ln, want, wn);
        ln += wn;
        line[ln++] = '\n';
        if (b.len < ln || memcmp(b.ptr, line, ln) != 0 || strncmp(b.ptr + ln, "\nx\n", 3) != 0) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    dyn_buf_free(&b);
}

/* A supplied fingerprint replaces hashing the secret, for better or worse. */
TEST(cached_with_known_fingerprint) {
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_sigv4_key_cache c;
    struct dyn_buf x = DYN_BUF_INIT(NULL), y = DYN_BUF_INIT(NULL);
    unsigned char fp[DYN_SHA256_LEN], wrong[DYN_SHA256_LEN];
    CHECK(dyn_sha256(SECRET, strlen(SECRET), fp) == DYN_OK);
    dyn_sigv4_key_cache_init(&c);
    CHECK(dyn_sigv4_authorization_cached_fp(&in, &c, fp, &x) == DYN_OK);
    CHECK(dyn_sigv4_authorization(&in, &y) == DYN_OK);
    CHECK(same(&x, &y));
    CHECK(memcmp(c.secret_fp, fp, sizeof fp) == 0);
    /* the same fingerprint with another secret: the cached key is (wrongly) reused */
    in.secret_key = sl("rotated-secret-000000000000000000000000");
    dyn_buf_reset(&x);
    CHECK(dyn_sigv4_authorization_cached_fp(&in, &c, fp, &x) == DYN_OK);
    CHECK(same(&x, &y));
    /* NULL means "hash it": the rotation is seen */
    dyn_buf_reset(&x);
    CHECK(dyn_sigv4_authorization_cached_fp(&in, &c, NULL, &x) == DYN_OK);
    CHECK(!same(&x, &y));
    memset(wrong, 0xab, sizeof wrong);
    dyn_buf_reset(&y);
    CHECK(dyn_sigv4_authorization_cached_fp(&in, &c, wrong, &y) == DYN_OK); /* a new fingerprint re-derives */
    CHECK(same(&x, &y));
    dyn_buf_free(&x);
    dyn_buf_free(&y);
}

/* Every byte: encoded in a path unless unreserved, valid in a name iff a tchar. */
TEST(character_classes_exhaustive) {
    static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    static const char tchar_extra[] = "!#$%&'*+^`|";
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_header h[1];
    char path[4], name[3], want[16], got[64];
    int c, bad_path = 0, bad_name = 0;
    h[0].value = sl("v");
    for (c = 1; c < 256; c++) {
        int is_unres = strchr(unreserved, c) != NULL;
        int is_tchar = is_unres || strchr(tchar_extra, c) != NULL;
        if (c == '/') continue;
        path[0] = '/', path[1] = 'x', path[2] = (char)c, path[3] = '\0';
        in = ddb_input();
        in.path = dyn_slice_make(path, 3);
        if (is_unres)
            snprintf(want, sizeof want, "/x%c", c);
        else
            snprintf(want, sizeof want, "/x%%%02X", c);
        creq_line(&in, 1, got, sizeof got);
        if (strcmp(got, want) != 0) bad_path++;

        name[0] = 'a', name[1] = (char)c, name[2] = '\0';
        h[0].name = dyn_slice_make(name, 2);
        in.headers = h;
        in.n_headers = 1;
        if ((dyn_sigv4_input_error(&in) == NULL) != is_tchar) bad_name++;
    }
    CHECK_EQ_INT(bad_path, 0);
    CHECK_EQ_INT(bad_name, 0);
}

/* More headers than fit on the stack: sorted the same way, with the heap index. */
TEST(many_headers) {
    struct dyn_header h[40];
    char names[40][8];
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_buf b = DYN_BUF_INIT(NULL);
    const char *p;
    int i, sorted = 1;
    for (i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "H-%02d", 39 - i);
        h[i].name = sl(names[i]);
        h[i].value = sl("v");
    }
    in.headers = h;
    in.n_headers = 40;
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_OK);
    p = b.ptr ? strstr(b.ptr, "\n\nh-00;h-01;") : NULL;
    CHECK(p != NULL);
    for (i = 0; b.ptr && i < 40; i++) {
        char line[16];
        snprintf(line, sizeof line, "h-%02d:v\n", i);
        if (strncmp(b.ptr + 8 + (size_t)i * 7, line, 7) != 0) sorted = 0;
    }
    CHECK(sorted);
    dyn_buf_free(&b);
}

/* ---- validation ------------------------------------------------------ */

TEST(input_validation) {
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_header bad[1];
    const char *bad_names[] = {"", "a b", "a:b", "\xc3\xa9", "a\n"};
    size_t i;
    struct dyn_buf b = DYN_BUF_INIT(NULL);

    CHECK(dyn_sigv4_input_error(&in) == NULL);
    CHECK(dyn_sigv4_input_error(NULL) != NULL);
    for (i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        in = ddb_input();
        bad[0].name = sl(bad_names[i]);
        bad[0].value = sl("v");
        in.headers = bad;
        in.n_headers = 1;
        CHECK(dyn_sigv4_input_error(&in) != NULL);
        CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_EINVAL);
        CHECK(dyn_sigv4_authorization(&in, &b) == DYN_EINVAL);
    }
    in = ddb_input();
    in.method = sl("");
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_EINVAL);
    in.method = sl("GE T");
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_EINVAL);

    in = ddb_input();
    in.region = sl("us/east");
    CHECK(dyn_sigv4_input_error(&in) != NULL);
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_OK); /* the region is not part of it */
    CHECK(dyn_sigv4_string_to_sign(&in, dyn_buf_slice(&b), &b) == DYN_EINVAL);
    in.region = sl("");
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_EINVAL);

    in = ddb_input();
    in.service = sl("dynamo db");
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_EINVAL);
    in = ddb_input();
    in.access_key = sl("AKID,X");
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_EINVAL);
    in = ddb_input();
    in.access_key = sl("");
    CHECK(dyn_sigv4_input_error(&in) != NULL);

    in = ddb_input();
    in.unix_time = DYN_SIGV4_MAX_TIME + 1;
    CHECK(dyn_sigv4_input_error(&in) != NULL);
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_EINVAL);
    in.unix_time = DYN_SIGV4_MIN_TIME - 1;
    CHECK(dyn_sigv4_string_to_sign(&in, DYN_SLICE_EMPTY, &b) == DYN_EINVAL);
    in.unix_time = DYN_SIGV4_MIN_TIME;
    CHECK(dyn_sigv4_input_error(&in) == NULL);

    /* an empty secret and an empty token are allowed */
    in = ddb_input();
    in.secret_key = DYN_SLICE_EMPTY;
    in.token = DYN_SLICE_EMPTY;
    CHECK(dyn_sigv4_input_error(&in) == NULL);
    dyn_buf_free(&b);
}

/* ---- truncation on failure ------------------------------------------- */

static int fail_after; /* allocations left before failing; < 0: never fail */
static int alloc_failures;

static void *failing_alloc(void *ud, void *p, size_t o, size_t n) {
    (void)ud;
    if (n && fail_after >= 0 && fail_after-- == 0) {
        alloc_failures++;
        return NULL;
    }
    return dyn_default_allocator()->fn(NULL, p, o, n);
}

enum stage { STAGE_CREQ, STAGE_STS, STAGE_AUTH };

static int run_stage(enum stage st, const struct dyn_sigv4_input *in, struct dyn_buf *out) {
    switch (st) {
    case STAGE_CREQ: return dyn_sigv4_canonical_request(in, out);
    case STAGE_STS: return dyn_sigv4_string_to_sign(in, sl("GET\n/\n\n\n\nx"), out);
    default: return dyn_sigv4_authorization(in, out);
    }
}

/*
 * Fails the k-th allocation for k = 0, 1, ... until the stage succeeds: each
 * failure must return DYN_ENOMEM and leave exactly the old contents.
 */
static void enomem_sweep(enum stage st, const struct dyn_sigv4_input *in, int min_failures) {
    static const char prefix[] = "keep me:";
    struct dyn_allocator a = {failing_alloc, NULL};
    struct dyn_buf ref = DYN_BUF_INIT(NULL);
    int k, rc, failures = 0;
    CHECK(dyn_buf_append_cstr(&ref, prefix) == DYN_OK);
    CHECK(run_stage(st, in, &ref) == DYN_OK);
    for (k = 0; k < 50; k++) {
        struct dyn_buf b = DYN_BUF_INIT(&a);
        fail_after = -1;
        CHECK(dyn_buf_append_cstr(&b, prefix) == DYN_OK);
        fail_after = k;
        rc = run_stage(st, in, &b);
        fail_after = -1;
        if (rc == DYN_OK) {
            CHECK_EQ_MEM(b.ptr, b.len, ref.ptr, ref.len);
            dyn_buf_free(&b);
            break;
        }
        failures++;
        CHECK_EQ_INT(rc, DYN_ENOMEM);
        CHECK_EQ_MEM(b.ptr, b.len, prefix, sizeof prefix - 1);
        dyn_buf_free(&b);
    }
    CHECK(k < 50);
    printf("  stage %d: %d allocation failures handled\n", (int)st, failures);
    CHECK(failures >= min_failures);
    dyn_buf_free(&ref);
}

TEST(truncates_on_enomem) {
    struct dyn_header h[20];
    char names[20][8];
    char big_path[3000];
    struct dyn_sigv4_input in = ddb_input();
    int i;
    for (i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "X-%d", i);
        h[i].name = sl(names[i]);
        h[i].value = sl("value");
    }
    memset(big_path, 'p', sizeof big_path - 1);
    big_path[0] = '/';
    big_path[sizeof big_path - 1] = '\0';
    /* a query (two scratch allocations), 20 headers (heap index), and an
     * output that must grow several times */
    in.headers = h;
    in.n_headers = 20;
    in.query = sl("b=2&a=1&c");
    in.path = sl(big_path);
    alloc_failures = 0;
    enomem_sweep(STAGE_CREQ, &in, 4);
    enomem_sweep(STAGE_STS, &in, 1);
    enomem_sweep(STAGE_AUTH, &in, 4);
    /* long scope parts make the string to sign and the header outgrow the
     * buffer after the canonical request is in it */
    in.path = sl("/");
    in.region = sl(big_path + 1);
    in.access_key = sl(big_path + 1);
    enomem_sweep(STAGE_AUTH, &in, 6);
    CHECK(alloc_failures >= 15);
}

TEST(truncates_on_einval) {
    struct dyn_sigv4_input in = ddb_input();
    struct dyn_buf b = DYN_BUF_INIT(NULL);
    CHECK(dyn_buf_append_cstr(&b, "keep") == DYN_OK);
    in.unix_time = DYN_SIGV4_MAX_TIME + 1;
    CHECK(dyn_sigv4_authorization(&in, &b) == DYN_EINVAL);
    CHECK_EQ_STR(b.ptr, "keep");
    in = ddb_input();
    in.method = sl("");
    CHECK(dyn_sigv4_canonical_request(&in, &b) == DYN_EINVAL);
    CHECK_EQ_STR(b.ptr, "keep");
    in = ddb_input();
    in.service = sl("");
    CHECK(dyn_sigv4_string_to_sign(&in, sl("x"), &b) == DYN_EINVAL);
    CHECK_EQ_STR(b.ptr, "keep");
    dyn_buf_free(&b);
}

int main(void) {
    RUN(aws_suite_all_cases);
    RUN(dynamodb_request_known_answer);
    RUN(stages_append);
    RUN(key_cache);
    RUN(amz_date_known);
    RUN(amz_date_matches_gmtime);
    RUN(path_canonicalisation);
    RUN(query_canonicalisation);
    RUN(header_canonicalisation);
    RUN(header_value_folding_matches_reference);
    RUN(cached_with_known_fingerprint);
    RUN(character_classes_exhaustive);
    RUN(many_headers);
    RUN(input_validation);
    RUN(truncates_on_enomem);
    RUN(truncates_on_einval);
    return testing_done();
}
