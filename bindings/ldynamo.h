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
void ldynamo_open_batch(lua_State *L);
void ldynamo_open_pager(lua_State *L);

struct dyn_call;
struct dyn_call_config;
struct dyn_error;
struct dyn_http;
struct dyn_batch;
struct dyn_op;

/* The client at idx (a dynamo.Client; raises when closed): its call config, its libcurl driver (made on first use). */
const struct dyn_call_config *ldynamo_client_config(lua_State *L, int idx);
struct dyn_http *ldynamo_client_http(lua_State *L, int idx);
/* Pushes the plain info table of an error record (code, status, message, request_id, retryable, ...). */
void ldynamo_push_error_info(lua_State *L, const struct dyn_error *e);
/* Pushes a dynamo.Call box over a call an op owns (never freed by the box), tied to the client at client_idx. */
void ldynamo_push_borrowed_call(lua_State *L, int client_idx, struct dyn_call *call);
/* The call of a borrowed box at idx, which is closed by this; NULL when it is not a borrowed, open box. */
struct dyn_call *ldynamo_release_borrowed_call(lua_State *L, int idx);
/* The batch at idx (a dynamo.Batch; raises when freed). */
struct dyn_batch *ldynamo_check_batch(lua_State *L, int idx);

/*
 * The host protocol of an op bound as a userdata at stack index 1, whose user
 * value 1 is its client and user value 2 a table of the boxes of the calls it
 * handed out (ldynamo_op.c). clock is the op's monotonic time, kept in the
 * userdata; what names it in messages ("batch"). Each returns what the Lua
 * method returns: next([waited_ms]), feed(call), abort([message]).
 */
int ldynamo_op_next(lua_State *L, struct dyn_op *op, int64_t *clock);
int ldynamo_op_feed(lua_State *L, struct dyn_op *op, int64_t *clock, const char *what);
int ldynamo_op_abort(lua_State *L, struct dyn_op *op, const char *what);
/* Closes the boxes of the calls the op userdata at idx handed out and did not get back. */
void ldynamo_op_close_boxes(lua_State *L, int idx);


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

/* Gives the page at idx, made over no body and not read yet, the body (left
 * empty): a page made before its body is taken, so a memory error cannot
 * leak it. */
void ldynamo_page_attach(lua_State *L, int idx, struct dyn_buf *body);

/* ldynamo_push_page with the client at client_idx as owner: the body goes back
 * to the client's libcurl driver for the next responses. body NULL: none yet
 * (ldynamo_page_attach). */
int ldynamo_push_client_page(lua_State *L, struct dyn_buf *body, int client_idx);

/* The allocator of the Lua state, for the core: memory is accounted to Lua. */
void ldynamo_allocator(lua_State *L, struct dyn_allocator *out);

#endif
