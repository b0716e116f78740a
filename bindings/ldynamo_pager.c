/*
 * dynamo.core: the pager area. core.pager_new makes a "dynamo.Pager", the
 * core's Query / Scan / parallel Scan pager (dynamo/pager.h) for one client:
 * page requests, limits and a resumable position. The consumer loop:
 *
 *   local p = core.pager_new(client, { streams = {...}, limit = n, start = position })
 *   repeat
 *     while true do                               -- the pages of the round
 *       local page, stream, take = p:take()       -- a dynamo.page, read take items of it
 *       if not page then break end                -- (nil, message, info: a failed stream)
 *       ...
 *       save(p:position())                        -- JSON text: give it back as `start`
 *     end
 *     if p:finished() then break end
 *     p:run()                                     -- one round (or next/feed from a host loop)
 *   until false
 *
 * A round is the op driven until it says DONE: every stream that may send has
 * its next page waiting or is finished. dyn_http_drive returns at DONE, so
 * p:run() is exactly one round; a host loop (ldynamo_op.c's next/feed/abort)
 * ends at "done" likewise.
 *
 * Lifetimes: the Pager keeps its Client alive (user value 1) and the boxes of
 * the calls it handed to a host (user value 2, closed when handed back or
 * when the pager is freed). A page handed out owns its body, which goes back
 * to the client's driver once read (or is freed), whatever becomes of the
 * pager.
 */
#include "ldynamo.h"

#include "dynamo/http.h"
#include "dynamo/pager.h"

#include <stdio.h>
#include <string.h>

#define PAGER_MT "dynamo.Pager"

struct lpager {
    struct dyn_pager *p;  /* NULL once freed */
    int64_t clock;        /* the monotonic ms the pager was last told (host loop) */
    struct dyn_buf pos;   /* the position text, reused */
};

static struct lpager *s_check(lua_State *L, int idx) {
    struct lpager *lp = luaL_checkudata(L, idx, PAGER_MT);
    if (!lp->p) luaL_error(L, "attempt to use a freed pager");
    return lp;
}

/* __gc, __close and pager:free(): closes the boxes of calls out, frees the
 * pager and its waiting pages. Again does nothing more. */
static int s_pager_gc(lua_State *L) {
    struct lpager *lp = luaL_checkudata(L, 1, PAGER_MT);
    if (lp->p) {
        ldynamo_op_close_boxes(L, 1);
        dyn_pager_free(lp->p);
        lp->p = NULL;
        dyn_buf_free(&lp->pos);
    }
    return 0;
}

/* ---- pager_new ---- */

/* Field `name` of the table at t as a count: nil gives def; otherwise an
 * integer from lo to hi, or the call raises naming `what`. */
static lua_Integer s_count_field(lua_State *L, int t, const char *name, lua_Integer def, lua_Integer lo,
                                 lua_Integer hi, const char *what) {
    lua_Integer v = def;
    int isnum = 0;
    if (lua_getfield(L, t, name) != LUA_TNIL) {
        v = lua_tointegerx(L, -1, &isnum);
        if (!isnum || v < lo || v > hi)
            luaL_error(L, "bad field '%s' of %s to 'pager_new' (integer from %I to %I expected)", name, what,
                       (LUAI_UACINT)lo, (LUAI_UACINT)hi);
    }
    lua_pop(L, 1);
    return v;
}

/* Field `name` of the table at t as a string slice (kept alive by that table). */
static dyn_slice s_string_field(lua_State *L, int t, const char *name, const char *what) {
    size_t n;
    const char *s;
    if (lua_getfield(L, t, name) != LUA_TSTRING)
        luaL_error(L, "bad field '%s' of %s to 'pager_new' (string expected, got %s)", name, what,
                   luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    return dyn_slice_make(s, n);
}

/* A stream from the table at t: op, body, limit (nil: none; 0: nothing, the
 * stream starts finished), page_size. */
static void s_stream_of(lua_State *L, int t, const char *what, struct dyn_pager_stream *s) {
    lua_Integer limit;
    memset(s, 0, sizeof *s);
    s->operation = s_string_field(L, t, "op", what);
    s->body = s_string_field(L, t, "body", what);
    limit = s_count_field(L, t, "limit", -1, 0, LUA_MAXINTEGER, what);
    if (limit == 0) s->done = 1;
    else if (limit > 0) s->limit = (uint64_t)limit;
    s->page_size = (uint32_t)s_count_field(L, t, "page_size", 0, 1, DYN_PAGER_MAX_LIMIT, what);
}

static void s_add_failed(lua_State *L, int rc, const char *what) {
    if (rc == DYN_ENOMEM) luaL_error(L, "not enough memory");
    luaL_error(L, "bad %s to 'pager_new' (op Query or Scan and a JSON object body without Limit, "
                  "ExclusiveStartKey, Segment or TotalSegments expected)", what);
}

/*
 * core.pager_new(client, opts) -> pager | nil, message (start is not a
 * position of these streams). opts:
 *   streams = { {op =, body =, limit =, page_size =}, ... }   one per query
 *   or segments = n, op =, body =, page_size =                a parallel scan
 *   limit = n (items of all streams together), max_pages = n (pages in
 *   flight or waiting at most), start = position text (pager:position()).
 * Other misuse raises.
 */
static int l_pager_new(lua_State *L) {
    const struct dyn_call_config *cfg = ldynamo_client_config(L, 1);
    struct lpager *lp;
    lua_Integer limit, max_pages, segments;
    int rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    limit = s_count_field(L, 2, "limit", 0, 1, LUA_MAXINTEGER, "the options");
    max_pages = s_count_field(L, 2, "max_pages", 0, 1, LUA_MAXINTEGER, "the options");
    segments = s_count_field(L, 2, "segments", 0, 1, DYN_PAGER_MAX_SEGMENTS, "the options");
    lua_getfield(L, 2, "streams"); /* 3 */
    if (segments ? !lua_isnil(L, 3) : !lua_istable(L, 3))
        return luaL_error(L, "bad options to 'pager_new' (streams or segments expected, not both)");
    /* the box first, then the pager (as liolib's newprefile) */
    lp = lua_newuserdatauv(L, sizeof *lp, 2); /* 4 */
    lp->p = NULL;
    lp->clock = 0;
    dyn_buf_init(&lp->pos, dyn_default_allocator());
    luaL_setmetatable(L, PAGER_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 4, 1);
    lua_newtable(L);
    lua_setiuservalue(L, 4, 2);
    rc = dyn_pager_new(cfg, &lp->p);
    if (rc < 0) return luaL_error(L, "not enough memory");
    if (segments) {
        struct dyn_pager_stream s;
        s_stream_of(L, 2, "the options", &s);
        s.limit = 0; /* a parallel scan's limit is the overall one */
        s.done = 0;
        if ((rc = dyn_pager_add_segments(lp->p, &s, (uint32_t)segments)) < 0) s_add_failed(L, rc, "segments");
    } else {
        lua_Integer i, n = (lua_Integer)lua_rawlen(L, 3);
        for (i = 1; i <= n; i++) {
            struct dyn_pager_stream s;
            char what[48];
            snprintf(what, sizeof what, "stream #%lld", (long long)i);
            if (lua_rawgeti(L, 3, i) != LUA_TTABLE) return luaL_error(L, "bad %s to 'pager_new' (table expected)", what);
            s_stream_of(L, 5, what, &s);
            if ((rc = dyn_pager_add(lp->p, &s)) < 0) s_add_failed(L, rc, what);
            lua_pop(L, 1);
        }
    }
    if (limit) dyn_pager_set_limit(lp->p, (uint64_t)limit);
    if (max_pages) dyn_pager_set_max_pages(lp->p, (size_t)max_pages);
    if (lua_getfield(L, 2, "start") != LUA_TNIL) { /* 5 */
        dyn_slice start;
        if (lua_type(L, 5) != LUA_TSTRING)
            return luaL_error(L, "bad field 'start' to 'pager_new' (position text expected, got %s)",
                              luaL_typename(L, 5));
        start = ldynamo_checkslice(L, 5);
        rc = dyn_pager_resume(lp->p, start);
        if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
        if (rc < 0) {
            luaL_pushfail(L);
            lua_pushfstring(L, "not a position of %I stream(s) (a text pager:position() wrote is expected)",
                            (LUAI_UACINT)dyn_pager_stream_count(lp->p));
            return 2;
        }
    }
    lua_settop(L, 4);
    return 1;
}

/* ---- driving ---- */

/* Pushes the info table of an error record of the pager: a body that was
 * not a page (DYN_EJSON) has code InvalidResponse, as the client's calls. */
static void s_push_info(lua_State *L, const struct dyn_error *e) {
    ldynamo_push_error_info(L, e);
    if (e->status == DYN_EJSON) {
        /* the core says "invalid Scan response: <what> at byte <n>" */
        const char *detail = strstr(e->message, ": ");
        lua_pushliteral(L, "InvalidResponse");
        lua_setfield(L, -2, "code");
        lua_pushfstring(L, "the response is not valid JSON (json: %s)", detail ? detail + 2 : e->message);
        lua_setfield(L, -2, "message");
    }
}

/* Pushes fail, "code: message", info. */
static int s_push_failure(lua_State *L, const struct dyn_error *e) {
    luaL_pushfail(L);
    s_push_info(L, e);
    lua_getfield(L, -1, "code");
    lua_getfield(L, -2, "message");
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1)); /* fail info code message text */
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_insert(L, -2); /* fail text info */
    return 3;
}

/* pager:run() -> true | nil, message, info: one round with the libcurl
 * driver (a stream's failure is handed out by take; this fails only when the
 * driver itself did, which ends the pager). */
static int l_pager_run(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    struct dyn_http *http;
    int rc;
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1);
    http = ldynamo_client_http(L, 2);
    rc = dyn_http_drive(http, dyn_pager_op(lp->p));
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    if (rc < 0) return s_push_failure(L, dyn_pager_error(lp->p));
    lua_pushboolean(L, 1);
    return 1;
}

/* pager:next([waited_ms]) -> "call", call | "wait", ms | "idle" | "done" */
static int l_pager_next(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    return ldynamo_op_next(L, dyn_pager_op(lp->p), &lp->clock);
}

/* pager:feed(call): a call from next(), run to its end by the host. */
static int l_pager_feed(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    return ldynamo_op_feed(L, dyn_pager_op(lp->p), &lp->clock, "pager");
}

/* pager:abort([message]): ends it now; calls out are dropped, pages waiting stay. */
static int l_pager_abort(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    return ldynamo_op_abort(L, dyn_pager_op(lp->p), "pager");
}

/* ---- the consumer ---- */

/*
 * pager:take() -> page, stream, take: the oldest waiting page, a dynamo.page
 * of which the first `take` items are to be read, and its stream (1-based);
 * nil when none is waiting; nil, message, info for a stream that failed. The
 * position moves past the page as it is handed out.
 */
static int l_pager_take(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    struct dyn_pager_page pg;
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1);       /* 2: the client */
    ldynamo_push_client_page(L, NULL, 2); /* 3: made first, so nothing can leak the body */
    if (!dyn_pager_take(lp->p, &pg)) return 0;
    if (pg.status != DYN_OK) return s_push_failure(L, &pg.error);
    ldynamo_page_attach(L, 3, &pg.body);
    lua_pushinteger(L, (lua_Integer)pg.stream + 1);
    lua_pushinteger(L, (lua_Integer)pg.take);
    return 3;
}

static int l_pager_finished(lua_State *L) {
    lua_pushboolean(L, dyn_pager_finished(s_check(L, 1)->p));
    return 1;
}

/* pager:position() -> the position as JSON text (dynamo/pager.h), to give
 * back as pager_new's start. */
static int l_pager_position(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    dyn_buf_reset(&lp->pos);
    if (dyn_pager_position_json(lp->p, &lp->pos) < 0) return luaL_error(L, "not enough memory");
    lua_pushlstring(L, lp->pos.ptr, lp->pos.len);
    return 1;
}

/* pager:status() -> true | false, info of the first failure */
static int l_pager_status(lua_State *L) {
    struct lpager *lp = s_check(L, 1);
    int ok = dyn_pager_status(lp->p) == DYN_OK;
    lua_pushboolean(L, ok);
    if (ok) return 1;
    s_push_info(L, dyn_pager_error(lp->p));
    return 2;
}

static int l_pager_streams(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)dyn_pager_stream_count(s_check(L, 1)->p));
    return 1;
}

static int l_pager_stats(lua_State *L) {
    struct dyn_pager_stats st;
    dyn_pager_get_stats(s_check(L, 1)->p, &st);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)st.pages);
    lua_setfield(L, -2, "pages");
    lua_pushinteger(L, (lua_Integer)st.count);
    lua_setfield(L, -2, "count");
    lua_pushinteger(L, (lua_Integer)st.scanned);
    lua_setfield(L, -2, "scanned");
    lua_pushinteger(L, (lua_Integer)st.taken);
    lua_setfield(L, -2, "taken");
    return 1;
}

static int l_pager_tostring(lua_State *L) {
    struct lpager *lp = luaL_checkudata(L, 1, PAGER_MT);
    if (lp->p)
        lua_pushfstring(L, "dynamo.Pager (%I streams)", (LUAI_UACINT)dyn_pager_stream_count(lp->p));
    else
        lua_pushliteral(L, "dynamo.Pager (freed)");
    return 1;
}

static const luaL_Reg s_methods[] = {
    {"run", l_pager_run},         {"next", l_pager_next},         {"feed", l_pager_feed},
    {"abort", l_pager_abort},     {"take", l_pager_take},         {"finished", l_pager_finished},
    {"position", l_pager_position}, {"status", l_pager_status},   {"streams", l_pager_streams},
    {"stats", l_pager_stats},     {"free", s_pager_gc},           {NULL, NULL},
};

static const luaL_Reg s_meta[] = {
    {"__gc", s_pager_gc},
    {"__close", s_pager_gc},
    {"__tostring", l_pager_tostring},
    {NULL, NULL},
};

void ldynamo_open_pager(lua_State *L) {
    luaL_newmetatable(L, PAGER_MT);
    luaL_setfuncs(L, s_meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, s_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_pager_new);
    lua_setfield(L, -2, "pager_new");
}
