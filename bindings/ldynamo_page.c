/*
 * dynamo.core: pages, a Query or Scan response read one item at a time.
 *
 *   page(text)                  -> a page over a copy of text
 *   page:next() / page_next(page) -> the next item, or nil after the last
 *   page_fill(page, buf, max)   -> the next up to max items in buf[1..n]
 *   page:result() / page_result(page) -> the members other than Items
 *   page:close(), <close>       -> the text given back at once
 * ldynamo_push_page (ldynamo.h) makes a page over a response body held in C.
 */
#include "ldynamo_codec.h"

/*
 * A "dynamo.page" owns a response body and reads its "Items" one by one as
 * the caller asks, so a 1 MB page never becomes thousands of Lua tables at
 * once: each item is made, used and dropped while its memory is still in
 * cache. The other members (LastEvaluatedKey, Count, ...) go to a table, the
 * page's user value, complete once every item has been read.
 *
 * A page needs its text until its last item is read: then, or when it is
 * closed (page:close(), a <close> variable going out of scope, or its
 * collection: __gc and __close share one function, as liolib's files do),
 * the text goes back to the page's owner (the client's driver, for the next
 * response) or is freed. A closed page is ended: next() gives nil,
 * page_fill 0, and result() the members read before the close.
 */
#define PAGE_MT "dynamo.page"

struct s_page {
    struct dyn_buf body;
    ldynamo_recycle_fn recycle; /* takes the body once read (NULL: it is freed) */
    size_t pos;   /* where reading resumes */
    int in_items; /* inside the Items array */
    int done;     /* nothing more to read: the end, a broken body, or closed */
    int closed;   /* page:close(), __close or __gc ran */
    int reading;  /* a step is under way: a close (from a finalizer) waits for it */
};

/* Reads the response object's members from the current position into the
 * table at `members`, until the Items array opens (in_items) or the object
 * closes (done). */
static void s_page_members(struct codec_read *d, struct s_page *pg, int at_start, int members) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    if (at_start) {
        codec_expect(d, '{', "expected a response object");
        if (codec_peek(d) == '}') {
            d->r.p++;
            goto end;
        }
    } else if (!codec_more(d, '}', "expected ',' or '}'")) {
        goto end;
    }
    do {
        codec_string_tok(d, &t, "expected a member name");
        codec_expect(d, ':', "expected ':'");
        if (dyn_slice_eq_cstr(t.text, "Items") && !t.escaped && codec_peek(d) == '[') {
            d->r.p++;
            if (codec_peek(d) == ']') {
                d->r.p++;
                continue;
            }
            pg->in_items = 1;
            return;
        }
        codec_push_tok_string(d, &t);
        codec_dec_plain(d, codec_member_mode(M_TOP, t.text));
        lua_rawset(L, members);
    } while (codec_more(d, '}', "expected ',' or '}'"));
end:
    codec_read_end(d);
    pg->done = 1;
}

/* The protected step behind page:next() and page_fill: (page, buf, max)
 * reads up to max items into buf[1..] and pushes their count. */
static int l_page_step(lua_State *L) {
    struct s_page *pg = lua_touserdata(L, 1);
    lua_Integer max = lua_tointeger(L, 3), n = 0;
    struct codec_state *st;
    int st_idx;
    struct codec_read d;
    lua_settop(L, 3);
    lua_getiuservalue(L, 1, 1); /* 4: the members table */
    st = codec_acquire(L, &st_idx);
    codec_read_init(&d, L, st, dyn_buf_slice(&pg->body));
    d.r.p = d.r.begin + pg->pos;
    while (n < max && !pg->done) {
        if (!pg->in_items) {
            s_page_members(&d, pg, pg->pos == 0, 4);
        } else if (codec_peek(&d) == ']') {
            d.r.p++;
            pg->in_items = 0;
            s_page_members(&d, pg, 0, 4);
        } else {
            codec_dec_av_map(&d, 0);
            lua_rawseti(L, 2, ++n);
            if (!codec_more(&d, ']', "expected ',' or ']'")) d.r.p--; /* the ']' is read next */
        }
        pg->pos = (size_t)(d.r.p - d.r.begin);
    }
    codec_release(st);
    lua_pushinteger(L, n);
    return 1;
}

static const char s_page_step_key = 0; /* its address keys the registry entry */

/* Read to its end or closed, the page needs its text no more: the memory goes
 * back to the page's owner (the client's driver, for the next response) or is
 * freed. */
static void s_page_drop_body(lua_State *L, struct s_page *pg, int page) {
    void *owner;
    if (pg->body.cap == 0) return;
    lua_getiuservalue(L, page, 2);
    owner = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (pg->recycle && owner) {
        pg->recycle(owner, &pg->body);
        dyn_buf_init(&pg->body, pg->body.alloc);
    } else {
        dyn_buf_free(&pg->body);
    }
}

/* Runs the step for up to max items into the table at buf: the count, or
 * -1 with the message pushed. */
static lua_Integer s_page_read(lua_State *L, struct s_page *pg, int page, int buf, lua_Integer max) {
    int rc;
    lua_Integer n;
    if (pg->reading) luaL_error(L, "attempt to read a page that is being read");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &s_page_step_key);
    lua_pushvalue(L, page);
    lua_pushvalue(L, buf);
    lua_pushinteger(L, max);
    pg->reading = 1;
    rc = lua_pcall(L, 3, 1, 0);
    pg->reading = 0;
    if (rc != LUA_OK && rc != LUA_ERRMEM) pg->done = 1; /* nothing more can be read */
    if (pg->closed || (rc == LUA_OK && pg->done)) s_page_drop_body(L, pg, page);
    if (rc == LUA_ERRMEM) lua_error(L);
    if (rc != LUA_OK) return -1;
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n;
}

/*
 * page:next() -> the next item (native values), or nil after the last one
 * (and once closed); nil, message when the body is not the JSON it should be.
 */
static int l_page_next(lua_State *L) {
    struct s_page *pg = luaL_checkudata(L, 1, PAGE_MT);
    lua_Integer n;
    if (pg->done) return 0;
    lua_settop(L, 1);
    lua_createtable(L, 1, 0); /* 2 */
    n = s_page_read(L, pg, 1, 2, 1);
    if (n < 0) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (n == 0) return 0;
    lua_rawgeti(L, 2, 1);
    return 1;
}

/*
 * core.page_fill(page, buf, max) -> n: the next up to max items in buf[1..n]
 * (0 after the last one, and once closed); nil, message for a broken body.
 * For loops that take items in runs, without a call per item.
 */
static int l_page_fill(lua_State *L) {
    struct s_page *pg = luaL_checkudata(L, 1, PAGE_MT);
    lua_Integer max = luaL_checkinteger(L, 3), n;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_argcheck(L, max >= 1, 3, "at least 1");
    lua_settop(L, 3);
    if (pg->done) {
        lua_pushinteger(L, 0);
        return 1;
    }
    n = s_page_read(L, pg, 1, 2, max);
    if (n < 0) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushinteger(L, n);
    return 1;
}

/* page:result() -> the members other than Items (complete after the last
 * item; a page closed before holds those read until then). */
static int l_page_result(lua_State *L) {
    luaL_checkudata(L, 1, PAGE_MT);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

/* page:close(), __close and __gc: ends the page and gives its text back.
 * Closing again, or collecting a closed page, does nothing more. */
static int l_page_close(lua_State *L) {
    struct s_page *pg = luaL_checkudata(L, 1, PAGE_MT);
    pg->done = pg->closed = 1;
    if (!pg->reading) s_page_drop_body(L, pg, 1); /* else the step's caller does */
    return 0;
}

/* "dynamo.page (N bytes)" while it holds its text, "dynamo.page (closed)" once
 * it gave it back (closed, or read to its end). */
static int l_page_tostring(lua_State *L) {
    struct s_page *pg = luaL_checkudata(L, 1, PAGE_MT);
    if (pg->done && pg->body.cap == 0) lua_pushliteral(L, "dynamo.page (closed)");
    else lua_pushfstring(L, "dynamo.page (%I bytes)", (LUAI_UACINT)pg->body.len);
    return 1;
}

int ldynamo_push_page(lua_State *L, struct dyn_buf *body, int owner, ldynamo_recycle_fn recycle) {
    struct s_page *pg;
    if (owner) owner = lua_absindex(L, owner);
    pg = lua_newuserdatauv(L, sizeof *pg, 2);
    pg->body = *body;
    dyn_buf_init(body, pg->body.alloc);
    pg->recycle = owner ? recycle : NULL;
    if (owner) {
        lua_pushvalue(L, owner); /* kept alive while the page is */
        lua_setiuservalue(L, -2, 2);
    }
    pg->pos = 0;
    pg->in_items = 0;
    pg->done = pg->closed = pg->reading = 0;
    luaL_setmetatable(L, PAGE_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

void ldynamo_page_attach(lua_State *L, int idx, struct dyn_buf *body) {
    struct s_page *pg = luaL_checkudata(L, idx, PAGE_MT);
    dyn_buf_free(&pg->body);
    pg->body = *body;
    dyn_buf_init(body, pg->body.alloc);
}

/* core.page(text) -> a page over a copy of text (for responses that arrive as
 * Lua strings, from a host transport). The page is made first, empty, so a
 * memory error while copying leaves nothing to leak (liolib's newprefile). */
static int l_page(lua_State *L) {
    dyn_slice text = ldynamo_checkslice(L, 1);
    struct dyn_buf none = DYN_BUF_INIT(NULL);
    struct s_page *pg;
    ldynamo_push_page(L, &none, 0, NULL);
    pg = lua_touserdata(L, -1);
    if (dyn_buf_append(&pg->body, text.ptr, text.len) != DYN_OK) return luaL_error(L, "not enough memory");
    return 1;
}

static const luaL_Reg s_funcs[] = {
    {"page", l_page}, {"page_next", l_page_next}, {"page_fill", l_page_fill}, {"page_result", l_page_result},
    {NULL, NULL},
};

void codec_open_page(lua_State *L, int mod, int base) {
    static const luaL_Reg meta[] = {
        {"__gc", l_page_close}, {"__close", l_page_close}, {"__tostring", l_page_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"next", l_page_next}, {"result", l_page_result}, {"close", l_page_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, PAGE_MT)) {
        luaL_setfuncs(L, meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    codec_push_upvalues(L, base);
    lua_pushcclosure(L, l_page_step, UV_COUNT);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &s_page_step_key);
    codec_setfuncs(L, mod, s_funcs, base);
}
