/* Exact key identity; see dynamo/key.h. */
#include "dynamo/key.h"

#include "dynamo/av.h"
#include "dynamo/json.h"

static int s_valid_type(char t) { return t == 'S' || t == 'N' || t == 'B'; }

size_t dyn_key_id_size(const struct dyn_key_part *pk, const struct dyn_key_part *sk) {
    return 1 + pk->bytes.len + (sk ? 5 + sk->bytes.len : 0);
}

static char *s_put_part(char *o, const struct dyn_key_part *kp) {
    *o++ = kp->type;
    if (kp->bytes.len) memcpy(o, kp->bytes.ptr, kp->bytes.len);
    return o + kp->bytes.len;
}

size_t dyn_key_id_write(const struct dyn_key_part *pk, const struct dyn_key_part *sk, char *out) {
    char *o = out;
    if (sk) {
        size_t la = 1 + pk->bytes.len;
        *o++ = (char)(la >> 24);
        *o++ = (char)(la >> 16);
        *o++ = (char)(la >> 8);
        *o++ = (char)la;
    }
    o = s_put_part(o, pk);
    if (sk) o = s_put_part(o, sk);
    return (size_t)(o - out);
}

int dyn_key_id(const struct dyn_key_part *pk, const struct dyn_key_part *sk, struct dyn_buf *out) {
    size_t n;
    int rc;
    if (!s_valid_type(pk->type) || (sk && !s_valid_type(sk->type))) return DYN_EINVAL;
    n = dyn_key_id_size(pk, sk);
    if ((rc = dyn_buf_reserve(out, n)) < 0) return rc;
    out->len += dyn_key_id_write(pk, sk, out->ptr + out->len);
    out->ptr[out->len] = '\0';
    return DYN_OK;
}

/*
 * Reads one AttributeValue ({"S":"..."}) at r->p and appends it to out as a
 * key part: its type letter, then its bytes. Returns DYN_OK, DYN_EINVAL (not
 * a single S, N or B member, or a bad value), DYN_EJSON, DYN_ENOMEM.
 */
static int s_read_part(struct dyn_json_reader *r, struct dyn_buf *out) {
    struct dyn_json_token t;
    struct dyn_buf raw = DYN_BUF_INIT(out->alloc); /* only an escaped string allocates */
    char canon[DYN_AV_NUM_MAX], type;
    size_t clen;
    int rc, more;
    if ((rc = dyn_json_scan_char(r, '{')) < 0) goto cleanup;
    if ((rc = dyn_json_scan_name(r, &t)) < 0) goto cleanup;
    if (t.text.len != 1 || !s_valid_type(t.text.ptr[0])) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    type = t.text.ptr[0];
    r->p = dyn_json_skip_ws(r->p, r->end);
    if (r->p >= r->end || *r->p != '"') {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    if ((rc = dyn_json_scan_string_fast(r, &t)) < 0) goto cleanup;
    if (t.escaped) {
        if ((rc = dyn_json_unescape(t.text, &raw)) < 0) goto cleanup;
        t.text = dyn_buf_slice(&raw);
    }
    if ((rc = dyn_buf_putc(out, type)) < 0) goto cleanup;
    switch (type) {
    case 'S': rc = dyn_buf_append_slice(out, t.text); break;
    case 'N':
        rc = dyn_av_number_canon(t.text, canon, &clen, NULL);
        if (rc == DYN_OK) rc = dyn_buf_append(out, canon, clen);
        else if (rc != DYN_ENOMEM) rc = DYN_EINVAL;
        break;
    default: rc = dyn_base64_decode(t.text, out); break;
    }
    if (rc < 0) goto cleanup;
    if ((rc = dyn_json_scan_more(r, '}', 0, &more)) < 0) {
        rc = DYN_EINVAL; /* a second member */
        goto cleanup;
    }
    if (more) rc = DYN_EINVAL;
cleanup:
    dyn_buf_free(&raw);
    return rc;
}

static void s_reverse(char *p, size_t n) {
    size_t i;
    for (i = 0; i < n / 2; i++) {
        char c = p[i];
        p[i] = p[n - 1 - i];
        p[n - 1 - i] = c;
    }
}

/* The object at r.p; with `whole` read to its end, else only up to the key attributes. */
static int s_scan(struct dyn_json_reader *rp, dyn_slice pk, dyn_slice sk, struct dyn_buf *out, int whole) {
    struct dyn_json_reader r = *rp;
    struct dyn_json_token t;
    struct dyn_buf name = DYN_BUF_INIT(out->alloc);
    size_t start = out->len, parts, part_len[2] = {0, 0};
    int have[2] = {0, 0}, two = sk.len > 0, sk_first = 0, rc, more, first = 1;
    /* the parts are written straight into out, after room for the length */
    if (two && (rc = dyn_buf_append(out, "\0\0\0\0", 4)) < 0) goto cleanup;
    parts = out->len;
    if ((rc = dyn_json_scan_char(&r, '{')) < 0) goto cleanup;
    /* the members up to the key attributes; the rest only when whole, by extent */
    while (whole || !(have[0] && (!two || have[1]))) {
        dyn_slice key;
        int which = -1;
        size_t before;
        if ((rc = dyn_json_scan_more(&r, '}', first, &more)) < 0) goto cleanup;
        first = 0;
        if (!more) break;
        if ((rc = dyn_json_scan_name(&r, &t)) < 0) goto cleanup;
        key = t.text;
        if (t.escaped) {
            dyn_buf_reset(&name);
            if ((rc = dyn_json_unescape(t.text, &name)) < 0) goto cleanup;
            key = dyn_buf_slice(&name);
        }
        if (!have[0] && dyn_slice_eq(key, pk)) which = 0;
        else if (have[0] && dyn_slice_eq(key, pk)) which = 2; /* a second pk member: not an item */
        else if (two && !have[1] && dyn_slice_eq(key, sk)) which = 1;
        if (which == 2) {
            rc = DYN_EINVAL;
            goto cleanup;
        }
        if (which < 0) {
            /* another attribute: only its extent matters here */
            r.p = dyn_json_skip_ws(r.p, r.end);
            rc = r.p < r.end && (*r.p == '{' || *r.p == '[') ? dyn_json_scan_extent(&r) : dyn_json_scan_skip(&r);
            if (rc < 0) goto cleanup;
            continue;
        }
        before = out->len;
        if ((rc = s_read_part(&r, out)) < 0) goto cleanup;
        part_len[which] = out->len - before;
        if (which == 1 && !have[0]) sk_first = 1;
        have[which] = 1;
    }
    if (!have[0] || (two && !have[1])) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    if (two) {
        char *p = out->ptr + parts;
        size_t la = part_len[0];
        if (sk_first) {
            /* sk part, pk part -> pk part, sk part: rotate by reversing each, then the whole */
            s_reverse(p, part_len[1]);
            s_reverse(p + part_len[1], part_len[0]);
            s_reverse(p, part_len[0] + part_len[1]);
        }
        out->ptr[start] = (char)(la >> 24);
        out->ptr[start + 1] = (char)(la >> 16);
        out->ptr[start + 2] = (char)(la >> 8);
        out->ptr[start + 3] = (char)la;
    }
    rc = DYN_OK;
    rp->p = r.p;
cleanup:
    if (rc < 0) {
        dyn_buf_truncate(out, start);
        rp->err = r.err;
        rp->err_pos = r.err_pos;
    }
    dyn_buf_free(&name);
    return rc;
}

int dyn_key_id_from_item(dyn_slice item_json, dyn_slice pk, dyn_slice sk, struct dyn_buf *out) {
    struct dyn_json_reader r;
    dyn_json_reader_init(&r, item_json);
    return s_scan(&r, pk, sk, out, 0);
}

int dyn_key_id_scan(struct dyn_json_reader *r, dyn_slice pk, dyn_slice sk, struct dyn_buf *out) {
    return s_scan(r, pk, sk, out, 1);
}
