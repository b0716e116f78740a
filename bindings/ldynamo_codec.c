/*
 * dynamo.core: the codec area. Lua values <-> DynamoDB AttributeValue JSON,
 * plain JSON for request and response bodies, and the value types that Lua
 * lacks (NULL, number, binary, set, list and map tags). ldynamo_codec.h says
 * which file holds what; this one holds what they all share: the state
 * userdata, the error paths of walks over Lua values, and the registration
 * of every codec function with the shared upvalues.
 *
 * Members added to dynamo.core (lua/dynamo/types.lua documents the types):
 *   ldynamo_values.c   number, number_text, binary, set, set_key, list, map,
 *                      as_item, as_av, type_of, NULL, _metatables
 *   ldynamo_encode.c   encode_item, encode_av, json_encode, marshal, marshal_value
 *   ldynamo_decode.c   decode_item, decode_av, json_decode, unmarshal, unmarshal_value
 *   ldynamo_page.c     page, page_next, page_fill, page_result
 *   ldynamo_records.c  encode_items, encode_keys, key_id, index_items, prepare_keys, merge_items
 * Encoding errors read "<root><path>: <what>" (root defaults to "item" for
 * encode_item, "value" elsewhere); decoding errors "json: <what> at byte N"
 * (N 1-based).
 */
#include <stdarg.h>
#include <stdio.h>

#include "ldynamo_codec.h"

/* ---- state ------------------------------------------------------------ */

static void s_state_release(struct codec_state *st) {
    dyn_buf_free(&st->out);
    dyn_buf_free(&st->scratch);
    dyn_mem_free(&st->alloc, st->entries, st->capentries * sizeof *st->entries);
    st->entries = NULL;
    st->nentries = st->capentries = 0;
}

static int l_state_gc(lua_State *L) {
    struct codec_state *st = lua_touserdata(L, 1);
    if (st) s_state_release(st);
    return 0;
}

/* Pushes a fresh state userdata (with its __gc) and returns it. */
static struct codec_state *s_state_new(lua_State *L) {
    struct codec_state *st = lua_newuserdatauv(L, sizeof *st, 1);
    void *ud;
    memset(st, 0, sizeof *st);
    lua_newtable(L); /* anchors the strings the caches point at */
    lua_setiuservalue(L, -2, 1);
    st->alloc.fn = lua_getallocf(L, &ud);
    st->alloc.ud = ud;
    dyn_buf_init(&st->out, &st->alloc);
    dyn_buf_init(&st->scratch, &st->alloc);
    if (luaL_newmetatable(L, "dynamo.codec_state")) {
        lua_pushcfunction(L, l_state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return st;
}

/* The value types' addresses, copied from the state whose types they are. */
static void s_copy_types(struct codec_state *to, const struct codec_state *from) {
    to->null_ud = from->null_ud;
    to->mt_number = from->mt_number;
    to->mt_binary = from->mt_binary;
    to->mt_set = from->mt_set;
    to->mt_ss = from->mt_ss;
    to->mt_ns = from->mt_ns;
    to->mt_bs = from->mt_bs;
    to->mt_list = from->mt_list;
    to->mt_map = from->mt_map;
    to->mt_item = from->mt_item;
    to->mt_av = from->mt_av;
}

struct codec_state *codec_acquire_temp(lua_State *L, const struct codec_state *shared, int *idx) {
    struct codec_state *tmp = s_state_new(L);
    *idx = lua_gettop(L);
    s_copy_types(tmp, shared);
    return tmp;
}

int codec_finish_out(lua_State *L, struct codec_state *st) {
    lua_pushlstring(L, st->out.len ? st->out.ptr : "", st->out.len);
    codec_release(st);
    return 1;
}

/* ---- errors ----------------------------------------------------------- */

static int s_is_ident(const char *k, size_t n) {
    size_t i;
    if (n == 0 || !((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_')) return 0;
    for (i = 1; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

/* Appends the path ("item.address.geo[2]", `x["odd key"]`) to b. */
static void s_add_path(struct codec_walk *w, luaL_Buffer *b) {
    int i;
    luaL_addstring(b, w->root);
    for (i = 0; i < w->nframes; i++) {
        const struct codec_frame *f = &w->path[i];
        if (!f->key) {
            char num[32];
            snprintf(num, sizeof num, "[%lld]", (long long)f->index);
            luaL_addstring(b, num);
        } else if (s_is_ident(f->key, f->len)) {
            luaL_addchar(b, '.');
            luaL_addlstring(b, f->key, f->len);
        } else {
            size_t j;
            luaL_addstring(b, "[\"");
            for (j = 0; j < f->len; j++) {
                unsigned char c = (unsigned char)f->key[j];
                if (c == '"' || c == '\\') {
                    luaL_addchar(b, '\\');
                    luaL_addchar(b, (char)c);
                } else if (c < 0x20 || c == 0x7f) {
                    char esc[8];
                    snprintf(esc, sizeof esc, "\\%d", c);
                    luaL_addstring(b, esc);
                } else {
                    luaL_addchar(b, (char)c);
                }
            }
            luaL_addstring(b, "\"]");
        }
    }
}

int codec_fail(struct codec_walk *w, const char *fmt, ...) {
    lua_State *L = w->L;
    luaL_Buffer b;
    va_list ap;
    codec_release(w->st);
    luaL_buffinit(L, &b);
    s_add_path(w, &b);
    luaL_addstring(&b, ": ");
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    return lua_error(L);
}

int codec_oom(struct codec_walk *w) {
    codec_release(w->st);
    return luaL_error(w->L, "not enough memory");
}

const char *codec_num_err_text(enum dyn_av_num_err why) {
    switch (why) {
    case DYN_AV_NUM_PRECISION: return "number has more than 38 significant digits";
    case DYN_AV_NUM_TOO_LARGE:
        return "number too large for DynamoDB (magnitude above 9.9999999999999999999999999999999999999E+125)";
    case DYN_AV_NUM_TOO_SMALL: return "number too small for DynamoDB (non-zero magnitude below 1E-130)";
    case DYN_AV_NUM_NOT_FINITE: return "not a finite number";
    default: return "not a decimal number";
    }
}

/* ---- registration ----------------------------------------------------- */

void codec_push_upvalues(lua_State *L, int base) {
    int i;
    for (i = 0; i < UV_COUNT; i++) lua_pushvalue(L, base + i);
}

void codec_setfuncs(lua_State *L, int idx, const luaL_Reg *funcs, int base) {
    lua_pushvalue(L, idx);
    codec_push_upvalues(L, base);
    luaL_setfuncs(L, funcs, UV_COUNT);
    lua_pop(L, 1);
}

void ldynamo_open_codec(lua_State *L) {
    int mod = lua_gettop(L), base = mod + 1;
    struct codec_state *st = s_state_new(L); /* UV_STATE */
    codec_push_types(L);                      /* UV_NULL .. UV_MT_AV */
    st->null_ud = lua_touserdata(L, base + UV_NULL - 1);
    st->mt_number = lua_topointer(L, base + UV_MT_NUMBER - 1);
    st->mt_binary = lua_topointer(L, base + UV_MT_BINARY - 1);
    st->mt_set = lua_topointer(L, base + UV_MT_SET - 1);
    st->mt_ss = lua_topointer(L, base + UV_MT_SS - 1);
    st->mt_ns = lua_topointer(L, base + UV_MT_NS - 1);
    st->mt_bs = lua_topointer(L, base + UV_MT_BS - 1);
    st->mt_list = lua_topointer(L, base + UV_MT_LIST - 1);
    st->mt_map = lua_topointer(L, base + UV_MT_MAP - 1);
    st->mt_item = lua_topointer(L, base + UV_MT_ITEM - 1);
    st->mt_av = lua_topointer(L, base + UV_MT_AV - 1);

    codec_open_values(L, mod, base);
    codec_open_encode(L, mod, base);
    codec_open_decode(L, mod, base);
    codec_open_page(L, mod, base);
    codec_open_records(L, mod, base);
    /* The state is kept alive by the closures' upvalues. */
    lua_settop(L, mod);
}
