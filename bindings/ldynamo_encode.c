/*
 * dynamo.core: the encoder. Walks Lua values and writes DynamoDB
 * AttributeValue JSON (map keys in byte order, numbers in DynamoDB's
 * canonical text) or plain JSON; marshal gives the AV form as Lua tables.
 *
 *   encode_item(tbl [, root])   -> AV map JSON, keys in byte order
 *   encode_av(v [, root])       -> one AttributeValue as JSON
 *   json_encode(v [, root])     -> plain JSON; as_item(t) / as_av(v) embed AVs
 *   marshal(v [, root]) / marshal_value(v [, root]) -> AV form as Lua tables
 *
 * Errors name the path of the bad value: "<root><path>: <what>", root
 * "item" for encode_item and "value" elsewhere. codec_enc_item and
 * codec_enc_av also serve the batch helpers (ldynamo_records.c).
 */
#include <math.h>
#include <stdlib.h>

#include "ldynamo_codec.h"

/* Slots of the anchor table (the state's user value). */
#define ANCHOR_KEYS 1                        /* key cache: 1 .. KEY_CACHE */
#define ANCHOR_PERM (ANCHOR_KEYS + KEY_CACHE) /* perm keys: level * PERM_MAX + i */

/* ---- output ------------------------------------------------------------ */

/* Writes a string value as JSON; raises on invalid UTF-8. */
void codec_put_string(struct codec_walk *w, const char *s, size_t n) {
    int rc = dyn_json_write_string(w->out, dyn_slice_make(s, n));
    if (rc == DYN_ENOMEM) codec_oom(w);
    if (rc != DYN_OK) {
        size_t bad = 0;
        dyn_json_utf8_valid(dyn_slice_make(s, n), &bad);
        codec_fail(w, "string is not valid UTF-8 (byte %d); use dynamo.binary for raw bytes", (int)bad + 1);
    }
}

/* Canonical N text of a Lua number at idx (integer or float); raises. */
static size_t s_lua_number_text(struct codec_walk *w, int idx, char *buf) {
    size_t len;
    enum dyn_av_num_err why;
    lua_Number d;
    if (lua_isinteger(w->L, idx)) return dyn_av_format_int((int64_t)lua_tointeger(w->L, idx), buf);
    d = lua_tonumber(w->L, idx);
    if (dyn_av_number_from_double(d, buf, &len, &why) == DYN_OK) return len;
    if (why == DYN_AV_NUM_NOT_FINITE)
        codec_fail(w, "%s cannot be stored in DynamoDB", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
    codec_fail(w, "%s", codec_num_err_text(why));
    return 0;
}

static void s_put_base64(struct codec_walk *w, dyn_slice bytes) {
    codec_putc(w, '"');
    if (dyn_base64_encode(bytes, w->out) != DYN_OK) codec_oom(w);
    codec_putc(w, '"');
}

/* ---- table shape ------------------------------------------------------ */

/*
 * Checks that the table at idx holds exactly the keys 1..n (n = its border)
 * and returns n; raises with the reason when it does not.
 */
lua_Integer codec_check_sequence(struct codec_walk *w, int idx, lua_Integer n) {
    lua_State *L = w->L;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k < 1 || k > n) codec_fail(w, "sparse array or integer key in a map (key %I)", (LUAI_UACINT)k);
            count++;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            codec_fail(w, "table mixes sequence and string keys");
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            codec_fail(w, "table key %f is not a sequence index nor a string", (LUAI_UACNUMBER)lua_tonumber(L, -1));
        } else {
            codec_fail(w, "table key of type %s (map keys must be strings)", luaL_typename(L, -1));
        }
    }
    if (count != n) {
        lua_Integer i;
        for (i = 1; i <= n; i++) {
            int t = lua_rawgeti(L, idx, i);
            lua_pop(L, 1);
            if (t == LUA_TNIL) break;
        }
        codec_fail(w, "sparse array (no value at [%I])", (LUAI_UACINT)i);
    }
    return n;
}

/* Raises for the non-string key at the top - 1 of the stack. */
static void s_bad_key(struct codec_walk *w) {
    lua_State *L = w->L;
    if (lua_isinteger(L, -2))
        codec_fail(w, "sparse array or integer key in a map (key %I)", (LUAI_UACINT)lua_tointeger(L, -2));
    if (lua_type(L, -2) == LUA_TNUMBER)
        codec_fail(w, "table key %f is not a sequence index nor a string", (LUAI_UACNUMBER)lua_tonumber(L, -2));
    codec_fail(w, "table key of type %s (map keys must be strings)", luaL_typename(L, -2));
}

/* Byte order of keys; the first byte settles most comparisons. */
static inline int s_entry_cmp(const struct codec_entry *a, const struct codec_entry *b) {
    size_t n;
    int c;
    if (a->len && b->len && a->key[0] != b->key[0]) return (unsigned char)a->key[0] < (unsigned char)b->key[0] ? -1 : 1;
    n = a->len < b->len ? a->len : b->len;
    c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int s_entry_qcmp(const void *a, const void *b) { return s_entry_cmp(a, b); }

static void s_sort_entries(struct codec_entry *e, size_t n) {
    size_t i, j;
    if (n > 24) {
        qsort(e, n, sizeof *e, s_entry_qcmp);
        return;
    }
    /* Items have a handful of attributes: insertion sort wins there. */
    for (i = 1; i < n; i++) {
        struct codec_entry t = e[i];
        for (j = i; j > 0 && s_entry_cmp(&e[j - 1], &t) > 0; j--) e[j] = e[j - 1];
        e[j] = t;
    }
}

/* Anchors the string at idx in slot `slot` of the state's anchor table. */
static void s_anchor(struct codec_walk *w, int idx, int slot) {
    lua_State *L = w->L;
    lua_getiuservalue(L, w->st_idx, 1);
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, slot);
    lua_pop(L, 1);
}

/* Writes the map key (a string at stack index kidx) and its ':', checking
 * UTF-8 (the path names the map). */
static void s_put_key(struct codec_walk *w, int kidx, const char *k, size_t n) {
    unsigned slot = (unsigned)(((uintptr_t)k >> 4) % KEY_CACHE);
    struct codec_keyc *c = &w->st->keys[slot];
    size_t at = w->out->len;
    int rc;
    /* Items of one table repeat their attribute names: reuse the text. */
    if (c->ptr == k && c->len == n) {
        /* A fixed-size copy (the slot is that big) beats a variable one. */
        memcpy(codec_room(w, sizeof c->esc), c->esc, sizeof c->esc);
        w->out->len += c->elen;
        return;
    }
    rc = dyn_json_write_string(w->out, dyn_slice_make(k, n));
    if (rc == DYN_ENOMEM) codec_oom(w);
    if (rc != DYN_OK) {
        size_t bad = 0;
        dyn_json_utf8_valid(dyn_slice_make(k, n), &bad);
        codec_fail(w, "map key is not valid UTF-8 (byte %d)", (int)bad + 1);
    }
    codec_putc(w, ':');
    if (n <= KEY_RAW && w->out->len - at <= sizeof c->esc) {
        s_anchor(w, kidx, ANCHOR_KEYS + (int)slot);
        c->ptr = k;
        c->len = (unsigned char)n;
        c->elen = (unsigned char)(w->out->len - at);
        memcpy(c->esc, w->out->ptr + at, c->elen);
    }
}

/*
 * Keeps the order of this map's keys for the next map at this level. The
 * keys are anchored: short strings are interned, so pushing a key's bytes
 * gives back the very string the map holds (long keys are not kept).
 */
static void s_remember_perm(struct codec_walk *w, struct codec_perm *pm, const struct codec_entry *e, size_t n,
                            const unsigned char *order, int level) {
    lua_State *L = w->L;
    size_t i;
    int base = ANCHOR_PERM + (level < HINT_LEVELS ? level : HINT_LEVELS - 1) * PERM_MAX;
    pm->n = 0;
    lua_getiuservalue(L, w->st_idx, 1);
    for (i = 0; i < n; i++) {
        lua_pushlstring(L, e[i].key, e[i].len);
        if (lua_tostring(L, -1) != e[i].key) {
            lua_pop(L, 2);
            return;
        }
        lua_rawseti(L, -2, base + (int)i);
        pm->keys[i] = e[i].key;
    }
    lua_pop(L, 1);
    memcpy(pm->order, order, n);
    pm->n = n;
}

/*
 * Members [first, first + n) were written in traversal order from `from`
 * (every one but the first with its leading comma). Rewrites them in key
 * order: the same bytes, moved once through the scratch buffer.
 */
static void s_reorder(struct codec_walk *w, size_t first, size_t n, size_t from, int level) {
    struct codec_state *st = w->st;
    const struct codec_entry *e = st->entries + first;
    struct dyn_buf *o = w->out;
    struct codec_perm *pm = &st->perm[level < HINT_LEVELS ? level : HINT_LEVELS - 1];
    unsigned char local[PERM_MAX];
    unsigned char *ord = local;
    size_t i, j, size = o->len - from, pos = from;
    if (n > PERM_MAX) {
        /* Big maps: sort the entries themselves. */
        s_sort_entries(st->entries + first, n);
        ord = NULL;
    } else {
        int ok = pm->n == n;
        /* The same (anchored, so unique) keys in the same traversal order:
           the same permutation. */
        for (i = 0; ok && i < n; i++) ok = pm->keys[i] == e[i].key;
        if (ok) {
            ord = pm->order;
        } else {
            for (i = 0; i < n; i++) { /* insertion sort of positions */
                unsigned char t = (unsigned char)i;
                for (j = i; j > 0 && s_entry_cmp(&e[local[j - 1]], &e[t]) > 0; j--) local[j] = local[j - 1];
                local[j] = t;
            }
            s_remember_perm(w, pm, e, n, local, level);
        }
        for (i = 0; i < n && ord[i] == i; i++) {
        }
        if (i == n) return; /* traversal order is key order */
    }
    dyn_buf_reset(&st->scratch);
    if (dyn_buf_append(&st->scratch, o->ptr + from, size) != DYN_OK) codec_oom(w);
    for (i = 0; i < n; i++) {
        const struct codec_entry *x = ord ? &e[ord[i]] : &e[i];
        const char *seg = st->scratch.ptr + (x->start - from);
        size_t len = x->end - x->start;
        if (x->start != from) { /* all but the first written have a comma */
            seg++;
            len--;
        }
        if (i) o->ptr[pos++] = ',';
        memcpy(o->ptr + pos, seg, len);
        pos += len;
    }
}

/* ---- walkers ---------------------------------------------------------- */

static void s_enc_json(struct codec_walk *w, int idx, int level);

static inline void s_enc_value(struct codec_walk *w, int idx, int level, int json) {
    if (json) s_enc_json(w, idx, level);
    else codec_enc_av(w, idx, level);
}

/* Writes {"k":V,...} for the map at idx, keys in byte order. */
static void s_write_map(struct codec_walk *w, int idx, int level, int json) {
    lua_State *L = w->L;
    struct codec_state *st = w->st;
    size_t first = st->nentries, n = 0, from;
    int vslot;
    if (!lua_checkstack(L, 6)) codec_fail(w, "nesting too deep");
    codec_putc(w, '{');
    from = w->out->len;
    lua_pushnil(L);
    vslot = lua_gettop(L) + 1; /* lua_next leaves the key below the value */
    while (lua_next(L, idx)) {
        struct codec_entry *e;
        const char *k;
        size_t kn;
        if (lua_type(L, -2) != LUA_TSTRING) s_bad_key(w);
        if (first + n == st->capentries) {
            size_t ncap = st->capentries ? st->capentries * 2 : 64;
            void *p = dyn_mem_realloc(&st->alloc, st->entries, st->capentries * sizeof *e, ncap * sizeof *e);
            if (!p) codec_oom(w);
            st->entries = p;
            st->capentries = ncap;
        }
        k = lua_tolstring(L, -2, &kn); /* anchored by the table */
        e = &st->entries[first + n];
        e->key = k;
        e->len = kn;
        e->start = w->out->len;
        st->nentries = first + n + 1; /* nested maps stack theirs above */
        if (n) codec_putc(w, ',');
        s_put_key(w, vslot - 1, k, kn);
        codec_push_frame_key(w, k, kn);
        s_enc_value(w, vslot, level, json);
        w->nframes--;
        st->entries[first + n].end = w->out->len; /* the array may have moved */
        n++;
        lua_pop(L, 1);
    }
    if (n > 1) s_reorder(w, first, n, from, level);
    codec_putc(w, '}');
    st->nentries = first;
}

/* Writes [V,...] for the sequence 1..n at idx (checked to be one). */
static void s_write_list(struct codec_walk *w, int idx, lua_Integer n, int level, int json) {
    lua_State *L = w->L;
    size_t mark = w->out->len;
    int frames = w->nframes, vslot;
    lua_Integer i = 0;
    if (!lua_checkstack(L, 6)) codec_fail(w, "nesting too deep");
    codec_putc(w, '[');
    /* One pass when traversal yields 1, 2, ... n, as it does for tables
       whose elements all sit in the array part. */
    lua_pushnil(L);
    vslot = lua_gettop(L) + 1;
    while (lua_next(L, idx)) {
        if (i >= n || !lua_isinteger(L, -2) || lua_tointeger(L, -2) != i + 1) {
            lua_pop(L, 2);
            goto slow;
        }
        if (i++) codec_putc(w, ',');
        codec_push_frame_index(w, i);
        s_enc_value(w, vslot, level, json);
        w->nframes--;
        lua_pop(L, 1);
    }
    if (i != n) goto slow;
    codec_putc(w, ']');
    return;
slow:
    w->nframes = frames;
    dyn_buf_truncate(w->out, mark);
    codec_check_sequence(w, idx, n); /* raises unless 1..n are the only keys */
    codec_putc(w, '[');
    for (i = 1; i <= n; i++) {
        if (i > 1) codec_putc(w, ',');
        lua_rawgeti(L, idx, i);
        codec_push_frame_index(w, i);
        s_enc_value(w, lua_gettop(L), level, json);
        w->nframes--;
        lua_pop(L, 1);
    }
    codec_putc(w, ']');
}

/* Lists and maps: tagged, or told apart by their keys. */
static void s_write_table(struct codec_walk *w, int idx, enum codec_kind k, int level, int json) {
    lua_Integer n;
    int max = json ? JSON_MAX_DEPTH : AV_MAX_DEPTH;
    if (level >= max) codec_fail(w, "nesting deeper than %d levels", max);
    n = k == K_MAP ? 0 : (lua_Integer)lua_rawlen(w->L, idx);
    if (k == K_LIST || n > 0) {
        if (!json) CODEC_PUT_LIT(w, "{\"L\":");
        s_write_list(w, idx, n, level + 1, json);
    } else {
        if (!json) CODEC_PUT_LIT(w, "{\"M\":");
        s_write_map(w, idx, level + 1, json);
    }
    if (!json) codec_putc(w, '}');
}

/* Writes the elements of the set at idx: "SS":[...] (or a plain array). */
static void s_write_set(struct codec_walk *w, int idx, enum codec_kind k, int json) {
    lua_State *L = w->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
    char buf[DYN_AV_NUM_MAX];
    if (!json) {
        if (n == 0 || k == K_SET) codec_fail(w, "empty set cannot be stored in DynamoDB");
        CODEC_PUT_LIT(w, "{\"");
        codec_putc(w, k == K_SS ? 'S' : k == K_NS ? 'N' : 'B');
        CODEC_PUT_LIT(w, "S\":");
    }
    codec_putc(w, '[');
    for (i = 1; i <= n; i++) {
        int top;
        enum codec_kind ek;
        lua_rawgeti(L, idx, i);
        top = lua_gettop(L);
        ek = codec_kind_of(L, w->st, top);
        if (i > 1) codec_putc(w, ',');
        codec_push_frame_index(w, i);
        if (k == K_SS && ek == K_STRING) {
            size_t len;
            const char *s = lua_tolstring(L, top, &len);
            codec_put_string(w, s, len);
        } else if (k == K_NS && (ek == K_INT || ek == K_FLOAT || ek == K_NUMBER)) {
            size_t len;
            const char *text = buf;
            if (ek == K_NUMBER) {
                text = codec_num_at(L, top)->text;
                len = codec_num_at(L, top)->len;
            } else {
                len = s_lua_number_text(w, top, buf);
            }
            if (!json) codec_putc(w, '"');
            codec_put(w, text, len);
            if (!json) codec_putc(w, '"');
        } else if (k == K_BS && ek == K_BINARY) {
            s_put_base64(w, codec_binary_bytes(L, top));
        } else {
            codec_fail(w, "%s element in a %s set", luaL_typename(L, top),
                   k == K_SS ? "string" : k == K_NS ? "number" : k == K_BS ? "binary" : "typeless");
        }
        w->nframes--;
        lua_settop(L, top - 1);
    }
    codec_putc(w, ']');
    if (!json) codec_putc(w, '}');
}

static void s_bad_value(struct codec_walk *w, int idx) {
    int t = lua_type(w->L, idx);
    if (t == LUA_TNIL || t == LUA_TNONE) codec_fail(w, "nil cannot be stored in DynamoDB");
    codec_fail(w, "a %s cannot be stored in DynamoDB", luaL_typename(w->L, idx));
}

void codec_enc_av(struct codec_walk *w, int idx, int level) {
    lua_State *L = w->L;
    enum codec_kind k;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        CODEC_PUT_LIT(w, "{\"S\":");
        codec_put_string(w, s, n);
        codec_putc(w, '}');
        return;
    }
    case LUA_TNUMBER: {
        int isint;
        lua_Integer i = lua_tointegerx(L, idx, &isint); /* also integral floats: same text */
        CODEC_PUT_LIT(w, "{\"N\":\"");
        if (isint) {
            codec_put_int(w, i);
        } else {
            char buf[DYN_AV_NUM_MAX];
            size_t n = s_lua_number_text(w, idx, buf);
            codec_put(w, buf, n);
        }
        CODEC_PUT_LIT(w, "\"}");
        return;
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) CODEC_PUT_LIT(w, "{\"BOOL\":true}");
        else CODEC_PUT_LIT(w, "{\"BOOL\":false}");
        return;
    default: break;
    }
    k = codec_kind_of(L, w->st, idx);
    switch (k) {
    case K_NUMBER: {
        const struct codec_num *num = codec_num_at(L, idx);
        CODEC_PUT_LIT(w, "{\"N\":\"");
        codec_put(w, num->text, num->len);
        CODEC_PUT_LIT(w, "\"}");
        return;
    }
    case K_NULL: CODEC_PUT_LIT(w, "{\"NULL\":true}"); return;
    case K_BINARY:
        CODEC_PUT_LIT(w, "{\"B\":");
        s_put_base64(w, codec_binary_bytes(L, idx));
        lua_pop(L, 1);
        codec_putc(w, '}');
        return;
    case K_SET:
    case K_SS:
    case K_NS:
    case K_BS: s_write_set(w, idx, k, 0); return;
    case K_LIST:
    case K_MAP:
    case K_TABLE: s_write_table(w, idx, k, level, 0); return;
    case K_ITEM:
    case K_AV:
        /* A wrapper inside an AV: the wrapped value is what is meant. */
        lua_rawgeti(L, idx, 1);
        codec_enc_av(w, lua_gettop(L), level);
        lua_pop(L, 1);
        return;
    default: s_bad_value(w, idx);
    }
}

void codec_enc_item(struct codec_walk *w, int idx) {
    lua_State *L = w->L;
    enum codec_kind k = codec_kind_of(L, w->st, idx);
    if (k == K_ITEM || k == K_AV) {
        lua_rawgeti(L, idx, 1);
        codec_enc_item(w, lua_gettop(L));
        lua_pop(L, 1);
        return;
    }
    if (k != K_TABLE && k != K_MAP)
        codec_fail(w, "an item must be a table with string keys, got %s", k == K_NIL ? "nil" : luaL_typename(L, idx));
    if (k == K_TABLE && lua_rawlen(L, idx) > 0) {
        codec_check_sequence(w, idx, (lua_Integer)lua_rawlen(L, idx));
        codec_fail(w, "an item must be a map (table with string keys), got a sequence");
    }
    s_write_map(w, idx, 0, 0);
}

/* Writes a Lua float as a JSON number: shortest digits, plain when it can. */
static void s_put_json_float(struct codec_walk *w, lua_Number d) {
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    enum dyn_av_num_err why;
    int rc = dyn_av_number_from_double(d, buf, &len, &why);
    if (rc == DYN_OK) {
        codec_put(w, buf, len);
    } else if (why == DYN_AV_NUM_NOT_FINITE) {
        codec_fail(w, "%s cannot be written as JSON", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
    } else {
        /* Beyond DynamoDB's range: JSON still takes it, in exponent form. */
        char dig[17];
        int q, n = dyn_av_double_digits(d, dig, &q);
        char *p = codec_room(w, 40);
        size_t o = 0;
        if (d < 0) p[o++] = '-';
        p[o++] = dig[0];
        if (n > 1) {
            p[o++] = '.';
            memcpy(p + o, dig + 1, (size_t)n - 1);
            o += (size_t)n - 1;
        }
        o += (size_t)snprintf(p + o, 16, "e%d", q + n - 1);
        w->out->len += o;
    }
}

/* Writes the Lua value at idx as plain JSON. */
static void s_enc_json(struct codec_walk *w, int idx, int level) {
    lua_State *L = w->L;
    enum codec_kind k;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        codec_put_string(w, s, n);
        return;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) codec_put_int(w, lua_tointeger(L, idx));
        else s_put_json_float(w, lua_tonumber(L, idx));
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) CODEC_PUT_LIT(w, "true");
        else CODEC_PUT_LIT(w, "false");
        return;
    default: break;
    }
    k = codec_kind_of(L, w->st, idx);
    switch (k) {
    case K_NUMBER: codec_put(w, codec_num_at(L, idx)->text, codec_num_at(L, idx)->len); return;
    case K_NULL: CODEC_PUT_LIT(w, "null"); return;
    case K_BINARY:
        s_put_base64(w, codec_binary_bytes(L, idx));
        lua_pop(L, 1);
        return;
    case K_SET:
    case K_SS:
    case K_NS:
    case K_BS: s_write_set(w, idx, k, 1); return;
    case K_ITEM:
        lua_rawgeti(L, idx, 1);
        codec_enc_item(w, lua_gettop(L));
        lua_pop(L, 1);
        return;
    case K_AV:
        lua_rawgeti(L, idx, 1);
        codec_enc_av(w, lua_gettop(L), 0);
        lua_pop(L, 1);
        return;
    case K_LIST:
    case K_MAP:
    case K_TABLE: s_write_table(w, idx, k, level, 1); return;
    default: s_bad_value(w, idx);
    }
}

/* ---- module functions ------------------------------------------------- */

/* The walkers the encode entry points share: each writes argument 1. */
static void s_walk_item(struct codec_walk *w) { codec_enc_item(w, 1); }
static void s_walk_av(struct codec_walk *w) { codec_enc_av(w, 1, 0); }
static void s_walk_json(struct codec_walk *w) { s_enc_json(w, 1, 0); }

/* Runs `walk` over argument 1 with the root name from argument 2 (or
 * `default_root`) and returns the text written. */
static int s_encode_entry(lua_State *L, const char *default_root, void (*walk)(struct codec_walk *)) {
    struct codec_state *st;
    int st_idx;
    const char *root = luaL_optstring(L, 2, default_root);
    struct codec_walk w;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = codec_acquire(L, &st_idx);
    codec_walk_init(&w, L, st, st_idx, root);
    walk(&w);
    return codec_finish_out(L, w.st);
}

/* core.encode_item(tbl [, root]) -> AV map JSON. */
static int l_encode_item(lua_State *L) { return s_encode_entry(L, "item", s_walk_item); }

/* core.encode_av(value [, root]) -> one AttributeValue as JSON. */
static int l_encode_av(lua_State *L) { return s_encode_entry(L, "value", s_walk_av); }

/* core.json_encode(value [, root]) -> plain JSON. */
static int l_json_encode(lua_State *L) { return s_encode_entry(L, "value", s_walk_json); }

/* Is the value at idx map-shaped (a tagged map, {} or string keys)? */
static int s_is_mapish(lua_State *L, const struct codec_state *st, int idx) {
    enum codec_kind k = codec_kind_of(L, st, idx);
    if (k == K_MAP) return 1;
    return k == K_TABLE && lua_rawlen(L, idx) == 0;
}

/*
 * core.marshal(value [, root]) -> AV form as Lua tables: an item (name -> AV)
 * for a map-shaped table, else one AV. Built by writing the AV JSON and
 * reading it back plainly, so it matches the wire form exactly.
 */
static int s_marshal(lua_State *L, int force_value) {
    int st_idx;
    const char *root = luaL_optstring(L, 2, "value");
    struct codec_walk w;
    struct codec_read d;
    struct codec_state *st;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = codec_acquire(L, &st_idx);
    codec_walk_init(&w, L, st, st_idx, root);
    if (!force_value && s_is_mapish(L, st, 1)) codec_enc_item(&w, 1);
    else codec_enc_av(&w, 1, 0);
    codec_read_init(&d, L, st, dyn_buf_slice(&st->out));
    codec_dec_plain(&d, M_PLAIN);
    codec_release(st);
    return 1;
}

static int l_marshal(lua_State *L) { return s_marshal(L, 0); }
static int l_marshal_value(lua_State *L) { return s_marshal(L, 1); }

static const luaL_Reg s_funcs[] = {
    {"encode_item", l_encode_item}, {"encode_av", l_encode_av},         {"json_encode", l_json_encode},
    {"marshal", l_marshal},         {"marshal_value", l_marshal_value}, {NULL, NULL},
};

void codec_open_encode(lua_State *L, int mod, int base) { codec_setfuncs(L, mod, s_funcs, base); }
