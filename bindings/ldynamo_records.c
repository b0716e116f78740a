/*
 * dynamo.core: keys and items for the batch engine (lua/dynamo/DynamoTable.lua).
 * Each call does a whole window of records at once, so a batch costs a few
 * calls from Lua instead of a few per record.
 *
 *   key_id(pkv [, skv])         -> exact identity string of a key (the core's dynamo/key.h layout)
 *   prepare_keys(recs, from, to, pk, sk, pv, sv, ids) -> keys a window of plain records
 *   batch_put_items / batch_add_keys -> items and keys of a window into a core batch
 *                               (ldynamo_batch.c), encoded here
 *   batch_items                 -> the found items out of it, merged with their records
 */
#include "ldynamo_codec.h"

#include "dynamo/batch.h"

/* ---- items and keys as AV maps ----------------------------------------- */

/* Writes "name":AV of values[k] (values: the stack index of an array; top:
 * the stack's height, where it is left). */
static inline void s_put_key_member(struct codec_walk *w, dyn_slice name, int values, lua_Integer k, int top) {
    codec_put_string(w, name.ptr, name.len);
    codec_putc(w, ':');
    lua_rawgeti(w->L, values, k);
    codec_enc_av(w, top + 1, 0);
    lua_settop(w->L, top);
}

/* ---- key identity ------------------------------------------------------ */

/* One part of a key's identity: a type letter and the bytes of the value. */
struct s_key_part {
    char type;
    dyn_slice bytes;
    char num[DYN_AV_NUM_MAX];
};

/*
 * Reads the key value at idx: a string's or binary's bytes, or a number's
 * canonical text (so 1 and 1.0 agree). A binary pushes its bytes' string,
 * which must stay on the stack while the part is used; *pushed counts it.
 * Returns 0 when the value cannot be a key.
 */
static int s_key_part(lua_State *L, const struct codec_state *st, int idx, struct s_key_part *kp, int *pushed) {
    size_t n;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        const char *p = lua_tolstring(L, idx, &n);
        kp->type = 'S';
        kp->bytes = dyn_slice_make(p, n);
        return 1;
    }
    case LUA_TNUMBER: {
        int isint;
        lua_Integer v = lua_tointegerx(L, idx, &isint);
        enum dyn_av_num_err why;
        if (isint) n = dyn_av_format_int((int64_t)v, kp->num);
        else if (dyn_av_number_from_double(lua_tonumber(L, idx), kp->num, &n, &why) != DYN_OK) return 0;
        kp->type = 'N';
        kp->bytes = dyn_slice_make(kp->num, n);
        return 1;
    }
    default: break;
    }
    switch (codec_kind_of(L, st, idx)) {
    case K_NUMBER:
        kp->type = 'N';
        kp->bytes = dyn_slice_make(codec_num_at(L, idx)->text, codec_num_at(L, idx)->len);
        return 1;
    case K_BINARY:
        kp->type = 'B';
        kp->bytes = codec_binary_bytes(L, idx);
        (*pushed)++;
        return 1;
    default: return 0;
    }
}

static char *s_put_part(char *o, const struct s_key_part *kp) {
    *o++ = kp->type;
    if (kp->bytes.len) memcpy(o, kp->bytes.ptr, kp->bytes.len);
    return o + kp->bytes.len;
}

/*
 * Pushes the identity of a key: its one part, or for two the first part's
 * length (4 bytes, big-endian) and then both parts. Returns 0 (pushing
 * nothing) when a value cannot be a key.
 */
static int s_push_key_id(lua_State *L, const struct codec_state *st, int a, int bidx) {
    struct s_key_part ka, kb;
    int pushed = 0;
    size_t total;
    char local[256], *buf, *o;
    luaL_Buffer lb;
    if (!s_key_part(L, st, a, &ka, &pushed) || (bidx && !s_key_part(L, st, bidx, &kb, &pushed))) {
        lua_pop(L, pushed);
        return 0;
    }
    total = 1 + ka.bytes.len + (bidx ? 5 + kb.bytes.len : 0);
    buf = total <= sizeof local ? local : luaL_buffinitsize(L, &lb, total);
    o = buf;
    if (bidx) {
        size_t la = 1 + ka.bytes.len;
        *o++ = (char)(la >> 24);
        *o++ = (char)(la >> 16);
        *o++ = (char)(la >> 8);
        *o++ = (char)la;
    }
    o = s_put_part(o, &ka);
    if (bidx) s_put_part(o, &kb);
    if (buf == local) lua_pushlstring(L, local, total);
    else luaL_pushresultsize(&lb, total);
    if (pushed) {
        lua_replace(L, -1 - pushed);
        lua_pop(L, pushed - 1);
    }
    return 1;
}

/*
 * core.key_id(partition_value [, sort_value]) -> a string that is equal for
 * two keys exactly when DynamoDB sees them as the same key.
 */
static int l_key_id(lua_State *L) {
    int two = !lua_isnoneornil(L, 2);
    lua_settop(L, 2);
    if (!s_push_key_id(L, codec_shared(L), 1, two ? 2 : 0))
        return luaL_error(L, "key_id: a key value must be a string, a finite number or a binary");
    return 1;
}

/* ---- windows of records -------------------------------------------------- */

/*
 * core.prepare_keys(recs, from, to, pk, sk, pv, sv, ids) -> i: for each
 * record recs[from..to] that is a table whose pk (and sk, when given) value is
 * a string, pv[i], sv[i], ids[i] = that value, the sort value, key_id of both.
 * Stops at the first other record and returns its index (to + 1 when none):
 * the caller prepares that one itself (hooks, checks, errors).
 */
static int l_prepare_keys(lua_State *L) {
    const struct codec_state *st = codec_shared(L);
    lua_Integer i = luaL_checkinteger(L, 2), to = luaL_checkinteger(L, 3);
    const char *pk = luaL_checkstring(L, 4);
    const char *sk = lua_isnoneornil(L, 5) ? NULL : luaL_checkstring(L, 5);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 6, LUA_TTABLE);
    luaL_checktype(L, 7, LUA_TTABLE);
    luaL_checktype(L, 8, LUA_TTABLE);
    lua_settop(L, 8);
    for (; i <= to; i++) {
        if (lua_rawgeti(L, 1, i) != LUA_TTABLE) break; /* 9: the record */
        if (lua_getfield(L, 9, pk) != LUA_TSTRING) break; /* 10 */
        if (sk) {
            if (lua_getfield(L, 9, sk) != LUA_TSTRING) break; /* 11 */
        } else {
            lua_pushnil(L); /* 11 */
        }
        if (!s_push_key_id(L, st, 10, sk ? 11 : 0)) break; /* 12 (strings always make one) */
        lua_rawseti(L, 8, i);
        lua_rawseti(L, 7, i);
        lua_rawseti(L, 6, i);
        lua_settop(L, 8);
    }
    lua_pushinteger(L, i);
    return 1;
}

/* ---- the batch engine's codec side (dynamo/batch.h through ldynamo_batch.c) ---- */

/* Raises for a status of dyn_batch_put/delete/get other than DYN_OK and DYN_ERANGE. */
static void s_batch_check(lua_State *L, int rc, lua_Integer k) {
    if (rc == DYN_ENOMEM) luaL_error(L, "not enough memory");
    if (rc < 0) luaL_error(L, "batch: cannot add record %I (the batch already ran)", (LUAI_UACINT)k);
}

/*
 * core.batch_put_items(batch, items, ids, i, j [, suffix]) -> nil | k, size:
 * adds a put of items[k] for k = i..j with identity ids[k]. A table is
 * encoded here as an AV map (suffix as in encode_items), a string is JSON
 * already written. Stops at an item over 400 KB (DynamoDB's count) and
 * returns its position and size, not adding it. Raises as encode_item on a
 * bad value (the caller names the record).
 */
static int l_batch_put_items(lua_State *L) {
    struct dyn_batch *b = ldynamo_check_batch(L, 1);
    struct codec_state *st;
    int st_idx;
    struct codec_walk w;
    lua_Integer i = luaL_checkinteger(L, 4), j = luaL_checkinteger(L, 5), k;
    dyn_slice suffix = ldynamo_optslice(L, 6, "");
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_argcheck(L, suffix.len == 0 || (suffix.ptr[0] == ',' && suffix.ptr[suffix.len - 1] == '}'), 6,
                  "a suffix starts with ',' and ends with '}'");
    lua_settop(L, 6);
    st = codec_acquire(L, &st_idx);
    codec_walk_init(&w, L, st, st_idx, "item");
    for (k = i; k <= j; k++) {
        dyn_slice json, id;
        size_t size = 0;
        int rc;
        dyn_buf_reset(w.out);
        if (lua_rawgeti(L, 2, k) == LUA_TSTRING) { /* 7 */
            json = ldynamo_checkslice(L, 7);
        } else {
            codec_enc_item(&w, 7);
            if (suffix.len) {
                size_t at = --w.out->len;
                if (w.out->ptr[at - 1] == '{') codec_put(&w, suffix.ptr + 1, suffix.len - 1);
                else codec_put(&w, suffix.ptr, suffix.len);
            }
            json = dyn_buf_slice(w.out);
        }
        if (lua_rawgeti(L, 3, k) != LUA_TSTRING) luaL_error(L, "batch_put_items: ids[%I] is not a string", k); /* 8 */
        id = ldynamo_checkslice(L, 8);
        rc = dyn_batch_put(b, id, json, &size);
        if (rc == DYN_ERANGE) {
            codec_release(st);
            lua_pushinteger(L, k);
            lua_pushinteger(L, (lua_Integer)size);
            return 2;
        }
        s_batch_check(L, rc, k);
        lua_settop(L, 6);
    }
    codec_release(st);
    return 0;
}

/*
 * core.batch_add_keys(batch, pk, pvals, sk, svals, ids, i, j): adds the keys
 * k = i..j from parallel arrays of key values (sk and svals nil without a
 * sort key): deletes in a write batch, reads in a read batch. Raises as
 * encode_keys on a bad value.
 */
static int l_batch_add_keys(lua_State *L) {
    struct dyn_batch *b = ldynamo_check_batch(L, 1);
    struct codec_state *st;
    int st_idx, two = !lua_isnoneornil(L, 4), get;
    struct codec_walk w;
    dyn_slice pk = ldynamo_checkslice(L, 2), sk = two ? ldynamo_checkslice(L, 4) : DYN_SLICE_EMPTY;
    lua_Integer i = luaL_checkinteger(L, 7), j = luaL_checkinteger(L, 8), k;
    luaL_checktype(L, 3, LUA_TTABLE);
    if (two) luaL_checktype(L, 5, LUA_TTABLE);
    luaL_checktype(L, 6, LUA_TTABLE);
    lua_settop(L, 8);
    get = dyn_batch_kind(b) == DYN_BATCH_GET;
    st = codec_acquire(L, &st_idx);
    codec_walk_init(&w, L, st, st_idx, "key");
    for (k = i; k <= j; k++) {
        int rc;
        dyn_buf_reset(w.out);
        codec_putc(&w, '{');
        s_put_key_member(&w, pk, 3, k, 8);
        if (two) {
            codec_putc(&w, ',');
            s_put_key_member(&w, sk, 5, k, 8);
        }
        codec_putc(&w, '}');
        if (lua_rawgeti(L, 6, k) != LUA_TSTRING) luaL_error(L, "batch_add_keys: ids[%I] is not a string", k); /* 9 */
        rc = get ? dyn_batch_get(b, ldynamo_checkslice(L, 9), dyn_buf_slice(w.out))
                 : dyn_batch_delete(b, ldynamo_checkslice(L, 9), dyn_buf_slice(w.out));
        s_batch_check(L, rc, k);
        lua_settop(L, 8);
    }
    codec_release(st);
    return 0;
}

/*
 * core.batch_items(batch, recs, out, flags, i, j): the outcome of read slots
 * i..j (1-based, in the order added): a found item is decoded into a native
 * table and, when recs is a table, gets every field of recs[k] it lacks;
 * then out[k], flags[k] = item, true. A slot done without an item gets
 * flags[k] = false; a slot not done is left alone (flags[k] stays nil).
 */
static int l_batch_items(lua_State *L) {
    struct dyn_batch *b = ldynamo_check_batch(L, 1);
    lua_Integer i = luaL_checkinteger(L, 5), j = luaL_checkinteger(L, 6), k;
    int merge = lua_istable(L, 2), item;
    struct codec_state *st;
    int st_idx;
    struct codec_read d;
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 6);
    /* one decoder for every item: member names stay interned in its slots from one item to the next */
    st = codec_acquire(L, &st_idx);
    codec_read_init(&d, L, st, DYN_SLICE_EMPTY);
    item = lua_gettop(L) + 1;
    for (k = i; k <= j; k++) {
        struct dyn_batch_slot_info info;
        if (k < 1 || dyn_batch_slot(b, (size_t)(k - 1), &info) < 0) {
            codec_release(st);
            return luaL_argerror(L, 6, "no such slot");
        }
        if (!info.done) continue;
        if (!info.found) {
            lua_pushboolean(L, 0);
            lua_rawseti(L, 4, k);
            continue;
        }
        dyn_json_reader_init(&d.r, info.item);
        d.depth = 0;
        d.avdepth = 0;
        codec_dec_av_map(&d, 0); /* the item, at `item` */
        codec_read_end(&d);
        if (merge && lua_rawgeti(L, 2, k) == LUA_TTABLE) { /* item + 1: the record */
            lua_pushnil(L);
            while (lua_next(L, item + 1)) { /* key, value */
                lua_pushvalue(L, -2);
                if (lua_rawget(L, item) == LUA_TNIL) {
                    lua_pop(L, 1);
                    lua_pushvalue(L, -2);
                    lua_insert(L, -2);
                    lua_rawset(L, item);
                } else {
                    lua_pop(L, 2);
                }
            }
        }
        lua_settop(L, item);
        lua_rawseti(L, 3, k);
        lua_pushboolean(L, 1);
        lua_rawseti(L, 4, k);
    }
    codec_release(st);
    return 0;
}

static const luaL_Reg s_funcs[] = {
    {"key_id", l_key_id},
    {"prepare_keys", l_prepare_keys},
    {"batch_put_items", l_batch_put_items},
    {"batch_add_keys", l_batch_add_keys},
    {"batch_items", l_batch_items},
    {NULL, NULL},
};

void codec_open_records(lua_State *L, int mod, int base) { codec_setfuncs(L, mod, s_funcs, base); }
