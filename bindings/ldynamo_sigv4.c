/*
 * dynamo.core: the sigv4 area. SigV4 signing (every stage, for specs), a
 * signer object with a cached signing key, SHA-256/HMAC hex and CRC-32.
 *
 * Request tables look like
 *   { method = "POST", path = "/", query = "", payload = body,
 *     headers = { {"host", h}, {"x-amz-date", d}, ... },   -- order kept
 *     region = "us-east-1", service = "dynamodb",
 *     access_key = id, secret_key = secret, token = nil, time = os.time() }
 * Bad input raises "<function>: field 'x' must be ..."; messages only ever
 * name fields, never echo values, so a secret cannot leak into an error.
 *
 * core.sigv4_signer() returns a dynamo.Signer whose :sign(t) keeps the derived
 * key between calls. It also keeps a reference to (never a copy of) the last
 * secret string, so that an unchanged secret is not hashed again to check for
 * rotation; closing or collecting the signer drops both.
 */
#include "ldynamo.h"

#include "dynamo/crypto.h"
#include "dynamo/sigv4.h"

#define S_SIGNER_MT "dynamo.Signer"
#define S_STACK_HEADERS 16

/* Which fields a function reads (sigv4_canonical_request needs no credentials). */
#define S_NEED_SCOPE 1
#define S_NEED_CREDENTIALS 2

/*
 * The output buffer lives in a userdata so that a Lua error (a bad field, or
 * running out of memory while pushing the result) can never leak it: the
 * collector frees it. Stateless functions make a temporary one.
 */
struct s_signer {
    struct dyn_sigv4_key_cache cache;
    struct dyn_allocator alloc; /* the state's lua_Alloc; buf.alloc points here */
    struct dyn_buf buf;
    /*
     * SHA-256 of the secret string held in user value 1. Lua strings are
     * immutable, so while that reference is kept, a raw-equal secret has this
     * fingerprint and need not be hashed again on every signature.
     */
    unsigned char secret_fp[32];
    int fp_valid;
};

static struct s_signer *s_signer_new(lua_State *L) {
    struct s_signer *s = lua_newuserdatauv(L, sizeof *s, 1);
    dyn_sigv4_key_cache_init(&s->cache);
    s->fp_valid = 0;
    /*
     * lua_Alloc has dyn_alloc_fn's shape. Taking the function itself, rather
     * than a wrapper holding L, keeps the buffer valid when L is a coroutine
     * that is collected before the signer.
     */
    s->alloc.fn = lua_getallocf(L, &s->alloc.ud);
    dyn_buf_init(&s->buf, &s->alloc);
    luaL_setmetatable(L, S_SIGNER_MT);
    return s;
}

static int s_signer_gc(lua_State *L) {
    struct s_signer *s = luaL_checkudata(L, 1, S_SIGNER_MT);
    dyn_sigv4_key_cache_init(&s->cache); /* wipes the derived key */
    dyn_secure_zero(s->secret_fp, sizeof s->secret_fp);
    s->fp_valid = 0;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1); /* drops the reference to the last secret */
    dyn_buf_free(&s->buf);
    return 0;
}

static int s_signer_tostring(lua_State *L) {
    lua_pushfstring(L, S_SIGNER_MT " (%p)", luaL_checkudata(L, 1, S_SIGNER_MT));
    return 1;
}

/* ---- reading a request table ----------------------------------------- */

/*
 * The field names, interned once and shared as upvalues by every function of
 * this area: lua_gettable with a ready key skips lua_getfield's lookup of the
 * C string on each of the ~11 reads per signature.
 */
enum {
    K_METHOD = 1, K_PATH, K_QUERY, K_PAYLOAD, K_REGION, K_SERVICE, K_TIME,
    K_ACCESS_KEY, K_SECRET_KEY, K_TOKEN, K_HEADERS,
    K_COUNT = K_HEADERS
};
static const char *const s_keys[K_COUNT] = {"method", "path", "query", "payload", "region", "service",
                                            "time", "access_key", "secret_key", "token", "headers"};

static int s_get(lua_State *L, int t, int k) {
    lua_pushvalue(L, lua_upvalueindex(k));
    return lua_gettable(L, t);
}

/*
 * Pushes t[key] and returns it as a slice; the value stays on the stack so
 * the string is anchored for as long as the caller's frame. `def` (may be
 * NULL: required) is used when the field is nil.
 */
static dyn_slice s_field(lua_State *L, int t, const char *fn, int k, const char *def) {
    size_t n;
    const char *p;
    const char *key = s_keys[k - 1];
    int type = s_get(L, t, k);
    if (type == LUA_TSTRING) {
        p = lua_tolstring(L, -1, &n);
        return dyn_slice_make(p, n);
    }
    if (type == LUA_TNIL && def) return dyn_slice_cstr(def);
    luaL_error(L, "%s: field '%s' must be a string%s", fn, key, def ? " or nil" : "");
    return DYN_SLICE_EMPTY; /* not reached */
}

/* Reads headers = { {name, value}, ... } into hdrs (or a scratch userdata). */
static void s_headers(lua_State *L, int t, const char *fn, struct dyn_header *stack_hdrs,
                      struct dyn_sigv4_input *in) {
    struct dyn_header *h = stack_hdrs;
    lua_Integer i, n;
    int hidx;
    size_t len;
    const char *p;
    if (s_get(L, t, K_HEADERS) != LUA_TTABLE)
        luaL_error(L, "%s: field 'headers' must be an array of {name, value} pairs", fn);
    hidx = lua_gettop(L);
    n = luaL_len(L, hidx);
    if (n > 100000) luaL_error(L, "%s: too many headers", fn);
    /* two anchored strings per header, plus a few working slots */
    luaL_checkstack(L, (int)n * 2 + 8, "too many headers");
    if (n > S_STACK_HEADERS) h = lua_newuserdatauv(L, (size_t)n * sizeof *h, 0);
    for (i = 1; i <= n; i++) {
        if (lua_geti(L, hidx, i) != LUA_TTABLE)
            luaL_error(L, "%s: headers[%d] must be a {name, value} pair", fn, (int)i);
        if (lua_geti(L, -1, 1) != LUA_TSTRING) luaL_error(L, "%s: headers[%d][1] (name) must be a string", fn, (int)i);
        p = lua_tolstring(L, -1, &len);
        h[i - 1].name = dyn_slice_make(p, len);
        if (lua_geti(L, -2, 2) != LUA_TSTRING)
            luaL_error(L, "%s: headers[%d][2] (value) must be a string", fn, (int)i);
        p = lua_tolstring(L, -1, &len);
        h[i - 1].value = dyn_slice_make(p, len);
        lua_remove(L, -3); /* the pair table; its strings stay on the stack */
    }
    in->headers = h;
    in->n_headers = (size_t)n;
}

/* Returns the stack index of the secret key (0 when not read). */
static int s_read_input(lua_State *L, int t, const char *fn, int need, struct dyn_header *stack_hdrs,
                        struct dyn_sigv4_input *in) {
    int isint = 0, secret_idx = 0;
    if (lua_type(L, t) != LUA_TTABLE)
        luaL_error(L, "%s: expected a request table, got %s", fn, luaL_typename(L, t));
    luaL_checkstack(L, 24, NULL);
    memset(in, 0, sizeof *in);
    in->method = s_field(L, t, fn, K_METHOD, NULL);
    in->path = s_field(L, t, fn, K_PATH, NULL);
    in->query = s_field(L, t, fn, K_QUERY, "");
    in->payload = s_field(L, t, fn, K_PAYLOAD, "");
    if (need & S_NEED_SCOPE) {
        in->region = s_field(L, t, fn, K_REGION, NULL);
        in->service = s_field(L, t, fn, K_SERVICE, NULL);
        s_get(L, t, K_TIME);
        in->unix_time = (int64_t)lua_tointegerx(L, -1, &isint);
        if (!isint || lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: field 'time' must be an integer (unix seconds)", fn);
    }
    if (need & S_NEED_CREDENTIALS) {
        in->access_key = s_field(L, t, fn, K_ACCESS_KEY, NULL);
        in->secret_key = s_field(L, t, fn, K_SECRET_KEY, NULL);
        secret_idx = lua_gettop(L);
        in->token = s_field(L, t, fn, K_TOKEN, "");
    }
    s_headers(L, t, fn, stack_hdrs, in);
    return secret_idx;
}

/* Raises for a failed stage; the message names the problem, never a value. */
static int s_raise(lua_State *L, const char *fn, int rc, const struct dyn_sigv4_input *in) {
    const char *why = rc == DYN_EINVAL ? dyn_sigv4_input_error(in) : NULL;
    return luaL_error(L, "%s: %s", fn, why ? why : dyn_status_str(rc));
}

/* ---- signing --------------------------------------------------------- */

/*
 * The secret's fingerprint for a signer's cache: reused while the secret is
 * the very string hashed last time (held in user value 1), else recomputed.
 */
static const unsigned char *s_secret_fp(lua_State *L, struct s_signer *s, int self, int secret_idx,
                                        dyn_slice secret) {
    int same;
    lua_getiuservalue(L, self, 1);
    same = s->fp_valid && lua_rawequal(L, -1, secret_idx);
    lua_pop(L, 1);
    if (same) return s->secret_fp;
    s->fp_valid = 0;
    if (dyn_sha256(secret.ptr, secret.len, s->secret_fp) != DYN_OK) return NULL; /* the core retries */
    lua_pushvalue(L, secret_idx);
    lua_setiuservalue(L, self, 1);
    s->fp_valid = 1;
    return s->secret_fp;
}

/* Signs the request table at `arg`; `self` is the signer's index when cached. */
static int s_sign(lua_State *L, struct s_signer *s, int self, const char *fn, int arg) {
    struct dyn_header hdrs[S_STACK_HEADERS];
    struct dyn_sigv4_input in;
    const unsigned char *fp = NULL;
    int rc, secret_idx;
    secret_idx = s_read_input(L, arg, fn, S_NEED_SCOPE | S_NEED_CREDENTIALS, hdrs, &in);
    if (self) fp = s_secret_fp(L, s, self, secret_idx, in.secret_key);
    dyn_buf_reset(&s->buf);
    rc = dyn_sigv4_authorization_cached_fp(&in, self ? &s->cache : NULL, fp, &s->buf);
    if (rc != DYN_OK) return s_raise(L, fn, rc, &in);
    lua_pushlstring(L, s->buf.len ? s->buf.ptr : "", s->buf.len);
    return 1;
}

/* core.sigv4_sign(t) -> "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." */
static int l_sigv4_sign(lua_State *L) {
    struct s_signer *s;
    lua_settop(L, 1);
    s = s_signer_new(L);
    s_sign(L, s, 0, "sigv4_sign", 1);
    dyn_buf_free(&s->buf); /* no need to wait for the collector */
    return 1;
}

/* core.sigv4_canonical_request(t) -> the canonical request text */
static int l_sigv4_canonical_request(lua_State *L) {
    struct dyn_header hdrs[S_STACK_HEADERS];
    struct dyn_sigv4_input in;
    struct s_signer *s;
    int rc;
    lua_settop(L, 1);
    s = s_signer_new(L);
    s_read_input(L, 1, "sigv4_canonical_request", 0, hdrs, &in);
    rc = dyn_sigv4_canonical_request(&in, &s->buf);
    if (rc != DYN_OK) return s_raise(L, "sigv4_canonical_request", rc, &in);
    lua_pushlstring(L, s->buf.len ? s->buf.ptr : "", s->buf.len);
    dyn_buf_free(&s->buf);
    return 1;
}

/* core.sigv4_string_to_sign(t) -> the string to sign */
static int l_sigv4_string_to_sign(lua_State *L) {
    static const char fn[] = "sigv4_string_to_sign";
    struct dyn_header hdrs[S_STACK_HEADERS];
    struct dyn_sigv4_input in;
    struct s_signer *s;
    size_t n;
    const char *creq;
    int rc;
    lua_settop(L, 1);
    s = s_signer_new(L);
    s_read_input(L, 1, fn, S_NEED_SCOPE, hdrs, &in);
    rc = dyn_sigv4_canonical_request(&in, &s->buf);
    if (rc != DYN_OK) return s_raise(L, fn, rc, &in);
    /* the canonical request moves into a Lua string so the buffer can be reused */
    creq = lua_pushlstring(L, s->buf.len ? s->buf.ptr : "", s->buf.len);
    n = s->buf.len;
    dyn_buf_reset(&s->buf);
    rc = dyn_sigv4_string_to_sign(&in, dyn_slice_make(creq, n), &s->buf);
    if (rc != DYN_OK) return s_raise(L, fn, rc, &in);
    lua_pushlstring(L, s->buf.len ? s->buf.ptr : "", s->buf.len);
    dyn_buf_free(&s->buf);
    return 1;
}

/* core.sigv4_signer() -> a dynamo.Signer whose :sign(t) caches the signing key */
static int l_sigv4_signer(lua_State *L) {
    s_signer_new(L);
    return 1;
}

static int l_signer_sign(lua_State *L) {
    struct s_signer *s = luaL_checkudata(L, 1, S_SIGNER_MT);
    return s_sign(L, s, 1, "sign", 2);
}

/* ---- dates and hashes ------------------------------------------------ */

/* core.amz_date(unix_seconds) -> "YYYYMMDDTHHMMSSZ" (clamped to years 0000..9999) */
static int l_amz_date(lua_State *L) {
    char out[17];
    dyn_sigv4_amz_date((int64_t)luaL_checkinteger(L, 1), out);
    lua_pushlstring(L, out, 16);
    return 1;
}

/* core.crc32(s [, crc]) -> integer; pass a previous result to continue it */
static int l_crc32(lua_State *L) {
    dyn_slice s = ldynamo_checkslice(L, 1);
    lua_Integer crc = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, crc >= 0 && crc <= (lua_Integer)0xFFFFFFFF, 2, "crc must be in 0..0xFFFFFFFF");
    lua_pushinteger(L, (lua_Integer)dyn_crc32((uint32_t)crc, s.ptr, s.len));
    return 1;
}

static void s_push_hex(lua_State *L, const unsigned char *d, size_t n) {
    static const char digits[] = "0123456789abcdef";
    char hex[2 * DYN_SHA256_LEN];
    size_t i;
    for (i = 0; i < n; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * n);
}

/* core.sha256_hex(s) -> 64 lowercase hex digits */
static int l_sha256_hex(lua_State *L) {
    dyn_slice s = ldynamo_checkslice(L, 1);
    unsigned char d[DYN_SHA256_LEN];
    if (dyn_sha256(s.ptr, s.len, d) != DYN_OK) return luaL_error(L, "sha256_hex: not enough memory");
    s_push_hex(L, d, sizeof d);
    return 1;
}

/* core.hmac_sha256_hex(key, s) -> 64 lowercase hex digits */
static int l_hmac_sha256_hex(lua_State *L) {
    dyn_slice key = ldynamo_checkslice(L, 1), s = ldynamo_checkslice(L, 2);
    unsigned char d[DYN_SHA256_LEN];
    if (dyn_hmac_sha256(key.ptr, key.len, s.ptr, s.len, d) != DYN_OK)
        return luaL_error(L, "hmac_sha256_hex: not enough memory");
    s_push_hex(L, d, sizeof d);
    return 1;
}

void ldynamo_open_sigv4(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"sigv4_sign", l_sigv4_sign},
        {"sigv4_canonical_request", l_sigv4_canonical_request},
        {"sigv4_string_to_sign", l_sigv4_string_to_sign},
        {"sigv4_signer", l_sigv4_signer},
        {"amz_date", l_amz_date},
        {"crc32", l_crc32},
        {"sha256_hex", l_sha256_hex},
        {"hmac_sha256_hex", l_hmac_sha256_hex},
        {NULL, NULL},
    };
    static const luaL_Reg methods[] = {{"sign", l_signer_sign}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", s_signer_gc}, {"__close", s_signer_gc}, {"__tostring", s_signer_tostring}, {NULL, NULL}};
    int k;
    if (luaL_newmetatable(L, S_SIGNER_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlibtable(L, methods);
        for (k = 0; k < K_COUNT; k++) lua_pushstring(L, s_keys[k]);
        luaL_setfuncs(L, methods, K_COUNT);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    for (k = 0; k < K_COUNT; k++) lua_pushstring(L, s_keys[k]);
    luaL_setfuncs(L, funcs, K_COUNT);
}
