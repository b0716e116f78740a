/*
 * dynamo.core: the host side of an op (dynamo/op.h) bound as a userdata, the
 * protocol a Lua host loop drives (lua/dynamo/client.lua), shared by the
 * batch (ldynamo_batch.c) and the pager (ldynamo_pager.c):
 *
 *   op:next([waited_ms])  -> "call", call | "wait", ms | "idle" | "done"
 *   op:feed(call)            a call from next(), run to its end by the host
 *   op:abort([message])      ends it now (a host giving up); calls out are dropped
 *
 * The userdata keeps its client as user value 1 and, as user value 2, the
 * boxes of the calls it handed out, by call address: a box is closed when its
 * call is handed back, and all at once when the op is freed or aborted, so a
 * box never points at a freed call.
 */
#include "ldynamo.h"

#include "dynamo/http.h"
#include "dynamo/op.h"

#include <time.h>

static int64_t s_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The op's monotonic time: the clock's, but at least `waited` ms after the
 * last time it was told, so a host that says it slept is trusted to have
 * done so (as a call trusts its driver), even with a clock that did not move.
 */
static int64_t s_now(int64_t *clock, lua_Integer waited) {
    int64_t now = s_mono_ms(), told = *clock + (waited > 0 ? (int64_t)waited : 0);
    *clock = now > told ? now : told;
    return *clock;
}

void ldynamo_op_close_boxes(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, 2);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            ldynamo_release_borrowed_call(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

int ldynamo_op_next(lua_State *L, struct dyn_op *op, int64_t *clock) {
    struct dyn_op_step step;
    lua_Integer waited = luaL_optinteger(L, 2, 0);
    int rc;
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1); /* 2: the client */
    ldynamo_client_config(L, 2); /* raises when it was closed */
    rc = op->next(op, dyn_http_now_unix_ms(), s_now(clock, waited), &step);
    if (rc < 0) return luaL_error(L, "not enough memory");
    switch (step.kind) {
    case DYN_OP_SEND:
        lua_pushliteral(L, "call");
        ldynamo_push_borrowed_call(L, 2, step.call); /* 4 */
        lua_getiuservalue(L, 1, 2);
        lua_pushlightuserdata(L, step.call);
        lua_pushvalue(L, 4);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        return 2;
    case DYN_OP_WAIT:
        lua_pushliteral(L, "wait");
        lua_pushinteger(L, (lua_Integer)step.wait_ms);
        return 2;
    case DYN_OP_IDLE: lua_pushliteral(L, "idle"); return 1;
    default: lua_pushliteral(L, "done"); return 1;
    }
}

int ldynamo_op_feed(lua_State *L, struct dyn_op *op, int64_t *clock, const char *what) {
    struct dyn_call *call;
    int rc;
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, 2); /* 3: this op's boxes, by call */
    lua_pushnil(L);
    while (lua_next(L, 3)) { /* is the box at 2 one of them? */
        if (lua_rawequal(L, -1, 2)) break;
        lua_pop(L, 1);
    }
    if (lua_gettop(L) == 3) {
        lua_pushfstring(L, "a call of this %s expected", what);
        return luaL_argerror(L, 2, lua_tostring(L, -1));
    }
    call = lua_touserdata(L, 4);
    lua_settop(L, 3);
    if (!dyn_call_is_done(call)) return luaL_error(L, "%s:feed: the call is not finished", what);
    ldynamo_release_borrowed_call(L, 2);
    lua_pushlightuserdata(L, call);
    lua_pushnil(L);
    lua_rawset(L, 3);
    rc = op->feed(op, call, s_now(clock, 0));
    if (rc == DYN_EINVAL) return luaL_error(L, "%s:feed: the call is not finished", what);
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    return 0;
}

int ldynamo_op_abort(lua_State *L, struct dyn_op *op, const char *what) {
    const char *message;
    lua_pushfstring(L, "the host ended the %s", what);
    message = luaL_optstring(L, 2, lua_tostring(L, -1));
    ldynamo_op_close_boxes(L, 1);
    op->abort(op, DYN_ETRANSPORT, message);
    return 0;
}
