/*
 * dynamo/json.h - JSON writing helpers and a pull reader, with no Lua in
 * sight. The Lua binding walks Lua values and drives these; the transport
 * uses the small lookup helpers to read error documents.
 */
#ifndef DYNAMO_JSON_H
#define DYNAMO_JSON_H

#include "dynamo/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Finds the member `key` of the top-level JSON object in `body` whose value is
 * a string and appends its unescaped value to `out`. Returns DYN_OK,
 * DYN_EINVAL when the member is absent or not a string, DYN_EJSON when body is
 * not a JSON object, DYN_ENOMEM.
 */
int dyn_json_get_string(dyn_slice body, const char *key, struct dyn_buf *out);

#ifdef __cplusplus
}
#endif
#endif
