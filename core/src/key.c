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
 * Reads one AttributeValue ({"S":"..."}; the '{' is already read) into a key
 * part whose bytes go to `store` (so they survive the reader). Returns DYN_OK,
 * DYN_EINVAL (not a single S, N or B member, or a bad value), DYN_EJSON,
 * DYN_ENOMEM.
 */
static int s_read_part(struct dyn_json_reader *r, struct dyn_buf *store, char *type) {
    struct dyn_json_token t;
    struct dyn_buf raw = DYN_BUF_INIT(store->alloc);
    char canon[DYN_AV_NUM_MAX];
    size_t clen;
    int rc;
    if ((rc = dyn_json_next(r, &t)) < 0) goto cleanup;
    if (t.type != DYN_JSON_KEY || t.text.len != 1 || !s_valid_type(t.text.ptr[0])) {
        rc = t.type == DYN_JSON_KEY ? DYN_EINVAL : DYN_EJSON;
        goto cleanup;
    }
    *type = t.text.ptr[0];
    if ((rc = dyn_json_next(r, &t)) < 0) goto cleanup;
    if (t.type != DYN_JSON_STRING) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    if (t.escaped) {
        if ((rc = dyn_json_unescape(t.text, &raw)) < 0) goto cleanup;
        t.text = dyn_buf_slice(&raw);
    }
    switch (*type) {
    case 'S': rc = dyn_buf_append_slice(store, t.text); break;
    case 'N':
        rc = dyn_av_number_canon(t.text, canon, &clen, NULL);
        if (rc == DYN_OK) rc = dyn_buf_append(store, canon, clen);
        else if (rc != DYN_ENOMEM) rc = DYN_EINVAL;
        break;
    default:
        rc = dyn_base64_decode(t.text, store);
        break;
    }
    if (rc < 0) goto cleanup;
    if ((rc = dyn_json_next(r, &t)) < 0) goto cleanup;
    if (t.type != DYN_JSON_OBJ_END) rc = t.type == DYN_JSON_KEY ? DYN_EINVAL : DYN_EJSON;
cleanup:
    dyn_buf_free(&raw);
    return rc;
}

int dyn_key_id_from_item(dyn_slice item_json, dyn_slice pk, dyn_slice sk, struct dyn_buf *out) {
    struct dyn_json_reader r;
    struct dyn_json_token t;
    struct dyn_buf name = DYN_BUF_INIT(out->alloc), vals = DYN_BUF_INIT(out->alloc);
    struct dyn_key_part parts[2];
    size_t split = 0; /* parts[0]'s bytes are vals[0..split), parts[1]'s the rest */
    int have[2] = {0, 0}, two = sk.len > 0, rc;
    dyn_json_reader_init(&r, item_json);
    if ((rc = dyn_json_next(&r, &t)) < 0) goto cleanup;
    if (t.type != DYN_JSON_OBJ_BEGIN) {
        rc = DYN_EJSON;
        goto cleanup;
    }
    for (;;) {
        dyn_slice key;
        int which = -1;
        if ((rc = dyn_json_next(&r, &t)) < 0) goto cleanup;
        if (t.type == DYN_JSON_OBJ_END) break;
        key = t.text;
        if (t.escaped) {
            dyn_buf_reset(&name);
            if ((rc = dyn_json_unescape(t.text, &name)) < 0) goto cleanup;
            key = dyn_buf_slice(&name);
        }
        if (!have[0] && dyn_slice_eq(key, pk)) which = 0;
        else if (two && !have[1] && dyn_slice_eq(key, sk)) which = 1;
        if ((rc = dyn_json_next(&r, &t)) < 0) goto cleanup;
        if (which < 0) {
            if ((rc = dyn_json_skip(&r, &t)) < 0) goto cleanup;
            continue;
        }
        if (t.type != DYN_JSON_OBJ_BEGIN) {
            rc = DYN_EINVAL;
            goto cleanup;
        }
        /* the partition key's bytes go first in vals whichever member comes first */
        if (which == 0 && have[1]) {
            struct dyn_buf tmp = DYN_BUF_INIT(out->alloc);
            char type;
            if ((rc = s_read_part(&r, &tmp, &type)) < 0 || (rc = dyn_buf_append_slice(&tmp, dyn_buf_slice(&vals))) < 0) {
                dyn_buf_free(&tmp);
                goto cleanup;
            }
            split = tmp.len - vals.len;
            dyn_buf_free(&vals);
            vals = tmp;
            parts[0].type = type;
        } else {
            size_t before = vals.len;
            if ((rc = s_read_part(&r, &vals, &parts[which].type)) < 0) goto cleanup;
            if (which == 0) split = vals.len - before;
        }
        have[which] = 1;
    }
    if (!have[0] || (two && !have[1])) {
        rc = DYN_EINVAL;
        goto cleanup;
    }
    parts[0].bytes = dyn_slice_make(vals.ptr ? vals.ptr : "", split);
    parts[1].bytes = dyn_slice_make(vals.ptr ? vals.ptr + split : "", vals.len - split);
    rc = dyn_key_id(&parts[0], two ? &parts[1] : NULL, out);
cleanup:
    dyn_buf_free(&name);
    dyn_buf_free(&vals);
    return rc;
}
