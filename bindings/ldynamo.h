/*
 * ldynamo.h - shared declarations of the Lua 5.4 module dynamo.core.
 * The bindings are the only code that includes lua.h.
 *
 * luaopen_dynamo_core creates the module table and hands it to each area's
 * open function (ldynamo_open_<area>), which adds its functions and
 * metatables to the table on top of the stack.
 */
#ifndef LDYNAMO_H
#define LDYNAMO_H

#include <lauxlib.h>
#include <lua.h>

#include "dynamo/buf.h"
#include "dynamo/common.h"

/* Each adds its members to the module table at the top of the stack. */
void ldynamo_open_codec(lua_State *L);
void ldynamo_open_sigv4(lua_State *L);
void ldynamo_open_client(lua_State *L);
void ldynamo_open_expr(lua_State *L);

/* Argument #arg as a borrowed slice of a Lua string (raises when not a string). */
static inline dyn_slice ldynamo_checkslice(lua_State *L, int arg) {
    size_t n;
    const char *p = luaL_checklstring(L, arg, &n);
    return dyn_slice_make(p, n);
}

static inline dyn_slice ldynamo_optslice(lua_State *L, int arg, const char *def) {
    size_t n;
    const char *p = luaL_optlstring(L, arg, def, &n);
    return dyn_slice_make(p, n);
}

/*
 * Pushes the value of JSON text held in C as core.json_decode(text, unmarshal)
 * would and returns 1; on malformed text pushes the message and returns 0.
 * Raises only on a memory error.
 */
int ldynamo_push_json(lua_State *L, dyn_slice text, int unmarshal);

/* Takes a response body that has been read: owner is the userdata given to ldynamo_push_page. */
typedef void (*ldynamo_recycle_fn)(void *owner, struct dyn_buf *body);

/*
 * Pushes a "dynamo.page" that takes over body (left empty): a Query or Scan
 * response whose Items are read one at a time (page:next(), page:result()).
 * With owner (the stack index of a userdata, kept alive by the page; 0 for
 * none), recycle(owner, body) takes the body once the page is read to its
 * end or closed (page:close(), __close, __gc); otherwise it is freed then.
 */
int ldynamo_push_page(lua_State *L, struct dyn_buf *body, int owner, ldynamo_recycle_fn recycle);

/* The allocator of the Lua state, for the core: memory is accounted to Lua. */
void ldynamo_allocator(lua_State *L, struct dyn_allocator *out);

#endif
