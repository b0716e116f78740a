/*
 * dynamo/av.h - the value-level pieces of the DynamoDB AttributeValue codec,
 * with no Lua: DynamoDB numbers (canonical text, shortest float digits,
 * classification for decoding), integer formatting and base64.
 *
 * Canonical number text is what DynamoDB stores and returns: plain decimal,
 * optional '-', no exponent, no leading zeros ("0.5", never ".5"), no trailing
 * fractional zeros and no lone '.', zero written "0" (never "-0"). It holds at
 * most 38 significant digits and its magnitude is 0 or within
 * 1E-130 .. 9.9999999999999999999999999999999999999E+125.
 */
#ifndef DYNAMO_AV_H
#define DYNAMO_AV_H

#include "dynamo/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for any canonical number text plus its NUL ("-0." + 129 zeros + 38 digits). */
#define DYN_AV_NUM_MAX 176
#define DYN_AV_MAX_DIGITS 38
#define DYN_AV_MIN_EXP (-130) /* smallest power of ten of the leading digit */
#define DYN_AV_MAX_EXP 125    /* largest power of ten of the leading digit */

/* Why a number was refused (the status code alone says EINVAL or ERANGE). */
enum dyn_av_num_err {
    DYN_AV_NUM_OK = 0,
    DYN_AV_NUM_SYNTAX,    /* not a decimal number (DYN_EINVAL) */
    DYN_AV_NUM_PRECISION, /* more than 38 significant digits (DYN_EINVAL) */
    DYN_AV_NUM_TOO_LARGE, /* magnitude above 9.99..E+125 (DYN_ERANGE) */
    DYN_AV_NUM_TOO_SMALL, /* non-zero magnitude below 1E-130 (DYN_ERANGE) */
    DYN_AV_NUM_NOT_FINITE /* NaN or infinity (DYN_EINVAL) */
};

/*
 * Canonicalises decimal text: optional sign ('+' or '-'), digits with at most
 * one '.', at least one digit, optional exponent ('e'/'E', optional sign,
 * digits). No whitespace. Writes the canonical text and a NUL to out
 * (DYN_AV_NUM_MAX bytes) and its length to *len. Returns DYN_OK, DYN_EINVAL
 * (syntax, precision) or DYN_ERANGE (magnitude); *why (may be NULL) tells
 * which. Nothing is ever rounded: too many digits is an error.
 */
int dyn_av_number_canon(dyn_slice text, char *out, size_t *len, enum dyn_av_num_err *why);

/*
 * The shortest digits that read back (strtod) to |v|: v must be finite and
 * not zero. Writes 1..17 digit characters (no NUL, first and last digit not
 * '0') to digits and returns their count; *exp10 receives the power of ten of
 * the last digit, so |v| reads as digits * 10^exp10 (5e-324 gives "5", -324).
 */
int dyn_av_double_digits(double v, char digits[17], int *exp10);

/*
 * Canonical text of a double from its shortest digits (0.1 -> "0.1", 1e21 ->
 * "1000000000000000000000", -0.0 -> "0"). Returns DYN_OK, DYN_EINVAL for NaN
 * and infinities, DYN_ERANGE for magnitudes DynamoDB cannot store
 * (1.7976931348623157e308, 5e-324); *why (may be NULL) tells which.
 */
int dyn_av_number_from_double(double v, char *out, size_t *len, enum dyn_av_num_err *why);

/*
 * Decimal text of v into out (at least 21 bytes, NUL added); returns the
 * length. This is also v's canonical number text.
 */
size_t dyn_av_format_int(int64_t v, char *out);

/*
 * strtod of decimal text (a JSON number or number text) into *out, ignoring
 * the C locale's decimal separator. Text that is not a number gives 0;
 * magnitudes beyond a double give +-HUGE_VAL, as strtod does. Texts longer
 * than DYN_AV_NUM_MAX - 1 bytes are copied with `alloc` (NULL: the default).
 * Returns DYN_OK or DYN_ENOMEM.
 */
int dyn_av_parse_double(dyn_slice text, const struct dyn_allocator *alloc, double *out);

/* How a canonical N decodes. */
enum dyn_av_num_class {
    DYN_AV_INT = 1, /* integral and within int64: *i is set */
    DYN_AV_FLOAT,   /* the shortest text of the double *d is exactly this text */
    DYN_AV_DECIMAL  /* neither: keep the text */
};

/*
 * Classifies canonical number text (as produced by dyn_av_number_canon; other
 * text gives unspecified results). Sets *i for DYN_AV_INT and *d for
 * DYN_AV_FLOAT. INT64_MIN and INT64_MAX are DYN_AV_INT, one beyond is not.
 */
enum dyn_av_num_class dyn_av_number_classify(dyn_slice canon, int64_t *i, double *d);

/*
 * Compares two canonical number texts by value: returns <0, 0 or >0. Exact
 * (no conversion to floating point).
 */
int dyn_av_number_cmp(dyn_slice a, dyn_slice b);

/* ---- base64 (RFC 4648 standard alphabet, with padding) ----------------- */

/* Length of the base64 text for n bytes. */
static inline size_t dyn_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

/* Appends the base64 text of in to out. DYN_OK or DYN_ENOMEM. */
int dyn_base64_encode(dyn_slice in, struct dyn_buf *out);

/*
 * Appends the bytes that base64 text in stands for to out. Strict: the length
 * must be a multiple of 4, only the standard alphabet, '=' only as one or two
 * final padding characters, unused bits zero (so each byte string has exactly
 * one accepted text). Returns DYN_OK, DYN_EINVAL (out unchanged) or DYN_ENOMEM.
 */
int dyn_base64_decode(dyn_slice in, struct dyn_buf *out);

#ifdef __cplusplus
}
#endif
#endif
