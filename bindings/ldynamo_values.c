/*
 * dynamo.core: the value types that Lua lacks, their constructors and
 * metamethods (lua/dynamo/types.lua documents them and adds methods).
 *
 *   number(v), number_text(v)   -> a number object (canonical text, all 38 digits) / its text
 *   binary(bytes)               -> a binary object (B)
 *   set(array [, kind]), set_key(kind, v) -> a set (SS, NS, BS) / an element's identity in one
 *   list(t), map(t)             -> t tagged as an L or an M
 *   as_item(t), as_av(v)        -> wrappers that embed AV form in json_encode's plain JSON
 *   type_of(v)                  -> "S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M" or nil
 *   NULL, _metatables
 *
 * A number object is a userdata holding its canonical text; a binary, an
 * empty userdata whose user value is the bytes' string; sets, lists and maps
 * are plain tables told apart by their metatables (one per set kind, one for
 * a set of no kind yet). NULL is one userdata per Lua state.
 */
#include <math.h>

#include "ldynamo_codec.h"

/* ---- objects ----------------------------------------------------------- */

void codec_push_number(lua_State *L, const char *text, size_t len) {
    struct codec_num *n = lua_newuserdatauv(L, sizeof(struct codec_num) + len, 0);
    n->len = (unsigned short)len;
    memcpy(n->text, text, len);
    n->text[len] = '\0';
    lua_pushvalue(L, lua_upvalueindex(UV_MT_NUMBER));
    lua_setmetatable(L, -2);
}

void codec_wrap_binary(lua_State *L) {
    lua_newuserdatauv(L, 0, 1);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, lua_upvalueindex(UV_MT_BINARY));
    lua_setmetatable(L, -2);
}

/* ---- value constructors ----------------------------------------------- */

/* Canonical N text of a Lua number / numeric string / number object at arg. */
static size_t s_number_arg(lua_State *L, int arg, char *buf, const char *fname) {
    struct codec_state *st = codec_shared(L);
    enum dyn_av_num_err why = DYN_AV_NUM_SYNTAX;
    size_t len = 0;
    int rc;
    switch (codec_kind_of(L, st, arg)) {
    case K_NUMBER:
        len = codec_num_at(L, arg)->len;
        memcpy(buf, codec_num_at(L, arg)->text, len + 1);
        return len;
    case K_INT: return dyn_av_format_int((int64_t)lua_tointeger(L, arg), buf);
    case K_FLOAT: {
        lua_Number d = lua_tonumber(L, arg);
        if (dyn_av_number_from_double(d, buf, &len, &why) == DYN_OK) return len;
        if (why == DYN_AV_NUM_NOT_FINITE)
            luaL_error(L, "%s: %s cannot be stored in DynamoDB", fname, isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
        luaL_error(L, "%s: %s", fname, codec_num_err_text(why));
        return 0;
    }
    case K_STRING: {
        size_t n;
        const char *s = lua_tolstring(L, arg, &n);
        rc = dyn_av_number_canon(dyn_slice_make(s, n), buf, &len, &why);
        if (rc == DYN_OK) return len;
        if (why == DYN_AV_NUM_SYNTAX) luaL_error(L, "%s: \"%s\" is not a decimal number", fname, s);
        luaL_error(L, "%s: %s", fname, codec_num_err_text(why));
        return 0;
    }
    default: luaL_typeerror(L, arg, "number or decimal string"); return 0;
    }
}

/* core.number(text_or_number) -> number object (canonical text). */
static int l_number(lua_State *L) {
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    luaL_checkany(L, 1);
    if (codec_kind_of(L, codec_shared(L), 1) == K_NUMBER) {
        lua_settop(L, 1);
        return 1;
    }
    len = s_number_arg(L, 1, buf, "dynamo.number");
    codec_push_number(L, buf, len);
    return 1;
}

/* core.number_text(v) -> canonical text of a number, number object or decimal string. */
static int l_number_text(lua_State *L) {
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    luaL_checkany(L, 1);
    len = s_number_arg(L, 1, buf, "dynamo.number");
    lua_pushlstring(L, buf, len);
    return 1;
}

/* core.binary(bytes) -> binary object. */
static int l_binary(lua_State *L) {
    if (codec_kind_of(L, codec_shared(L), 1) == K_BINARY) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_settop(L, 1);
    codec_wrap_binary(L);
    return 1;
}

/* Set key and kind letter ('S', 'N', 'B') of the element at idx; pushes the key. */
static char s_set_key(lua_State *L, int idx, int pos) {
    char buf[DYN_AV_NUM_MAX];
    struct codec_state *st = codec_shared(L);
    switch (codec_kind_of(L, st, idx)) {
    case K_STRING: {
        size_t n, bad = 0;
        const char *s = lua_tolstring(L, idx, &n);
        if (!dyn_json_utf8_valid(dyn_slice_make(s, n), &bad))
            luaL_error(L, "dynamo.set: element %d is not valid UTF-8 (byte %d); use dynamo.binary for raw bytes", pos,
                       (int)bad + 1);
        lua_pushvalue(L, idx);
        return 'S';
    }
    case K_INT:
    case K_FLOAT:
    case K_NUMBER: {
        size_t n = s_number_arg(L, idx, buf, "dynamo.set");
        lua_pushlstring(L, buf, n);
        return 'N';
    }
    case K_BINARY:
        codec_binary_bytes(L, idx);
        return 'B';
    default:
        luaL_error(L, "dynamo.set: element %d is a %s; sets hold strings, numbers or dynamo.binary", pos,
                   luaL_typename(L, idx));
        return 0;
    }
}

/*
 * core.set(array [, kind]) -> set object. Layout (shared with types.lua): a
 * table holding the elements at 1..n and nothing else, whose metatable says
 * the element type (one metatable per kind, one for "not known yet").
 * Duplicates are dropped, numbers compared by canonical text.
 */
static int l_set(lua_State *L) {
    lua_Integer n, i, count = 0;
    char kind = 0;
    const char *want = luaL_optstring(L, 2, NULL);
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    if (want) {
        if (strcmp(want, "SS") && strcmp(want, "NS") && strcmp(want, "BS"))
            luaL_argerror(L, 2, "set type must be \"SS\", \"NS\" or \"BS\"");
        kind = want[0];
    }
    lua_settop(L, 1);
    n = (lua_Integer)luaL_len(L, 1);
    lua_createtable(L, (int)n, 0); /* 2: the set */
    lua_createtable(L, 0, (int)n); /* 3: the keys seen */
    for (i = 1; i <= n; i++) {
        char k;
        lua_geti(L, 1, i);                     /* 4: element */
        if (lua_isnil(L, 4)) luaL_error(L, "dynamo.set: element %d is nil", (int)i);
        k = s_set_key(L, 4, (int)i);           /* 5: key */
        if (kind && k != kind)
            luaL_error(L, "dynamo.set: mixed element types (%cS and %cS)", kind, k);
        kind = k;
        lua_pushvalue(L, 5);
        if (lua_rawget(L, 3) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushinteger(L, ++count);
            lua_rawset(L, 3); /* index[key] = position */
            lua_rawseti(L, 2, count);
        } else {
            lua_pop(L, 3); /* a duplicate: dropped */
        }
        lua_settop(L, 3);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(kind ? codec_set_uv(kind) : UV_MT_SET));
    lua_setmetatable(L, 2);
    return 1;
}

/*
 * core.set_key(kind, v) -> the key that identifies v in a set of kind "SS",
 * "NS" or "BS" (the string, the canonical number text, the bytes), or nil
 * when v cannot be an element of such a set.
 */
static int l_set_key(lua_State *L) {
    const char *kind = luaL_checkstring(L, 1);
    struct codec_state *st = codec_shared(L);
    enum codec_kind k;
    luaL_checkany(L, 2);
    k = codec_kind_of(L, st, 2);
    if (kind[0] == 'S' && k == K_STRING) {
        lua_settop(L, 2);
        return 1;
    }
    if (kind[0] == 'N' && (k == K_INT || k == K_FLOAT || k == K_NUMBER)) {
        char buf[DYN_AV_NUM_MAX];
        size_t n = s_number_arg(L, 2, buf, "dynamo.set");
        lua_pushlstring(L, buf, n);
        return 1;
    }
    if (kind[0] == 'B' && k == K_BINARY) {
        codec_binary_bytes(L, 2);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int s_tag(lua_State *L, int uv) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(uv));
    lua_setmetatable(L, 1);
    return 1;
}

static int l_list(lua_State *L) { return s_tag(L, UV_MT_LIST); }
static int l_map(lua_State *L) { return s_tag(L, UV_MT_MAP); }

static int s_wrap(lua_State *L, int uv) {
    luaL_checkany(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, lua_upvalueindex(uv));
    lua_setmetatable(L, -2);
    return 1;
}

static int l_as_item(lua_State *L) { return s_wrap(L, UV_MT_ITEM); }
static int l_as_av(lua_State *L) { return s_wrap(L, UV_MT_AV); }

/* core.type_of(v) -> "S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M" or nil. */
static int l_type_of(lua_State *L) {
    struct codec_state *st = codec_shared(L);
    const char *t = NULL;
    luaL_checkany(L, 1);
    switch (codec_kind_of(L, st, 1)) {
    case K_STRING: t = "S"; break;
    case K_INT:
    case K_FLOAT:
    case K_NUMBER: t = "N"; break;
    case K_BINARY: t = "B"; break;
    case K_BOOL: t = "BOOL"; break;
    case K_NULL: t = "NULL"; break;
    case K_SS: t = "SS"; break;
    case K_NS: t = "NS"; break;
    case K_BS: t = "BS"; break;
    case K_LIST: t = "L"; break;
    case K_MAP: t = "M"; break;
    case K_TABLE: t = lua_rawlen(L, 1) > 0 ? "L" : "M"; break;
    default: break;
    }
    if (t) lua_pushstring(L, t);
    else lua_pushnil(L);
    return 1;
}

/* ---- number metamethods ---------------------------------------------- */

/*
 * An operand of a number comparison: canonical text, or for Lua floats
 * beyond DynamoDB's range a bucket that orders them around every text.
 */
struct s_operand {
    char text[DYN_AV_NUM_MAX];
    size_t len;
    int bucket; /* -3 huge negative, -1 tiny negative, 0 text, 1 tiny positive, 3 huge positive */
    int nan;
};

static void s_operand(lua_State *L, int idx, struct s_operand *o) {
    struct codec_state *st = codec_shared(L);
    enum dyn_av_num_err why;
    o->bucket = 0;
    o->nan = 0;
    switch (codec_kind_of(L, st, idx)) {
    case K_NUMBER:
        o->len = codec_num_at(L, idx)->len;
        memcpy(o->text, codec_num_at(L, idx)->text, o->len + 1);
        return;
    case K_INT: o->len = dyn_av_format_int((int64_t)lua_tointeger(L, idx), o->text); return;
    case K_FLOAT: {
        lua_Number d = lua_tonumber(L, idx);
        if (isnan(d)) {
            o->nan = 1;
            return;
        }
        if (dyn_av_number_from_double(d, o->text, &o->len, &why) == DYN_OK) return;
        o->bucket = (why == DYN_AV_NUM_TOO_SMALL ? 1 : 3) * (d < 0 ? -1 : 1);
        return;
    }
    default: luaL_error(L, "attempt to compare %s with dynamo.number", luaL_typename(L, idx));
    }
}

/* The bucket of a text operand: -2 negative, 0 zero, 2 positive. */
static int s_text_bucket(const struct s_operand *o) {
    if (o->bucket) return o->bucket;
    if (o->text[0] == '-') return -2;
    return o->text[0] == '0' && o->len == 1 ? 0 : 2;
}

/* Exact comparison; *unordered set when NaN is involved. */
static int s_compare(lua_State *L, int *unordered) {
    struct s_operand a, b;
    int ba, bb;
    s_operand(L, 1, &a);
    s_operand(L, 2, &b);
    *unordered = a.nan || b.nan;
    if (*unordered) return 0;
    ba = s_text_bucket(&a);
    bb = s_text_bucket(&b);
    if (ba != bb || a.bucket || b.bucket) return ba < bb ? -1 : ba > bb;
    return dyn_av_number_cmp(dyn_slice_make(a.text, a.len), dyn_slice_make(b.text, b.len));
}

static int l_num_lt(lua_State *L) {
    int un, c = s_compare(L, &un);
    lua_pushboolean(L, !un && c < 0);
    return 1;
}

static int l_num_le(lua_State *L) {
    int un, c = s_compare(L, &un);
    lua_pushboolean(L, !un && c <= 0);
    return 1;
}

static int l_num_eq(lua_State *L) {
    struct codec_state *st = codec_shared(L);
    int same = codec_kind_of(L, st, 1) == K_NUMBER && codec_kind_of(L, st, 2) == K_NUMBER &&
               codec_num_at(L, 1)->len == codec_num_at(L, 2)->len &&
               memcmp(codec_num_at(L, 1)->text, codec_num_at(L, 2)->text, codec_num_at(L, 1)->len) == 0;
    lua_pushboolean(L, same);
    return 1;
}

static int l_num_tostring(lua_State *L) {
    const struct codec_num *n = luaL_checkudata(L, 1, "dynamo.number");
    lua_pushlstring(L, n->text, n->len);
    return 1;
}

static int l_num_concat(lua_State *L) {
    struct codec_state *st = codec_shared(L);
    int i;
    for (i = 1; i <= 2; i++) {
        if (codec_kind_of(L, st, i) == K_NUMBER) lua_pushlstring(L, codec_num_at(L, i)->text, codec_num_at(L, i)->len);
        else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) lua_pushvalue(L, i);
        else luaL_tolstring(L, i, NULL);
    }
    lua_concat(L, 2);
    return 1;
}

/* n:tonumber() -> integer when integral in int64 range, else nearest float. */
static int l_num_tonumber(lua_State *L) {
    const struct codec_num *n = luaL_checkudata(L, 1, "dynamo.number");
    int64_t iv;
    double dv;
    dyn_slice s = dyn_slice_make(n->text, n->len);
    switch (dyn_av_number_classify(s, &iv, &dv)) {
    case DYN_AV_INT: lua_pushinteger(L, (lua_Integer)iv); break;
    case DYN_AV_FLOAT: lua_pushnumber(L, (lua_Number)dv); break;
    default:
        dyn_av_parse_double(s, NULL, &dv); /* canonical text is short: no allocation */
        lua_pushnumber(L, (lua_Number)dv);
        break;
    }
    return 1;
}

static int l_num_unm(lua_State *L) {
    const struct codec_num *n = luaL_checkudata(L, 1, "dynamo.number");
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    if (n->len == 1 && n->text[0] == '0') {
        lua_settop(L, 1);
        return 1;
    }
    if (n->text[0] == '-') {
        len = n->len - 1u;
        memcpy(buf, n->text + 1, len);
    } else {
        buf[0] = '-';
        memcpy(buf + 1, n->text, n->len);
        len = n->len + 1u;
    }
    codec_push_number(L, buf, len);
    return 1;
}

/* ---- binary metamethods ---------------------------------------------- */

/* b:bytes() and tostring(b): the raw bytes. */
static int l_bin_bytes(lua_State *L) {
    luaL_checkudata(L, 1, "dynamo.binary");
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int l_bin_len(lua_State *L) {
    luaL_checkudata(L, 1, "dynamo.binary");
    lua_getiuservalue(L, 1, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

static int l_bin_eq(lua_State *L) {
    struct codec_state *st = codec_shared(L);
    int same = 0;
    if (codec_kind_of(L, st, 1) == K_BINARY && codec_kind_of(L, st, 2) == K_BINARY) {
        lua_getiuservalue(L, 1, 1);
        lua_getiuservalue(L, 2, 1);
        same = lua_rawequal(L, -1, -2);
    }
    lua_pushboolean(L, same);
    return 1;
}

static int l_null_tostring(lua_State *L) {
    lua_pushliteral(L, "dynamo.NULL");
    return 1;
}

/* ---- registration ----------------------------------------------------- */

static const luaL_Reg s_funcs[] = {
    {"number", l_number}, {"number_text", l_number_text}, {"binary", l_binary}, {"set", l_set},
    {"set_key", l_set_key}, {"list", l_list}, {"map", l_map}, {"as_item", l_as_item},
    {"as_av", l_as_av}, {"type_of", l_type_of}, {NULL, NULL},
};

static const luaL_Reg s_number_meta[] = {
    {"__tostring", l_num_tostring},
    {"__eq", l_num_eq},
    {"__lt", l_num_lt},
    {"__le", l_num_le},
    {"__concat", l_num_concat},
    {"__unm", l_num_unm},
    {NULL, NULL},
};
static const luaL_Reg s_number_methods[] = {{"tonumber", l_num_tonumber}, {NULL, NULL}};

static const luaL_Reg s_binary_meta[] = {
    {"__tostring", l_bin_bytes},
    {"__len", l_bin_len},
    {"__eq", l_bin_eq},
    {NULL, NULL},
};
static const luaL_Reg s_binary_methods[] = {{"bytes", l_bin_bytes}, {"len", l_bin_len}, {NULL, NULL}};

/*
 * Adds funcs to the __index table of the metatable at mt, creating it when
 * absent (opening the module again keeps methods added from Lua).
 */
static void s_methods(lua_State *L, int mt, const luaL_Reg *funcs, int base) {
    if (lua_getfield(L, mt, "__index") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, mt, "__index");
    }
    if (funcs) codec_setfuncs(L, lua_gettop(L), funcs, base);
    lua_pop(L, 1);
}

/* The metatables' names, in upvalue order from UV_MT_NUMBER. */
static const char *const s_names[] = {"dynamo.number", "dynamo.binary", "dynamo.set",     "dynamo.set_SS",
                                      "dynamo.set_NS", "dynamo.set_BS", "dynamo.list",    "dynamo.map",
                                      "dynamo.as_item", "dynamo.as_av"};
#define NMT ((int)(sizeof s_names / sizeof s_names[0]))

void codec_push_types(lua_State *L) {
    int i;
    /* One NULL per Lua state, even when the module is opened again. */
    if (lua_getfield(L, LUA_REGISTRYINDEX, "dynamo.NULL.value") != LUA_TUSERDATA) { /* UV_NULL */
        lua_pop(L, 1);
        lua_newuserdatauv(L, 0, 0);
        luaL_newmetatable(L, "dynamo.NULL");
        lua_pushcfunction(L, l_null_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "dynamo.NULL");
        lua_setfield(L, -2, "__metatable"); /* a sentinel: keep it sealed */
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "dynamo.NULL.value");
    }
    for (i = 0; i < NMT; i++) luaL_newmetatable(L, s_names[i]); /* UV_MT_NUMBER .. UV_MT_AV */
}

void codec_open_values(lua_State *L, int mod, int base) {
    int i;
    codec_setfuncs(L, mod, s_funcs, base);
    codec_setfuncs(L, base + UV_MT_NUMBER - 1, s_number_meta, base);
    s_methods(L, base + UV_MT_NUMBER - 1, s_number_methods, base);
    codec_setfuncs(L, base + UV_MT_BINARY - 1, s_binary_meta, base);
    s_methods(L, base + UV_MT_BINARY - 1, s_binary_methods, base);
    /* The four set metatables share one method table, filled by dynamo.types. */
    s_methods(L, base + UV_MT_SET - 1, NULL, base);
    lua_getfield(L, base + UV_MT_SET - 1, "__index");
    for (i = UV_MT_SS; i <= UV_MT_BS; i++) {
        lua_pushvalue(L, -1);
        lua_setfield(L, base + i - 1, "__index");
    }
    lua_pop(L, 1);

    lua_pushvalue(L, base + UV_NULL - 1);
    lua_setfield(L, mod, "NULL");
    /* The metatables, for dynamo.types to add methods to. */
    lua_createtable(L, 0, NMT);
    for (i = 0; i < NMT; i++) {
        lua_pushvalue(L, base + UV_MT_NUMBER - 1 + i);
        lua_setfield(L, -2, s_names[i] + 7); /* without "dynamo." */
    }
    lua_setfield(L, mod, "_metatables");
}
