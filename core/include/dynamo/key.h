/*
 * dynamo/key.h - exact key identity.
 *
 * A key's identity is a byte string that is equal for two keys exactly when
 * DynamoDB sees them as the same key. The batch engine de-duplicates entries
 * and matches the items of a response to the keys asked for by identity:
 *
 *   struct dyn_key_part pk = { 'S', DYN_SLICE_LIT("user#1") };
 *   dyn_key_id(&pk, NULL, &id);                        from values, or
 *   dyn_key_id_from_item(item_json, "pk", "sk", &id);  from an AttributeValue map
 *
 * Layout: a part is its type letter ('S', 'N' or 'B') followed by its bytes:
 * a string's UTF-8, a number's canonical text (so 1, 1.0 and 10E-1 agree), a
 * binary's raw bytes. A one-part key is that part; a two-part key is the
 * length of the first part as 4 bytes big-endian, then both parts, so no two
 * keys share an identity whatever bytes their values hold.
 */
#ifndef DYNAMO_KEY_H
#define DYNAMO_KEY_H

#include "dynamo/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One key attribute's value: type 'S', 'N' (bytes: canonical number text) or 'B'. */
struct dyn_key_part {
    char type;
    dyn_slice bytes;
};

/* The identity's length for these parts (sk NULL: no sort key). */
size_t dyn_key_id_size(const struct dyn_key_part *pk, const struct dyn_key_part *sk);

/*
 * Writes the identity into out[0 .. dyn_key_id_size) (no terminator). The
 * caller makes sure the room is there. Returns the length written.
 */
size_t dyn_key_id_write(const struct dyn_key_part *pk, const struct dyn_key_part *sk, char *out);

/* Appends the identity to out. Returns DYN_OK, DYN_EINVAL (a type other than S, N, B), DYN_ENOMEM. */
int dyn_key_id(const struct dyn_key_part *pk, const struct dyn_key_part *sk, struct dyn_buf *out);

/*
 * Appends the identity of the key held by an item (or key) in AttributeValue
 * JSON, `{"pk":{"S":"a"},"sk":{"N":"1"},...}`: the top-level members named
 * pk and sk (sk empty: no sort key). Strings are unescaped, numbers put in
 * canonical form, binaries decoded from base64, so the identity is the one
 * dyn_key_id gives for the same values. Only the members up to the key
 * attributes are read (the rest is not validated). Returns DYN_OK, DYN_EJSON
 * (not a JSON object), DYN_EINVAL (a key attribute missing, of another type
 * than S, N, B, or not a valid value), DYN_ENOMEM. out is unchanged on failure.
 */
int dyn_key_id_from_item(dyn_slice item_json, dyn_slice pk, dyn_slice sk, struct dyn_buf *out);

/*
 * As dyn_key_id_from_item for the object at r->p (a scanner, see
 * dynamo/json.h), read to its end: r->p is left after it, so the caller has
 * the object's extent as well. Members other than the key attributes are
 * only skipped by their extent (dyn_json_scan_extent), not validated.
 * On failure r->p is unchanged.
 */
struct dyn_json_reader;
int dyn_key_id_scan(struct dyn_json_reader *r, dyn_slice pk, dyn_slice sk, struct dyn_buf *out);

#ifdef __cplusplus
}
#endif
#endif
