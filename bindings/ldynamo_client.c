/*
 * dynamo.core: the client area. client_new makes a "dynamo.Client" (a boxed
 * pointer to a C client: call config, retry quota, signing-key cache, and a
 * libcurl driver created on first use); client:prepare makes a "dynamo.Call",
 * the sans-IO state machine a Lua host transport drives.
 *
 * Raise or return (STYLE.md D2): misuse and memory errors raise; failed
 * requests return nil, "code: message", info.
 *
 * Lifetimes: a Call keeps its Client userdata alive through its user value,
 * and checks that the client is still open before touching the client's
 * config. The C structures use the default allocator rather than Lua's, so a
 * call can be freed after its client was closed without any dangling
 * allocator. No Lua code runs while libcurl does: dyn_http_run is pure C.
 */
#include "ldynamo.h"

#include "dynamo/call.h"
#include "dynamo/http.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_MT "dynamo.Client"
#define CALL_MT "dynamo.Call"

struct client {
    struct dyn_call_config cfg;
    struct dyn_retry_bucket bucket;
    struct dyn_sigv4_key_cache cache;
    struct dyn_http_config http_cfg;
    struct dyn_http *http; /* created by the first call/call_many */
};

struct client_box {
    struct client *c; /* NULL once closed */
};

struct lcall {
    struct dyn_call *call;
    double r;     /* the random01 given to the latest next() */
    int borrowed; /* the call belongs to an op (a batch), which frees it */
};

/* ---- client lifetime ---- */

static void s_client_free(struct client *c) {
    if (!c) return;
    dyn_http_destroy(c->http);
    dyn_call_config_free(&c->cfg);
    dyn_mem_free(dyn_default_allocator(), c, sizeof *c);
}

static int s_client_close(lua_State *L) {
    struct client_box *box = luaL_checkudata(L, 1, CLIENT_MT);
    struct client *c = box->c;
    box->c = NULL;
    s_client_free(c);
    return 0;
}

static struct client *s_check_client(lua_State *L, int idx) {
    struct client_box *box = luaL_checkudata(L, idx, CLIENT_MT);
    if (!box->c) luaL_error(L, "attempt to use a closed client");
    return box->c;
}

static int s_client_tostring(lua_State *L) {
    struct client_box *box = luaL_checkudata(L, 1, CLIENT_MT);
    if (box->c)
        lua_pushfstring(L, "dynamo.Client (%s)", box->c->cfg.endpoint.url);
    else
        lua_pushliteral(L, "dynamo.Client (closed)");
    return 1;
}

/* ---- options ---- */

static lua_Integer s_opt_int(lua_State *L, const char *field, lua_Integer def, lua_Integer lo, lua_Integer hi) {
    lua_Integer v = def;
    int isnum;
    if (lua_getfield(L, 1, field) != LUA_TNIL) {
        v = lua_tointegerx(L, -1, &isnum);
        if (!isnum || v < lo || v > hi)
            luaL_error(L, "bad field '%s' to 'client_new' (integer from %I to %I expected)", field, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

/* The string stays referenced by the options table at index 1. */
static const char *s_opt_str(lua_State *L, const char *field, int required, size_t *len) {
    const char *s = NULL;
    int t = lua_getfield(L, 1, field);
    if (t == LUA_TSTRING) {
        s = lua_tolstring(L, -1, len);
    } else if (t != LUA_TNIL || required) {
        luaL_error(L, "bad field '%s' to 'client_new' (string expected, got %s)", field, luaL_typename(L, -1));
    } else {
        *len = 0;
    }
    lua_pop(L, 1);
    return s;
}

static void s_raise_status(lua_State *L, int rc, const char *what) {
    if (rc == DYN_ENOMEM) luaL_error(L, "not enough memory");
    luaL_error(L, "%s", what);
}

static int l_client_new(lua_State *L) {
    struct client_box *box;
    struct client *c;
    struct dyn_endpoint ep;
    size_t ak_len, sk_len, tk_len, n;
    const char *endpoint, *region, *ak, *sk, *tk;
    lua_Integer max_attempts, timeout_ms, connect_ms, concurrency, base_ms, throttle_ms, cap_ms, seed = 0;
    int has_seed = 0, rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    endpoint = s_opt_str(L, "endpoint", 1, &n);
    region = s_opt_str(L, "region", 1, &n);
    ak = s_opt_str(L, "access_key", 0, &ak_len);
    sk = s_opt_str(L, "secret_key", 0, &sk_len);
    tk = s_opt_str(L, "session_token", 0, &tk_len);
    max_attempts = s_opt_int(L, "max_attempts", DYN_RETRY_DEFAULT_MAX_ATTEMPTS, 1, 100);
    timeout_ms = s_opt_int(L, "timeout_ms", DYN_HTTP_DEFAULT_TIMEOUT_MS, 1, INT32_MAX);
    connect_ms = s_opt_int(L, "connect_timeout_ms", DYN_HTTP_DEFAULT_CONNECT_TIMEOUT_MS, 1, INT32_MAX);
    concurrency = s_opt_int(L, "concurrency", DYN_HTTP_DEFAULT_CONCURRENCY, 1, DYN_HTTP_MAX_CONCURRENCY);
    base_ms = s_opt_int(L, "retry_base_ms", DYN_RETRY_DEFAULT_TRANSIENT_BASE_MS, 0, INT32_MAX);
    throttle_ms = s_opt_int(L, "throttle_base_ms", DYN_RETRY_DEFAULT_THROTTLE_BASE_MS, 0, INT32_MAX);
    cap_ms = s_opt_int(L, "retry_cap_ms", DYN_RETRY_DEFAULT_CAP_MS, 0, INT32_MAX);
    if (lua_getfield(L, 1, "seed") != LUA_TNIL) {
        int isnum;
        seed = lua_tointegerx(L, -1, &isnum);
        if (!isnum) luaL_error(L, "bad field 'seed' to 'client_new' (integer expected)");
        has_seed = 1;
    }
    lua_pop(L, 1);

    /* The box exists, closed, before the client does (as liolib's newprefile). */
    box = lua_newuserdatauv(L, sizeof *box, 0);
    box->c = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    if (dyn_endpoint_parse(endpoint, &ep) < 0)
        return luaL_error(L, "bad field 'endpoint' to 'client_new' (http:// or https:// URL expected)");
    c = dyn_mem_alloc(dyn_default_allocator(), sizeof *c);
    if (!c) return luaL_error(L, "not enough memory");
    memset(c, 0, sizeof *c);
    if ((rc = dyn_call_config_init(&c->cfg, dyn_default_allocator(), endpoint, region)) < 0) {
        s_client_free(c);
        return luaL_error(L, "bad field 'region' to 'client_new' (1 to 63 characters, no spaces or '/')");
    }
    rc = dyn_call_config_set_credentials(&c->cfg, dyn_slice_make(ak ? ak : "", ak_len),
                                         dyn_slice_make(sk ? sk : "", sk_len), dyn_slice_make(tk ? tk : "", tk_len));
    if (rc < 0) {
        s_client_free(c);
        if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
        return luaL_error(L, "bad field 'access_key' or 'session_token' to 'client_new' (malformed)");
    }
    dyn_retry_bucket_init(&c->bucket, DYN_RETRY_BUCKET_CAPACITY);
    dyn_sigv4_key_cache_init(&c->cache);
    c->cfg.bucket = &c->bucket;
    c->cfg.key_cache = &c->cache;
    c->cfg.retry.max_attempts = (int)max_attempts;
    c->cfg.retry.transient_base_ms = (uint32_t)base_ms;
    c->cfg.retry.throttle_base_ms = (uint32_t)throttle_ms;
    c->cfg.retry.cap_ms = (uint32_t)cap_ms;
    if (has_seed) {
        dyn_rng_seed(&c->cfg.rng, (uint64_t)seed);
    } else {
        /* Jitter only needs to differ between processes and clients, not to be secret. */
        uint64_t s = (uint64_t)time(NULL) * UINT64_C(6364136223846793005);
        s ^= (uint64_t)clock() ^ (uint64_t)(uintptr_t)c ^ ((uint64_t)getpid() << 32);
        dyn_rng_seed(&c->cfg.rng, s);
    }
    c->http_cfg.timeout_ms = (long)timeout_ms;
    c->http_cfg.connect_timeout_ms = (long)connect_ms;
    c->http_cfg.concurrency = (int)concurrency;
    box->c = c;
    return 1;
}

/* ---- results ---- */

static const char *s_error_code(const struct dyn_error *e) {
    switch (e->status) {
    case DYN_EAWS: return e->aws_type;
    case DYN_ETIMEOUT: return "Timeout";
    case DYN_ECRC: return "Checksum";
    case DYN_EHTTP: return "Http";
    case DYN_EINVAL: return "Credentials";
    default: return "Transport";
    }
}

static void s_push_info(lua_State *L, const struct dyn_error *e) {
    int retryable = e->retry_class == DYN_RETRY_THROTTLING || e->retry_class == DYN_RETRY_TRANSIENT;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, s_error_code(e));
    lua_setfield(L, -2, "code");
    if (e->http_status > 0) {
        lua_pushinteger(L, (lua_Integer)e->http_status);
        lua_setfield(L, -2, "status");
    }
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    if (e->request_id[0]) {
        lua_pushstring(L, e->request_id);
        lua_setfield(L, -2, "request_id");
    }
    lua_pushstring(L, dyn_retry_class_name(e->retry_class == DYN_RETRY_OK ? DYN_RETRY_CLIENT : e->retry_class));
    lua_setfield(L, -2, "retry_class");
    lua_pushboolean(L, retryable);
    lua_setfield(L, -2, "retryable");
    lua_pushinteger(L, e->attempts);
    lua_setfield(L, -2, "attempts");
}

#define DECODE_PAGE 2

/* The decode argument at idx: -1 (nil: the body as a string), the unmarshal
 * flag (a boolean), or DECODE_PAGE ("page": a dynamo.page over the body). */
static int s_decode_arg(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) return -1;
    if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "page") == 0) return DECODE_PAGE;
    luaL_argexpected(L, lua_type(L, idx) == LUA_TBOOLEAN, idx, "nil, boolean or \"page\"");
    return lua_toboolean(L, idx);
}

/* Gives the driver a response body that has been read, for the next
 * response (no large free and allocation per response); without one (closed
 * client, host transport) the memory is freed. */
static void s_give_back(struct client *c, struct dyn_buf *body) {
    if (c && c->http)
        dyn_http_recycle(c->http, body);
    else
        dyn_buf_free(body);
}

/* A page read to its end gives its memory back (owner: the client's box). */
static void s_page_recycle(void *owner, struct dyn_buf *body) { s_give_back(((struct client_box *)owner)->c, body); }

int ldynamo_push_client_page(lua_State *L, struct dyn_buf *body, int client_idx) {
    struct dyn_buf none = DYN_BUF_INIT(NULL);
    return ldynamo_push_page(L, body ? body : &none, client_idx, s_page_recycle);
}

/*
 * Pushes a successful call's body: as a string (decode -1) or decoded
 * (json_decode(body, decode)). Returns 1, or 0 with the decoder's message on
 * top when the body is not the JSON it should be.
 */
static int s_push_body(lua_State *L, struct dyn_call *call, int decode, int client_idx) {
    dyn_slice b = dyn_call_body(call);
    if (decode == DECODE_PAGE) {
        struct dyn_buf body;
        dyn_call_take_body(call, &body);
        return ldynamo_push_page(L, &body, client_idx, s_page_recycle);
    }
    if (decode < 0) {
        lua_pushlstring(L, b.ptr, b.len);
        return 1;
    }
    return ldynamo_push_json(L, b, decode);
}

/* Replaces the decoder's message on top with the info of an InvalidResponse error. */
static void s_invalid_response_info(lua_State *L, const struct dyn_call *call) {
    int msg = lua_gettop(L);
    /* the call's own record (status 200, request id, attempts), as an error */
    s_push_info(L, dyn_call_error(call));
    lua_pushliteral(L, "InvalidResponse");
    lua_setfield(L, -2, "code");
    lua_pushfstring(L, "the response is not valid JSON (%s)", lua_tostring(L, msg));
    lua_setfield(L, -2, "message");
    lua_remove(L, msg);
}

/* Gives back the memory of a call's response once it has been read. */
static void s_recycle(struct client *c, struct dyn_call *call) {
    struct dyn_buf b;
    dyn_call_take_body(call, &b);
    s_give_back(c, &b);
}

/* body | nil, "code: message", info. Raises on a memory error. */
static int s_push_result(lua_State *L, struct dyn_call *call, int decode, int client_idx) {
    const struct dyn_error *e = dyn_call_error(call);
    int status = dyn_call_status(call);
    if (status == DYN_OK) {
        if (s_push_body(L, call, decode, client_idx)) return 1;
        s_invalid_response_info(L, call);
        luaL_pushfail(L);
        lua_getfield(L, -2, "message");
        lua_pushfstring(L, "InvalidResponse: %s", lua_tostring(L, -1));
        lua_remove(L, -2);
        lua_rotate(L, -3, -1); /* fail, message, info */
        return 3;
    }
    if (status == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", s_error_code(e), e->message);
    s_push_info(L, e);
    return 3;
}

/* ---- calls ---- */

static int s_call_gc(lua_State *L) {
    struct lcall *lc = luaL_checkudata(L, 1, CALL_MT);
    if (!lc->borrowed) dyn_call_free(lc->call);
    lc->call = NULL;
    return 0;
}

/*
 * Pushes a new Call box tied to the client at client_idx and creates its C
 * call from the strings at op_idx and body_idx (absolute indices; body may be
 * nil). Returns DYN_OK or DYN_EINVAL (bad operation name); raises on memory.
 */
static int s_new_call(lua_State *L, int client_idx, struct client *c, int op_idx, int body_idx, struct lcall **out) {
    struct lcall *lc;
    size_t op_len, body_len = 2;
    const char *op = lua_tolstring(L, op_idx, &op_len);
    const char *body = lua_isnoneornil(L, body_idx) ? "{}" : lua_tolstring(L, body_idx, &body_len);
    int rc;
    lc = lua_newuserdatauv(L, sizeof *lc, 1);
    lc->call = NULL;
    lc->r = 0.0;
    lc->borrowed = 0;
    luaL_setmetatable(L, CALL_MT);
    lua_pushvalue(L, client_idx);
    lua_setiuservalue(L, -2, 1);
    rc = dyn_call_new(&c->cfg, dyn_slice_make(op, op_len), dyn_slice_make(body, body_len), &lc->call);
    if (rc == DYN_ENOMEM) luaL_error(L, "not enough memory");
    *out = lc;
    return rc;
}

/* As s_new_call for methods called as client:method(operation, body). */
static struct lcall *s_new_call_args(lua_State *L, struct client *c) {
    struct lcall *lc;
    luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3)) luaL_checkstring(L, 3);
    lua_settop(L, 3);
    if (s_new_call(L, 1, c, 2, 3, &lc) < 0)
        luaL_argerror(L, 2, "operation name expected (1 to 64 ASCII letters and digits)");
    return lc;
}

static struct dyn_http *s_http(lua_State *L, struct client *c) {
    if (!c->http) {
        int rc = dyn_http_new(&c->http_cfg, dyn_default_allocator(), &c->http);
        if (rc < 0) s_raise_status(L, rc, "cannot start the http driver");
    }
    return c->http;
}

static int l_client_call(lua_State *L) {
    struct client *c = s_check_client(L, 1);
    int decode = s_decode_arg(L, 4);
    struct lcall *lc = s_new_call_args(L, c);
    int rc = dyn_http_run(s_http(L, c), &lc->call, 1), nret;
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    nret = s_push_result(L, lc->call, decode, 1);
    s_recycle(c, lc->call);
    return nret;
}

static int l_client_call_many(lua_State *L) {
    struct client *c = s_check_client(L, 1);
    struct dyn_call **calls;
    lua_Integer n, i;
    int rc, decode = s_decode_arg(L, 3);
    luaL_checktype(L, 2, LUA_TTABLE);
    n = luaL_len(L, 2);
    if (n < 0 || (lua_Unsigned)n > SIZE_MAX / sizeof *calls) return luaL_error(L, "too many requests");
    lua_settop(L, 2);
    /* Lua-owned storage: a raise anywhere below leaks nothing. */
    calls = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *calls, 0); /* 3 */
    lua_createtable(L, (int)n, 0);                                          /* 4: the Call boxes */
    for (i = 1; i <= n; i++) {
        struct lcall *lc;
        if (lua_geti(L, 2, i) != LUA_TTABLE)
            return luaL_error(L, "bad request #%I to 'call_many' ({operation, body} expected)", i);
        lua_geti(L, 5, 1);
        lua_geti(L, 5, 2);
        if (lua_type(L, 6) != LUA_TSTRING || !(lua_type(L, 7) == LUA_TSTRING || lua_isnil(L, 7)))
            return luaL_error(L, "bad request #%I to 'call_many' ({operation, body} expected)", i);
        if (s_new_call(L, 1, c, 6, 7, &lc) < 0)
            return luaL_error(L, "bad request #%I to 'call_many' (operation name expected)", i);
        calls[i - 1] = lc->call;
        lua_rawseti(L, 4, i);
        lua_pop(L, 3);
    }
    rc = dyn_http_run(s_http(L, c), calls, (size_t)n);
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    lua_createtable(L, (int)n, 0); /* 5: the results */
    lua_pushnil(L);                /* 6: the failed positions, made on the first */
    for (i = 1; i <= n; i++) {
        struct dyn_call *call = calls[i - 1];
        int ok = dyn_call_status(call) == DYN_OK;
        if (ok) {
            if (!s_push_body(L, call, decode, 1)) {
                s_invalid_response_info(L, call);
                ok = 0;
            }
        } else {
            if (dyn_call_status(call) == DYN_ENOMEM) return luaL_error(L, "not enough memory");
            s_push_info(L, dyn_call_error(call));
        }
        if (!ok) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "error");
            if (lua_isnil(L, 6)) {
                lua_newtable(L);
                lua_replace(L, 6);
            }
            lua_pushboolean(L, 1);
            lua_rawseti(L, 6, i);
        }
        lua_rawseti(L, 5, i);
        s_recycle(c, call);
    }
    return 2;
}

static int l_client_set_credentials(lua_State *L) {
    struct client *c = s_check_client(L, 1);
    dyn_slice ak = ldynamo_checkslice(L, 2), sk = ldynamo_checkslice(L, 3);
    dyn_slice tk = lua_isnoneornil(L, 4) ? DYN_SLICE_EMPTY : ldynamo_checkslice(L, 4);
    int rc = dyn_call_config_set_credentials(&c->cfg, ak, sk, tk);
    if (rc == DYN_EINVAL)
        return luaL_error(L, "bad argument to 'set_credentials' (malformed access key or session token)");
    if (rc < 0) s_raise_status(L, rc, "cannot set credentials");
    return 0;
}

static int l_client_stats(lua_State *L) {
    struct client *c = s_check_client(L, 1);
    struct dyn_http_stats st;
    memset(&st, 0, sizeof st);
    if (c->http) dyn_http_get_stats(c->http, &st);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)st.connections);
    lua_setfield(L, -2, "connections");
    lua_pushinteger(L, (lua_Integer)st.waits);
    lua_setfield(L, -2, "waits");
    lua_pushinteger(L, (lua_Integer)st.retries);
    lua_setfield(L, -2, "retries");
    return 1;
}

static int l_client_prepare(lua_State *L) {
    struct client *c = s_check_client(L, 1);
    s_new_call_args(L, c);
    return 1;
}

/* The call at index 1, after checking its client is still open. */
static struct lcall *s_check_call(lua_State *L, struct client **c) {
    struct lcall *lc = luaL_checkudata(L, 1, CALL_MT);
    struct client_box *box;
    lua_getiuservalue(L, 1, 1);
    box = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!box || !box->c) luaL_error(L, "attempt to use a closed client");
    if (!lc->call) luaL_error(L, "attempt to use a closed call");
    if (c) *c = box->c;
    return lc;
}

static double s_fixed_random(void *ud) { return *(const double *)ud; }

static int l_call_next(lua_State *L) {
    struct client *c;
    struct lcall *lc = s_check_call(L, &c);
    /* Hosts often have fractional clocks (ngx.now() * 1000): accept any number, in whole ms. */
    lua_Number now = luaL_checknumber(L, 2);
    struct dyn_step step;
    size_t i;
    int rc;
    if (lua_isnoneornil(L, 3)) {
        dyn_call_set_random(lc->call, c->cfg.random);
    } else {
        struct dyn_random fixed;
        lua_Number r = luaL_checknumber(L, 3);
        luaL_argcheck(L, r >= 0.0 && r < 1.0, 3, "number in [0, 1) expected");
        lc->r = (double)r;
        fixed.fn = s_fixed_random;
        fixed.ud = &lc->r;
        dyn_call_set_random(lc->call, fixed);
    }
    luaL_argcheck(L, now >= -9.2e15 && now <= 9.2e15, 2, "milliseconds since the epoch expected");
    rc = dyn_call_next(lc->call, (int64_t)floor(now), &step);
    if (rc == DYN_EINVAL) return luaL_error(L, "call:next: a response is outstanding (call feed or fail first)");
    if (rc < 0) s_raise_status(L, rc, "call:next failed");
    switch (step.kind) {
    case DYN_STEP_SEND:
        lua_pushliteral(L, "send");
        lua_createtable(L, 0, 4);
        lua_pushstring(L, step.request.method);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, step.request.url);
        lua_setfield(L, -2, "url");
        lua_createtable(L, 0, (int)step.request.n_headers);
        for (i = 0; i < step.request.n_headers; i++) {
            lua_pushlstring(L, step.request.headers[i].name.ptr, step.request.headers[i].name.len);
            lua_pushlstring(L, step.request.headers[i].value.ptr, step.request.headers[i].value.len);
            lua_rawset(L, -3);
        }
        lua_setfield(L, -2, "headers");
        lua_pushlstring(L, step.request.body.ptr, step.request.body.len);
        lua_setfield(L, -2, "body");
        return 2;
    case DYN_STEP_WAIT:
        lua_pushliteral(L, "wait");
        lua_pushinteger(L, (lua_Integer)step.wait_ms);
        return 2;
    default: lua_pushliteral(L, "done"); return 1;
    }
}

static int l_call_feed(lua_State *L) {
    struct lcall *lc = s_check_call(L, NULL);
    lua_Integer status = luaL_checkinteger(L, 2);
    dyn_slice body = ldynamo_optslice(L, 4, "");
    struct dyn_header *headers = NULL;
    size_t n = 0, cap = 0;
    int rc;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) == LUA_TSTRING) cap++;
            lua_pop(L, 1);
        }
    }
    lua_settop(L, 4);
    lua_newtable(L); /* 5: keeps converted header values alive */
    headers = lua_newuserdatauv(L, (cap ? cap : 1) * sizeof *headers, 0); /* 6 */
    if (cap) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) == LUA_TSTRING && n < cap) {
                size_t kl, vl;
                const char *k = lua_tolstring(L, -2, &kl), *v;
                if (lua_type(L, -1) == LUA_TSTRING) {
                    v = lua_tolstring(L, -1, &vl);
                } else {
                    v = luaL_tolstring(L, -1, &vl); /* numbers, booleans ... as text */
                    lua_rawseti(L, 5, (lua_Integer)n + 1);
                }
                headers[n].name = dyn_slice_make(k, kl);
                headers[n].value = dyn_slice_make(v, vl);
                n++;
            }
            lua_pop(L, 1);
        }
    }
    rc = dyn_call_feed(lc->call, (long)status, headers, n, body);
    if (rc == DYN_EINVAL) return luaL_error(L, "call:feed: no request is outstanding");
    if (rc < 0) s_raise_status(L, rc, "call:feed failed");
    return 0;
}

static int l_call_fail(lua_State *L) {
    static const char *const kinds[] = {"transport", "timeout", NULL};
    struct lcall *lc = s_check_call(L, NULL);
    int kind = luaL_checkoption(L, 2, NULL, kinds);
    const char *msg = luaL_optstring(L, 3, NULL);
    int rc = dyn_call_feed_transport_error(lc->call, kind == 1 ? DYN_ETIMEOUT : DYN_ETRANSPORT, msg);
    if (rc == DYN_EINVAL) return luaL_error(L, "call:fail: no request is outstanding");
    return 0;
}

static int l_call_result(lua_State *L) {
    struct lcall *lc = luaL_checkudata(L, 1, CALL_MT);
    int decode;
    if (!lc->call) return luaL_error(L, "attempt to use a closed call");
    if (!dyn_call_is_done(lc->call)) return luaL_error(L, "call:result: the call is not finished");
    decode = s_decode_arg(L, 2);
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, 1); /* 3: the client */
    return s_push_result(L, lc->call, decode, 3);
}

/* ---- for the other areas (ldynamo_batch.c) ---- */

const struct dyn_call_config *ldynamo_client_config(lua_State *L, int idx) { return &s_check_client(L, idx)->cfg; }

struct dyn_http *ldynamo_client_http(lua_State *L, int idx) { return s_http(L, s_check_client(L, idx)); }

void ldynamo_push_error_info(lua_State *L, const struct dyn_error *e) { s_push_info(L, e); }

void ldynamo_push_borrowed_call(lua_State *L, int client_idx, struct dyn_call *call) {
    struct lcall *lc = lua_newuserdatauv(L, sizeof *lc, 1);
    lc->call = call;
    lc->r = 0.0;
    lc->borrowed = 1;
    luaL_setmetatable(L, CALL_MT);
    lua_pushvalue(L, client_idx);
    lua_setiuservalue(L, -2, 1);
}

struct dyn_call *ldynamo_release_borrowed_call(lua_State *L, int idx) {
    struct lcall *lc = luaL_checkudata(L, idx, CALL_MT);
    struct dyn_call *call = lc->borrowed ? lc->call : NULL;
    if (lc->borrowed) lc->call = NULL;
    return call;
}

/* ---- module ---- */

static const luaL_Reg s_client_methods[] = {
    {"call", l_client_call},
    {"call_many", l_client_call_many},
    {"prepare", l_client_prepare},
    {"set_credentials", l_client_set_credentials},
    {"stats", l_client_stats},
    {"close", s_client_close},
    {NULL, NULL},
};

static const luaL_Reg s_client_meta[] = {
    {"__gc", s_client_close},
    {"__close", s_client_close},
    {"__tostring", s_client_tostring},
    {NULL, NULL},
};

static const luaL_Reg s_call_methods[] = {
    {"next", l_call_next},
    {"feed", l_call_feed},
    {"fail", l_call_fail},
    {"result", l_call_result},
    {NULL, NULL},
};

static const luaL_Reg s_call_meta[] = {
    {"__gc", s_call_gc},
    {"__close", s_call_gc},
    {NULL, NULL},
};

static void s_new_metatable(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

void ldynamo_open_client(lua_State *L) {
    s_new_metatable(L, CLIENT_MT, s_client_meta, s_client_methods);
    s_new_metatable(L, CALL_MT, s_call_meta, s_call_methods);
    lua_pushcfunction(L, l_client_new);
    lua_setfield(L, -2, "client_new");
}
