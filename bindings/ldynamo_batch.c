/*
 * dynamo.core: the batch area. core.batch_new makes a "dynamo.Batch", the
 * core's BatchWriteItem / BatchGetItem engine (dynamo/batch.h) for one
 * client. Entries go in through the codec's batch_put_items / batch_add_keys
 * (which encode in C) or batch:put; then one of two drivers runs it:
 *
 *   batch:run()                the libcurl driver, up to the client's concurrency in flight
 *   batch:next() / batch:feed  the op protocol a Lua host loop drives (ldynamo_op.c):
 *                              "call", call | "wait", ms | "idle" | "done"; a call is a
 *                              dynamo.Call the host runs to its end, then hands back
 *
 * and the account is read: batch:status(), batch:not_done(), core.batch_items.
 *
 * Lifetimes: the Batch keeps its Client alive (user value 1). The calls a
 * host gets belong to the batch: their boxes (user value 2 keeps them, by
 * call address) are closed when the call is handed back, and all at once
 * when the batch is freed, so a box never points at a freed call.
 */
#include "ldynamo.h"

#include "dynamo/batch.h"
#include "dynamo/http.h"

#define BATCH_MT "dynamo.Batch"

struct lbatch {
    struct dyn_batch *b; /* NULL once freed */
    int64_t clock;       /* the monotonic ms the batch was last told */
};

static struct lbatch *s_check(lua_State *L, int idx) {
    struct lbatch *lb = luaL_checkudata(L, idx, BATCH_MT);
    if (!lb->b) luaL_error(L, "attempt to use a freed batch");
    return lb;
}

struct dyn_batch *ldynamo_check_batch(lua_State *L, int idx) { return s_check(L, idx)->b; }

static int s_batch_gc(lua_State *L) {
    struct lbatch *lb = luaL_checkudata(L, 1, BATCH_MT);
    if (lb->b) {
        ldynamo_op_close_boxes(L, 1);
        dyn_batch_free(lb->b);
        lb->b = NULL;
    }
    return 0;
}

static dyn_slice s_field_slice(lua_State *L, int t, const char *name, int required) {
    size_t n = 0;
    const char *p;
    int type = lua_getfield(L, t, name);
    if (type == LUA_TNIL && !required) {
        lua_pop(L, 1);
        return DYN_SLICE_EMPTY;
    }
    if (type != LUA_TSTRING) luaL_error(L, "bad field '%s' to 'batch_new' (string expected)", name);
    p = lua_tolstring(L, -1, &n);
    lua_pop(L, 1); /* the options table keeps the string alive */
    return dyn_slice_make(p, n);
}

/* core.batch_new(client, {kind = "write"|"get", table, pk, sk, consistent_read, per_request, max_attempts}) */
static int l_batch_new(lua_State *L) {
    static const char *const kinds[] = {"write", "get", NULL};
    const struct dyn_call_config *cfg = ldynamo_client_config(L, 1);
    struct dyn_batch_options o;
    struct lbatch *lb;
    int kind, rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "kind");
    kind = luaL_checkoption(L, -1, NULL, kinds) == 1 ? DYN_BATCH_GET : DYN_BATCH_WRITE;
    lua_pop(L, 1);
    dyn_batch_options_default(&o, kind);
    o.table = s_field_slice(L, 2, "table", 1);
    o.pk = s_field_slice(L, 2, "pk", 1);
    o.sk = s_field_slice(L, 2, "sk", 0);
    lua_getfield(L, 2, "consistent_read");
    o.consistent_read = lua_toboolean(L, -1);
    lua_getfield(L, 2, "per_request");
    o.per_request = (size_t)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 2, "max_attempts");
    o.max_attempts = (int)luaL_optinteger(L, -1, 0);
    lua_pop(L, 3);
    /* the box first, then the batch (as liolib's newprefile) */
    lb = lua_newuserdatauv(L, sizeof *lb, 2);
    lb->b = NULL;
    lb->clock = 0;
    luaL_setmetatable(L, BATCH_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 2);
    rc = dyn_batch_new(cfg, &o, &lb->b);
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    if (rc < 0) return luaL_error(L, "bad options to 'batch_new' (table and pk needed; per_request 1..25 or 1..100)");
    return 1;
}

/* batch:put(id, item_json) -> true | false, size (an item over 400 KB, not added) */
static int l_batch_put(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    size_t size = 0;
    int rc = dyn_batch_put(lb->b, ldynamo_checkslice(L, 2), ldynamo_checkslice(L, 3), &size);
    if (rc == DYN_ERANGE) {
        lua_pushboolean(L, 0);
        lua_pushinteger(L, (lua_Integer)size);
        return 2;
    }
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    if (rc < 0) return luaL_error(L, "batch:put: a write to a read batch, or the batch already ran");
    lua_pushboolean(L, 1);
    return 1;
}

static int l_batch_slots(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)dyn_batch_slots(s_check(L, 1)->b));
    return 1;
}

/* batch:run(): the libcurl driver. Whatever happened is in the account. */
static int l_batch_run(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    struct dyn_http *http;
    int rc;
    lua_getiuservalue(L, 1, 1);
    http = ldynamo_client_http(L, lua_gettop(L));
    rc = dyn_http_drive(http, dyn_batch_op(lb->b));
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    return 0;
}

/* batch:next([waited_ms]) -> "call", call | "wait", ms | "idle" | "done"; waited_ms: what the host slept since */
static int l_batch_next(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    return ldynamo_op_next(L, dyn_batch_op(lb->b), &lb->clock);
}

/* batch:feed(call): a call from next(), run to its end by the host. */
static int l_batch_feed(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    return ldynamo_op_feed(L, dyn_batch_op(lb->b), &lb->clock, "batch");
}

/* batch:abort([message]): ends it now (a host giving up); calls out are dropped. */
static int l_batch_abort(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    return ldynamo_op_abort(L, dyn_batch_op(lb->b), "batch");
}

/* batch:status() -> true | false, info of the cause */
static int l_batch_status(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    const struct dyn_error *cause = dyn_batch_cause(lb->b);
    if (!cause) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    ldynamo_push_error_info(L, cause);
    return 2;
}

/*
 * batch:not_done() -> slots, uncertain: the 1-based slots not done, in
 * order, and a set of those whose answer was lost (they may be done).
 */
static int l_batch_not_done(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    size_t k, n = dyn_batch_slots(lb->b);
    lua_Integer m = 0;
    lua_newtable(L);
    lua_newtable(L);
    for (k = 0; k < n; k++) {
        struct dyn_batch_slot_info info;
        dyn_batch_slot(lb->b, k, &info);
        if (info.done) continue;
        lua_pushinteger(L, (lua_Integer)k + 1);
        lua_rawseti(L, -3, ++m);
        if (info.uncertain) {
            lua_pushboolean(L, 1);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
    }
    return 2;
}

/* batch:slot(k) -> {done, uncertain, found, attempts, cause = info | nil} */
static int l_batch_slot(lua_State *L) {
    struct lbatch *lb = s_check(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    struct dyn_batch_slot_info info;
    if (k < 1 || dyn_batch_slot(lb->b, (size_t)(k - 1), &info) < 0) return luaL_argerror(L, 2, "no such slot");
    lua_createtable(L, 0, 5);
    lua_pushboolean(L, info.done);
    lua_setfield(L, -2, "done");
    lua_pushboolean(L, info.uncertain);
    lua_setfield(L, -2, "uncertain");
    lua_pushboolean(L, info.found);
    lua_setfield(L, -2, "found");
    lua_pushinteger(L, info.attempts);
    lua_setfield(L, -2, "attempts");
    if (info.cause) {
        ldynamo_push_error_info(L, info.cause);
        lua_setfield(L, -2, "cause");
    }
    return 1;
}

static int l_batch_stats(lua_State *L) {
    struct dyn_batch_stats st;
    dyn_batch_get_stats(s_check(L, 1)->b, &st);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)st.failed_requests);
    lua_setfield(L, -2, "failed_requests");
    lua_pushinteger(L, (lua_Integer)st.unprocessed);
    lua_setfield(L, -2, "unprocessed");
    lua_pushinteger(L, (lua_Integer)st.retried_entries);
    lua_setfield(L, -2, "retried_entries");
    return 1;
}

static const luaL_Reg s_methods[] = {
    {"put", l_batch_put},       {"slots", l_batch_slots}, {"run", l_batch_run},     {"next", l_batch_next},
    {"feed", l_batch_feed},     {"abort", l_batch_abort}, {"status", l_batch_status}, {"not_done", l_batch_not_done},
    {"slot", l_batch_slot},     {"stats", l_batch_stats}, {"free", s_batch_gc},     {NULL, NULL},
};

static const luaL_Reg s_meta[] = {
    {"__gc", s_batch_gc},
    {"__close", s_batch_gc},
    {NULL, NULL},
};

void ldynamo_open_batch(lua_State *L) {
    luaL_newmetatable(L, BATCH_MT);
    luaL_setfuncs(L, s_meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, s_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_batch_new);
    lua_setfield(L, -2, "batch_new");
}
