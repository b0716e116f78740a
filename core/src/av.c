/* DynamoDB numbers and base64; see dynamo/av.h. */
#include "dynamo/av.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Every power of ten a double holds exactly. */
static const double s_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static const char s_digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                    "8081828384858687888990919293949596979899";

size_t dyn_av_format_int(int64_t v, char *out) {
    char tmp[24];
    char *p = tmp + sizeof tmp;
    /* Negate in unsigned arithmetic so INT64_MIN needs no special case. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        p -= 2;
        memcpy(p, s_digit_pairs + 2 * r, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, s_digit_pairs + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    n = (size_t)(tmp + sizeof tmp - p);
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

/*
 * Writes the canonical text of (neg ? -1 : 1) * dig[0..n) * 10^q, where dig
 * has no leading or trailing zeros, after checking precision and range.
 */
static int s_build(int neg, const char *dig, int64_t n, int64_t q, char *out, size_t *len,
                   enum dyn_av_num_err *why) {
    int64_t e = q + n - 1; /* power of ten of the leading digit */
    char *p = out;
    enum dyn_av_num_err w = DYN_AV_NUM_OK;
    int rc = DYN_OK;
    if (n > DYN_AV_MAX_DIGITS) {
        w = DYN_AV_NUM_PRECISION;
        rc = DYN_EINVAL;
    } else if (e > DYN_AV_MAX_EXP) {
        w = DYN_AV_NUM_TOO_LARGE;
        rc = DYN_ERANGE;
    } else if (e < DYN_AV_MIN_EXP) {
        w = DYN_AV_NUM_TOO_SMALL;
        rc = DYN_ERANGE;
    }
    if (why) *why = w;
    if (rc != DYN_OK) return rc;
    if (neg) *p++ = '-';
    if (q >= 0) {
        memcpy(p, dig, (size_t)n);
        p += n;
        memset(p, '0', (size_t)q);
        p += q;
    } else if (e >= 0) {
        memcpy(p, dig, (size_t)(e + 1));
        p += e + 1;
        *p++ = '.';
        memcpy(p, dig + e + 1, (size_t)(n - e - 1));
        p += n - e - 1;
    } else {
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)(-e - 1));
        p += -e - 1;
        memcpy(p, dig, (size_t)n);
        p += n;
    }
    *p = '\0';
    *len = (size_t)(p - out);
    return DYN_OK;
}

static int s_zero(char *out, size_t *len, enum dyn_av_num_err *why) {
    out[0] = '0';
    out[1] = '\0';
    *len = 1;
    if (why) *why = DYN_AV_NUM_OK;
    return DYN_OK;
}

int dyn_av_number_canon(dyn_slice text, char *out, size_t *len, enum dyn_av_num_err *why) {
    const char *p = text.ptr, *end = text.ptr + text.len;
    char dig[DYN_AV_MAX_DIGITS + 1];
    int neg = 0, seen_digit = 0, seen_point = 0;
    /* Indexes run over the mantissa digits, the '.' left out. */
    int64_t idx = 0, nint = 0, first = -1, last = -1, exp = 0;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    for (; p < end; p++) {
        char c = *p;
        if (c >= '0' && c <= '9') {
            seen_digit = 1;
            if (c != '0') {
                if (first < 0) first = idx;
                last = idx;
            }
            /* Only the first 39 digits from the leading one can matter: with
               more significant digits the number is refused anyway. */
            if (first >= 0 && idx - first <= DYN_AV_MAX_DIGITS) dig[idx - first] = c;
            idx++;
            if (!seen_point) nint++;
        } else if (c == '.' && !seen_point) {
            seen_point = 1;
        } else {
            break;
        }
    }
    if (!seen_digit) goto syntax;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9') goto syntax;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            /* Saturate: far beyond any accepted exponent, yet no overflow. */
            if (exp < 1000000000) exp = exp * 10 + (*p - '0');
        }
        if (eneg) exp = -exp;
    }
    if (p != end) goto syntax;
    if (first < 0) return s_zero(out, len, why);
    return s_build(neg, dig, last - first + 1, nint - 1 - last + exp, out, len, why);
syntax:
    if (why) *why = DYN_AV_NUM_SYNTAX;
    return DYN_EINVAL;
}

/* strtod that ignores the C locale's decimal separator: our text uses '.'. */
static double s_strtod(const char *s) {
    const char *dp = localeconv()->decimal_point;
    char tmp[64];
    size_t n, i;
    if (dp[0] == '.' && dp[1] == '\0') return strtod(s, NULL);
    n = strlen(s);
    if (n >= sizeof tmp || strlen(dp) != 1) return strtod(s, NULL);
    for (i = 0; i <= n; i++) tmp[i] = s[i] == '.' ? dp[0] : s[i];
    return strtod(tmp, NULL);
}

/* Drops trailing zeros of dig[0..n), raising *q; returns the new count. */
static int s_trim(const char *dig, int n, int *q) {
    while (n > 1 && dig[n - 1] == '0') {
        n--;
        (*q)++;
    }
    return n;
}

int dyn_av_double_digits(double v, char digits[17], int *exp10) {
    double a = fabs(v);
    char buf[40];
    const char *p;
    int n = 0, k, prec, e;
    /*
     * Fast path: a value with few decimals is an integer m < 1e15 once scaled
     * by 10^k. The check m / 10^k == a is exact (m and 10^k are exact, the
     * division rounds once, like strtod), and a decimal of at most 15 digits
     * that reads back to a is the only one (DBL_DIG), so this is the same
     * answer the %.15e route below would give.
     */
    if (a < 1e15) {
        for (k = 0; k <= 15; k++) {
            double m = a * s_pow10[k];
            if (m >= 1e15) break;
            if (m == (double)(int64_t)m && m != 0 && m / s_pow10[k] == a) {
                n = (int)dyn_av_format_int((int64_t)m, buf);
                memcpy(digits, buf, (size_t)n);
                *exp10 = -k;
                return s_trim(digits, n, exp10);
            }
        }
    }
    /* A normal double is the only one that any decimal of at most 15 digits
       reads as (DBL_DIG), so when such a decimal exists %.15e finds it.
       Subnormals have fewer bits: there the search starts at one digit. */
    for (prec = a < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, a);
        if (prec == 17 || s_strtod(buf) == a) break;
    }
    /* buf is d.ddd...e[+-]XX; the separator may be a locale's, skip it. */
    for (p = buf; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9' && n < 17) digits[n++] = *p;
    }
    e = atoi(p + 1);
    *exp10 = e - (n - 1);
    return s_trim(digits, n, exp10);
}

int dyn_av_number_from_double(double v, char *out, size_t *len, enum dyn_av_num_err *why) {
    char dig[17];
    int n, q;
    if (isnan(v) || isinf(v)) {
        if (why) *why = DYN_AV_NUM_NOT_FINITE;
        return DYN_EINVAL;
    }
    if (v == 0) return s_zero(out, len, why);
    /* Integral values that fit int64 exactly are common: print them directly. */
    if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(int64_t)v) {
        *len = dyn_av_format_int((int64_t)v, out);
        if (why) *why = DYN_AV_NUM_OK;
        return DYN_OK;
    }
    n = dyn_av_double_digits(v, dig, &q);
    return s_build(v < 0, dig, n, q, out, len, why);
}

/* strtod of a slice (at most DYN_AV_NUM_MAX - 1 bytes: canonical text). */
static double s_slice_strtod(dyn_slice s) {
    char tmp[DYN_AV_NUM_MAX];
    size_t n = s.len < sizeof tmp ? s.len : sizeof tmp - 1;
    memcpy(tmp, s.ptr, n);
    tmp[n] = '\0';
    return s_strtod(tmp);
}

int dyn_av_parse_double(dyn_slice text, const struct dyn_allocator *alloc, double *out) {
    char *heap;
    if (text.len < DYN_AV_NUM_MAX) {
        *out = s_slice_strtod(text);
        return DYN_OK;
    }
    /* Long number texts (JSON allows any length) are rare: copy them. */
    if (!alloc) alloc = dyn_default_allocator();
    heap = dyn_mem_alloc(alloc, text.len + 1);
    if (!heap) return DYN_ENOMEM;
    memcpy(heap, text.ptr, text.len);
    heap[text.len] = '\0';
    *out = s_strtod(heap);
    dyn_mem_free(alloc, heap, text.len + 1);
    return DYN_OK;
}

enum dyn_av_num_class dyn_av_number_classify(dyn_slice canon, int64_t *i, double *d) {
    const char *p = canon.ptr, *end = canon.ptr + canon.len;
    int neg = 0, point = 0, nsig = 0, pend = 0, q = 0;
    uint64_t m = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (!memchr(p, '.', (size_t)(end - p)) && end - p <= 19) {
        /* 19 digits never overflow uint64; then compare with the limits. */
        uint64_t u = 0;
        const char *s;
        for (s = p; s < end; s++) u = u * 10 + (uint64_t)(*s - '0');
        if (!neg && u <= (uint64_t)INT64_MAX) {
            *i = (int64_t)u;
            return DYN_AV_INT;
        }
        if (neg && u <= (uint64_t)INT64_MAX + 1) {
            *i = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
            return DYN_AV_INT;
        }
    }
    /* Significant digits into m (while they fit), value = m * 10^q. Zeros
       after the leading digit wait in pend until a non-zero digit follows. */
    for (; p < end; p++) {
        if (*p == '.') {
            point = 1;
            continue;
        }
        if (point) q--;
        if (*p == '0') {
            if (nsig) pend++;
            continue;
        }
        for (; pend; pend--, nsig++)
            if (nsig < 19) m *= 10;
        if (nsig < 19) m = m * 10 + (uint64_t)(*p - '0');
        nsig++;
    }
    q += pend; /* trailing zeros of an integer */
    if (nsig > 17) return DYN_AV_DECIMAL; /* no double needs more than 17 */
    if (nsig <= 15) {
        double v;
        /* At most 15 digits always survive a trip through a double (DBL_DIG). */
        if (q >= -22 && q <= 22 && m < (UINT64_C(1) << 53)) {
            /* Both operands exact: the result rounds once, as strtod's does. */
            v = q < 0 ? (double)m / s_pow10[-q] : (double)m * s_pow10[q];
            *d = neg ? -v : v;
        } else {
            *d = s_slice_strtod(canon);
        }
        return DYN_AV_FLOAT;
    }
    {
        /* 16 or 17 digits: a float only when its shortest text is this text. */
        char back[DYN_AV_NUM_MAX];
        size_t blen;
        double v = s_slice_strtod(canon);
        if (dyn_av_number_from_double(v, back, &blen, NULL) != DYN_OK) return DYN_AV_DECIMAL;
        if (blen != canon.len || memcmp(back, canon.ptr, blen) != 0) return DYN_AV_DECIMAL;
        *d = v;
        return DYN_AV_FLOAT;
    }
}

int dyn_av_number_cmp(dyn_slice a, dyn_slice b) {
    int na = a.len > 0 && a.ptr[0] == '-', nb = b.len > 0 && b.ptr[0] == '-';
    const char *pa = a.ptr + na, *pb = b.ptr + nb;
    size_t la = a.len - (size_t)na, lb = b.len - (size_t)nb, ia, ib;
    const char *dot;
    int c, sign;
    /* Zero is never negative in canonical text, so signs order first. */
    if (na != nb) return na ? -1 : 1;
    sign = na ? -1 : 1;
    dot = memchr(pa, '.', la);
    ia = dot ? (size_t)(dot - pa) : la;
    dot = memchr(pb, '.', lb);
    ib = dot ? (size_t)(dot - pb) : lb;
    /* No leading zeros: a longer integer part is a larger magnitude. */
    if (ia != ib) return ia < ib ? -sign : sign;
    c = memcmp(pa, pb, ia);
    if (c) return c < 0 ? -sign : sign;
    /* Same integer part; fractions have no trailing zeros, so plain
       lexicographic order (a prefix first) is numeric order. */
    {
        size_t fa = la > ia ? la - ia - 1 : 0, fb = lb > ib ? lb - ib - 1 : 0;
        size_t nmin = fa < fb ? fa : fb;
        c = nmin ? memcmp(pa + ia + 1, pb + ib + 1, nmin) : 0;
        if (c) return c < 0 ? -sign : sign;
        if (fa != fb) return fa < fb ? -sign : sign;
    }
    return 0;
}

/* ---- base64 ----------------------------------------------------------- */

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 64 for '=', 255 for anything else. */
static const unsigned char s_b64_rev[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255, 255,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255,  64, 255, 255,
    255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255, 255,
    255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

int dyn_base64_encode(dyn_slice in, struct dyn_buf *out) {
    const unsigned char *s = (const unsigned char *)in.ptr;
    size_t i = 0, n = in.len;
    char *d;
    int rc = dyn_buf_reserve(out, dyn_base64_encoded_len(n));
    if (rc) return rc;
    d = out->ptr + out->len;
    for (; i + 3 <= n; i += 3) {
        uint32_t w = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        d[0] = s_b64[w >> 18];
        d[1] = s_b64[(w >> 12) & 63];
        d[2] = s_b64[(w >> 6) & 63];
        d[3] = s_b64[w & 63];
        d += 4;
    }
    if (n - i == 1) {
        uint32_t w = (uint32_t)s[i] << 16;
        d[0] = s_b64[w >> 18];
        d[1] = s_b64[(w >> 12) & 63];
        d[2] = '=';
        d[3] = '=';
        d += 4;
    } else if (n - i == 2) {
        uint32_t w = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        d[0] = s_b64[w >> 18];
        d[1] = s_b64[(w >> 12) & 63];
        d[2] = s_b64[(w >> 6) & 63];
        d[3] = '=';
        d += 4;
    }
    out->len = (size_t)(d - out->ptr);
    out->ptr[out->len] = '\0';
    return DYN_OK;
}

int dyn_base64_decode(dyn_slice in, struct dyn_buf *out) {
    const unsigned char *s = (const unsigned char *)in.ptr;
    size_t i, n = in.len, pad = 0;
    char *d;
    int rc;
    if (n % 4) return DYN_EINVAL;
    if (n && s[n - 1] == '=') pad = (n >= 2 && s[n - 2] == '=') ? 2 : 1;
    if ((rc = dyn_buf_reserve(out, n / 4 * 3)) != DYN_OK) return rc;
    d = out->ptr + out->len;
    for (i = 0; i < n; i += 4) {
        unsigned a = s_b64_rev[s[i]], b = s_b64_rev[s[i + 1]], c = s_b64_rev[s[i + 2]], e = s_b64_rev[s[i + 3]];
        int last = i + 4 == n;
        if (last && pad) {
            /* "xx==" or "xxx=": the unused low bits must be zero. */
            if (a > 63 || b > 63) goto bad;
            if (pad == 2) {
                if (c != 64 || e != 64 || (b & 15)) goto bad;
                *d++ = (char)((a << 2) | (b >> 4));
            } else {
                if (c > 63 || e != 64 || (c & 3)) goto bad;
                *d++ = (char)((a << 2) | (b >> 4));
                *d++ = (char)(((b & 15) << 4) | (c >> 2));
            }
        } else {
            if ((a | b | c | e) > 63) goto bad;
            *d++ = (char)((a << 2) | (b >> 4));
            *d++ = (char)(((b & 15) << 4) | (c >> 2));
            *d++ = (char)(((c & 3) << 6) | e);
        }
    }
    out->len = (size_t)(d - out->ptr);
    out->ptr[out->len] = '\0';
    return DYN_OK;
bad:
    if (out->cap) out->ptr[out->len] = '\0';
    return DYN_EINVAL;
}
