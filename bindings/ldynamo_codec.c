/*
 * dynamo.core: the codec area. Lua values <-> DynamoDB AttributeValue JSON,
 * plain JSON for request and response bodies, and the value types that Lua
 * lacks (NULL, number, binary, set, list and map tags).
 *
 * Every value type is recognised by metatable identity: the metatables (and
 * the NULL userdata) are upvalues of every function here, and the codec
 * state caches their addresses, so identifying a value costs one
 * lua_getmetatable and a pointer compare.
 *
 * Members added to dynamo.core (lua/dynamo/types.lua documents the types):
 *   encode_item(tbl [, root])   -> AV map JSON, keys in byte order
 *   encode_av(v [, root])       -> one AttributeValue as JSON
 *   decode_item(json)           -> native item table
 *   decode_av(json)             -> native value of one AttributeValue
 *   json_encode(v [, root])     -> plain JSON; as_item(t) / as_av(v) embed AVs
 *   json_decode(text [, unmarshal]) -> plain Lua value (see s_member_mode)
 *   marshal(v [, root]) / marshal_value(v [, root]) -> AV form as Lua tables
 *   unmarshal(av_map [, root]) / unmarshal_value(av [, root]) -> native
 *   number, number_text, binary, set, set_key, list, map, as_item, as_av,
 *   type_of, NULL, _metatables
 * For the batch engine and the pager:
 *   encode_items(list, i, j, sep [, suffix]) / encode_keys(pk, pv, sk, sv, i, j [, sep])
 *                               -> many items or keys as AV maps in one string
 *   key_id(pkv [, skv])         -> exact identity string of a key
 *   index_items(items, pk, sk, into) -> into[key_id(...)] = item
 *   prepare_keys(recs, from, to, pk, sk, pv, sv, ids) -> keys a window of plain records
 *   merge_items(recs, ids, found, out, flags, from, to) -> found items merged with their records
 *   page(text), page_next(page), page_fill(page, buf, max), page_result(page)
 *                               -> a Query/Scan response read a few items at a time
 * Encoding errors read "<root><path>: <what>" (root defaults to "item" for
 * encode_item, "value" elsewhere); decoding errors "json: <what> at byte N"
 * (N 1-based).
 *
 * Memory: output and scratch buffers belong to a state userdata (upvalue 1)
 * that is reused across calls, so a Lua error raised mid-walk never leaks.
 * A finalizer may run codec functions while a call is under way (decoding
 * allocates, and allocation runs the GC); the state is then marked busy and
 * the nested call works on a temporary state of its own. (A memory error
 * raised by Lua itself mid-call leaves the shared state marked busy: later
 * calls stay correct, on temporary states, only slower.)
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "dynamo/av.h"
#include "dynamo/json.h"
#include "ldynamo.h"

#include "dynamo/batch.h"

/* Upvalues shared by every function and metamethod of this area. */
enum {
    UV_STATE = 1,
    UV_NULL,
    UV_MT_NUMBER,
    UV_MT_BINARY,
    UV_MT_SET, /* a set whose element type is not known yet (empty) */
    UV_MT_SS,
    UV_MT_NS,
    UV_MT_BS,
    UV_MT_LIST,
    UV_MT_MAP,
    UV_MT_ITEM,
    UV_MT_AV,
    UV_COUNT = UV_MT_AV
};

#define AV_MAX_DEPTH 32    /* DynamoDB's nesting limit for lists and maps */
#define JSON_MAX_DEPTH 128 /* plain JSON written by json_encode */
#define PATH_MAX_FRAMES (JSON_MAX_DEPTH + AV_MAX_DEPTH + 8)
#define OUT_KEEP (1u << 20) /* a larger output buffer is freed after use */

/*
 * A map member already written to the output, waiting to be put in key
 * order: the key's bytes (anchored by the table) and where its text lies.
 */
struct s_entry {
    const char *key;
    size_t len;
    size_t start, end;
};

#define HINT_LEVELS 8
#define ITEMS_HINT_MAX 1024 /* a size hint, not a limit: a bigger array still grows */
#define PERM_MAX 32 /* maps up to this size remember their key order */

#define KEY_CACHE 64 /* slots of the escaped-key cache */
#define KEY_RAW 24    /* longest key it holds */

/*
 * A map key already validated and written as JSON ("key":), found by the
 * address of the key's bytes. The key string is anchored in the state's
 * anchor table while it sits here, so no other string can take its address.
 */
struct s_keyc {
    const char *ptr;
    unsigned char len, elen;
    char esc[KEY_RAW + 8];
};

/* The key order of the last map written at one nesting level. */
struct s_perm {
    size_t n;
    const char *keys[PERM_MAX];    /* the keys in traversal order (anchored) */
    unsigned char order[PERM_MAX]; /* traversal positions, in key order */
};

/* Slots of the anchor table (the state's user value). */
#define ANCHOR_KEYS 1                        /* key cache: 1 .. KEY_CACHE */
#define ANCHOR_PERM (ANCHOR_KEYS + KEY_CACHE) /* perm keys: level * PERM_MAX + i */

struct s_state {
    struct dyn_allocator alloc;
    struct dyn_buf out;     /* encoder output */
    struct dyn_buf scratch; /* unescaped strings, base64, long numbers */
    struct s_entry *entries;
    size_t nentries, capentries;
    int busy;
    /* Members seen in the last map decoded at each depth: tables are made
       that size, since items of one table tend to share a shape. */
    int hint[HINT_LEVELS];
    /* Items in the last array of items (Items, Responses): the next one is
       made that size, so a 100-item response does not regrow its array. */
    int items_hint;
    /* Same-shaped items traverse their keys in the same order: the last
       sorting permutation per level is tried (and checked) first. */
    struct s_perm perm[HINT_LEVELS];
    struct s_keyc keys[KEY_CACHE];
    const void *null_ud, *mt_number, *mt_binary, *mt_set, *mt_ss, *mt_ns, *mt_bs, *mt_list, *mt_map, *mt_item,
        *mt_av;
};

/* A number: canonical text, NUL-terminated. */
struct s_num {
    unsigned short len;
    char text[1];
};

/* One step of the path shown in error messages: a map key or a list index. */
struct s_frame {
    const char *key; /* NULL: index */
    size_t len;
    lua_Integer index;
};

/* What a walk over Lua values carries. */
struct s_walk {
    lua_State *L;
    struct s_state *st;
    int st_idx; /* where the state userdata is (its anchors) */
    struct dyn_buf *out;
    const char *root;
    int nframes;
    struct s_frame path[PATH_MAX_FRAMES];
};

/* ---- state ------------------------------------------------------------ */

static void s_state_release(struct s_state *st) {
    dyn_buf_free(&st->out);
    dyn_buf_free(&st->scratch);
    dyn_mem_free(&st->alloc, st->entries, st->capentries * sizeof *st->entries);
    st->entries = NULL;
    st->nentries = st->capentries = 0;
}

static int l_state_gc(lua_State *L) {
    struct s_state *st = lua_touserdata(L, 1);
    if (st) s_state_release(st);
    return 0;
}

/* Pushes a fresh state userdata (with its __gc) and returns it. */
static struct s_state *s_state_new(lua_State *L) {
    struct s_state *st = lua_newuserdatauv(L, sizeof *st, 1);
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

/*
 * The state for this call: the shared one, or, when a call is already under
 * way (a finalizer re-entered us), a temporary one pushed on the stack.
 */
static struct s_state *s_acquire(lua_State *L, int *idx) {
    struct s_state *st = lua_touserdata(L, lua_upvalueindex(UV_STATE));
    *idx = lua_upvalueindex(UV_STATE);
    if (st->busy) {
        struct s_state *tmp = s_state_new(L);
        *idx = lua_gettop(L);
        tmp->null_ud = st->null_ud;
        tmp->mt_number = st->mt_number;
        tmp->mt_binary = st->mt_binary;
        tmp->mt_set = st->mt_set;
        tmp->mt_ss = st->mt_ss;
        tmp->mt_ns = st->mt_ns;
        tmp->mt_bs = st->mt_bs;
        tmp->mt_list = st->mt_list;
        tmp->mt_map = st->mt_map;
        tmp->mt_item = st->mt_item;
        tmp->mt_av = st->mt_av;
        st = tmp;
    }
    st->busy = 1;
    dyn_buf_reset(&st->out);
    dyn_buf_reset(&st->scratch);
    st->nentries = 0;
    return st;
}

static void s_release(struct s_state *st) {
    st->busy = 0;
    if (st->out.cap > OUT_KEEP) dyn_buf_free(&st->out);
    if (st->scratch.cap > OUT_KEEP) dyn_buf_free(&st->scratch);
}

/* ---- value identification -------------------------------------------- */

enum s_kind {
    K_BAD,
    K_NIL,
    K_STRING,
    K_INT,
    K_FLOAT,
    K_BOOL,
    K_NULL,
    K_NUMBER,
    K_BINARY,
    K_SET,  /* a set of no element type yet */
    K_SS,
    K_NS,
    K_BS,
    K_LIST,  /* tagged list */
    K_MAP,   /* tagged map */
    K_TABLE, /* untagged table: list or map by its keys */
    K_ITEM,  /* as_item wrapper */
    K_AV     /* as_av wrapper */
};

static enum s_kind s_kind_of(lua_State *L, const struct s_state *st, int idx) {
    const void *mt;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: return K_STRING;
    case LUA_TNUMBER: return lua_isinteger(L, idx) ? K_INT : K_FLOAT;
    case LUA_TBOOLEAN: return K_BOOL;
    case LUA_TNIL: return K_NIL;
    case LUA_TTABLE:
        if (!lua_getmetatable(L, idx)) return K_TABLE;
        mt = lua_topointer(L, -1);
        lua_pop(L, 1);
        if (mt == st->mt_list) return K_LIST;
        if (mt == st->mt_map) return K_MAP;
        if (mt == st->mt_ss) return K_SS;
        if (mt == st->mt_ns) return K_NS;
        if (mt == st->mt_bs) return K_BS;
        if (mt == st->mt_set) return K_SET;
        if (mt == st->mt_item) return K_ITEM;
        if (mt == st->mt_av) return K_AV;
        return K_TABLE;
    case LUA_TUSERDATA:
        if (lua_touserdata(L, idx) == st->null_ud) return K_NULL;
        if (!lua_getmetatable(L, idx)) return K_BAD;
        mt = lua_topointer(L, -1);
        lua_pop(L, 1);
        if (mt == st->mt_number) return K_NUMBER;
        if (mt == st->mt_binary) return K_BINARY;
        return K_BAD;
    default: return K_BAD;
    }
}

static struct s_state *s_shared(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(UV_STATE)); }

/* Canonical text of a number object at idx (known to be one). */
static const struct s_num *s_num_at(lua_State *L, int idx) { return lua_touserdata(L, idx); }

static void s_push_number_obj(lua_State *L, const char *text, size_t len) {
    struct s_num *n = lua_newuserdatauv(L, sizeof(struct s_num) + len, 0);
    n->len = (unsigned short)len;
    memcpy(n->text, text, len);
    n->text[len] = '\0';
    lua_pushvalue(L, lua_upvalueindex(UV_MT_NUMBER));
    lua_setmetatable(L, -2);
}

/* Pushes a binary object holding the string at the top (which it replaces). */
static void s_wrap_binary(lua_State *L) {
    lua_newuserdatauv(L, 0, 1);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, lua_upvalueindex(UV_MT_BINARY));
    lua_setmetatable(L, -2);
}

/* Bytes of the binary object at idx; the string stays pushed (anchor). */
static dyn_slice s_binary_bytes(lua_State *L, int idx) {
    size_t n;
    const char *p;
    lua_getiuservalue(L, idx, 1);
    p = lua_tolstring(L, -1, &n);
    return dyn_slice_make(p ? p : "", p ? n : 0);
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
static void s_add_path(struct s_walk *w, luaL_Buffer *b) {
    int i;
    luaL_addstring(b, w->root);
    for (i = 0; i < w->nframes; i++) {
        const struct s_frame *f = &w->path[i];
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

/* Raises "<path>: <message>", after releasing the state. */
static int s_fail(struct s_walk *w, const char *fmt, ...) {
    lua_State *L = w->L;
    luaL_Buffer b;
    va_list ap;
    s_release(w->st);
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

static int s_oom(struct s_walk *w) {
    s_release(w->st);
    return luaL_error(w->L, "not enough memory");
}

static const char *s_num_err_text(enum dyn_av_num_err why) {
    switch (why) {
    case DYN_AV_NUM_PRECISION: return "number has more than 38 significant digits";
    case DYN_AV_NUM_TOO_LARGE:
        return "number too large for DynamoDB (magnitude above 9.9999999999999999999999999999999999999E+125)";
    case DYN_AV_NUM_TOO_SMALL: return "number too small for DynamoDB (non-zero magnitude below 1E-130)";
    case DYN_AV_NUM_NOT_FINITE: return "not a finite number";
    default: return "not a decimal number";
    }
}

static void s_push_frame_key(struct s_walk *w, const char *k, size_t n) {
    struct s_frame *f;
    if (w->nframes >= PATH_MAX_FRAMES) s_fail(w, "nesting too deep");
    f = &w->path[w->nframes++];
    f->key = k;
    f->len = n;
}

static void s_push_frame_index(struct s_walk *w, lua_Integer i) {
    struct s_frame *f;
    if (w->nframes >= PATH_MAX_FRAMES) s_fail(w, "nesting too deep");
    f = &w->path[w->nframes++];
    f->key = NULL;
    f->index = i;
}

/* ---- output helpers --------------------------------------------------- */

static inline char *s_room(struct s_walk *w, size_t n) {
    struct dyn_buf *o = w->out;
    if (o->cap - o->len <= n && dyn_buf_reserve(o, n) != DYN_OK) s_oom(w);
    return o->ptr + o->len;
}

static inline void s_put(struct s_walk *w, const char *s, size_t n) {
    memcpy(s_room(w, n), s, n);
    w->out->len += n;
}

#define PUT_LIT(w, s) s_put((w), (s), sizeof(s) - 1)

static inline void s_putc(struct s_walk *w, char c) {
    *s_room(w, 1) = c;
    w->out->len++;
}

static void s_put_int(struct s_walk *w, lua_Integer v) {
    char *p = s_room(w, 24);
    w->out->len += dyn_av_format_int((int64_t)v, p);
}

/* Writes a string value as JSON; raises on invalid UTF-8. */
static void s_put_string(struct s_walk *w, const char *s, size_t n) {
    int rc = dyn_json_write_string(w->out, dyn_slice_make(s, n));
    if (rc == DYN_ENOMEM) s_oom(w);
    if (rc != DYN_OK) {
        size_t bad = 0;
        dyn_json_utf8_valid(dyn_slice_make(s, n), &bad);
        s_fail(w, "string is not valid UTF-8 (byte %d); use dynamo.binary for raw bytes", (int)bad + 1);
    }
}

/* Canonical N text of a Lua number at idx (integer or float); raises. */
static size_t s_lua_number_text(struct s_walk *w, int idx, char *buf) {
    size_t len;
    enum dyn_av_num_err why;
    lua_Number d;
    if (lua_isinteger(w->L, idx)) return dyn_av_format_int((int64_t)lua_tointeger(w->L, idx), buf);
    d = lua_tonumber(w->L, idx);
    if (dyn_av_number_from_double(d, buf, &len, &why) == DYN_OK) return len;
    if (why == DYN_AV_NUM_NOT_FINITE)
        s_fail(w, "%s cannot be stored in DynamoDB", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
    s_fail(w, "%s", s_num_err_text(why));
    return 0;
}

static void s_put_base64(struct s_walk *w, dyn_slice bytes) {
    s_putc(w, '"');
    if (dyn_base64_encode(bytes, w->out) != DYN_OK) s_oom(w);
    s_putc(w, '"');
}

/* ---- table shape ------------------------------------------------------ */

/*
 * Checks that the table at idx holds exactly the keys 1..n (n = its border)
 * and returns n; raises with the reason when it does not.
 */
static lua_Integer s_check_sequence(struct s_walk *w, int idx, lua_Integer n) {
    lua_State *L = w->L;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k < 1 || k > n) s_fail(w, "sparse array or integer key in a map (key %I)", (LUAI_UACINT)k);
            count++;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            s_fail(w, "table mixes sequence and string keys");
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            s_fail(w, "table key %f is not a sequence index nor a string", (LUAI_UACNUMBER)lua_tonumber(L, -1));
        } else {
            s_fail(w, "table key of type %s (map keys must be strings)", luaL_typename(L, -1));
        }
    }
    if (count != n) {
        lua_Integer i;
        for (i = 1; i <= n; i++) {
            int t = lua_rawgeti(L, idx, i);
            lua_pop(L, 1);
            if (t == LUA_TNIL) break;
        }
        s_fail(w, "sparse array (no value at [%I])", (LUAI_UACINT)i);
    }
    return n;
}

/* Raises for the non-string key at the top - 1 of the stack. */
static void s_bad_key(struct s_walk *w) {
    lua_State *L = w->L;
    if (lua_isinteger(L, -2))
        s_fail(w, "sparse array or integer key in a map (key %I)", (LUAI_UACINT)lua_tointeger(L, -2));
    if (lua_type(L, -2) == LUA_TNUMBER)
        s_fail(w, "table key %f is not a sequence index nor a string", (LUAI_UACNUMBER)lua_tonumber(L, -2));
    s_fail(w, "table key of type %s (map keys must be strings)", luaL_typename(L, -2));
}

/* Byte order of keys; the first byte settles most comparisons. */
static inline int s_entry_cmp(const struct s_entry *a, const struct s_entry *b) {
    size_t n;
    int c;
    if (a->len && b->len && a->key[0] != b->key[0]) return (unsigned char)a->key[0] < (unsigned char)b->key[0] ? -1 : 1;
    n = a->len < b->len ? a->len : b->len;
    c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int s_entry_qcmp(const void *a, const void *b) { return s_entry_cmp(a, b); }

static void s_sort_entries(struct s_entry *e, size_t n) {
    size_t i, j;
    if (n > 24) {
        qsort(e, n, sizeof *e, s_entry_qcmp);
        return;
    }
    /* Items have a handful of attributes: insertion sort wins there. */
    for (i = 1; i < n; i++) {
        struct s_entry t = e[i];
        for (j = i; j > 0 && s_entry_cmp(&e[j - 1], &t) > 0; j--) e[j] = e[j - 1];
        e[j] = t;
    }
}

/* Writes a map key, checking UTF-8 (the path names the map). */
/* Anchors the string at idx in slot `slot` of the state's anchor table. */
static void s_anchor(struct s_walk *w, int idx, int slot) {
    lua_State *L = w->L;
    lua_getiuservalue(L, w->st_idx, 1);
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, slot);
    lua_pop(L, 1);
}

/* Writes the map key (a string at stack index kidx) and its ':'. */
static void s_put_key(struct s_walk *w, int kidx, const char *k, size_t n) {
    unsigned slot = (unsigned)(((uintptr_t)k >> 4) % KEY_CACHE);
    struct s_keyc *c = &w->st->keys[slot];
    size_t at = w->out->len;
    int rc;
    /* Items of one table repeat their attribute names: reuse the text. */
    if (c->ptr == k && c->len == n) {
        /* A fixed-size copy (the slot is that big) beats a variable one. */
        memcpy(s_room(w, sizeof c->esc), c->esc, sizeof c->esc);
        w->out->len += c->elen;
        return;
    }
    rc = dyn_json_write_string(w->out, dyn_slice_make(k, n));
    if (rc == DYN_ENOMEM) s_oom(w);
    if (rc != DYN_OK) {
        size_t bad = 0;
        dyn_json_utf8_valid(dyn_slice_make(k, n), &bad);
        s_fail(w, "map key is not valid UTF-8 (byte %d)", (int)bad + 1);
    }
    s_putc(w, ':');
    if (n <= KEY_RAW && w->out->len - at <= sizeof c->esc) {
        s_anchor(w, kidx, ANCHOR_KEYS + (int)slot);
        c->ptr = k;
        c->len = (unsigned char)n;
        c->elen = (unsigned char)(w->out->len - at);
        memcpy(c->esc, w->out->ptr + at, c->elen);
    }
}

/*
 * Members [first, first + n) were written in traversal order from `from`
 * (every one but the first with its leading comma). Rewrites them in key
 * order: the same bytes, moved once through the scratch buffer.
 */
/*
 * Keeps the order of this map's keys for the next map at this level. The
 * keys are anchored: short strings are interned, so pushing a key's bytes
 * gives back the very string the map holds (long keys are not kept).
 */
static void s_remember_perm(struct s_walk *w, struct s_perm *pm, const struct s_entry *e, size_t n,
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

static void s_reorder(struct s_walk *w, size_t first, size_t n, size_t from, int level) {
    struct s_state *st = w->st;
    const struct s_entry *e = st->entries + first;
    struct dyn_buf *o = w->out;
    struct s_perm *pm = &st->perm[level < HINT_LEVELS ? level : HINT_LEVELS - 1];
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
    if (dyn_buf_append(&st->scratch, o->ptr + from, size) != DYN_OK) s_oom(w);
    for (i = 0; i < n; i++) {
        const struct s_entry *x = ord ? &e[ord[i]] : &e[i];
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

static void s_enc_av(struct s_walk *w, int idx, int level);
static void s_enc_json(struct s_walk *w, int idx, int level);

static inline void s_enc_value(struct s_walk *w, int idx, int level, int json) {
    if (json) s_enc_json(w, idx, level);
    else s_enc_av(w, idx, level);
}

/* Writes {"k":V,...} for the map at idx, keys in byte order. */
static void s_write_map(struct s_walk *w, int idx, int level, int json) {
    lua_State *L = w->L;
    struct s_state *st = w->st;
    size_t first = st->nentries, n = 0, from;
    int vslot;
    if (!lua_checkstack(L, 6)) s_fail(w, "nesting too deep");
    s_putc(w, '{');
    from = w->out->len;
    lua_pushnil(L);
    vslot = lua_gettop(L) + 1; /* lua_next leaves the key below the value */
    while (lua_next(L, idx)) {
        struct s_entry *e;
        const char *k;
        size_t kn;
        if (lua_type(L, -2) != LUA_TSTRING) s_bad_key(w);
        if (first + n == st->capentries) {
            size_t ncap = st->capentries ? st->capentries * 2 : 64;
            void *p = dyn_mem_realloc(&st->alloc, st->entries, st->capentries * sizeof *e, ncap * sizeof *e);
            if (!p) s_oom(w);
            st->entries = p;
            st->capentries = ncap;
        }
        k = lua_tolstring(L, -2, &kn); /* anchored by the table */
        e = &st->entries[first + n];
        e->key = k;
        e->len = kn;
        e->start = w->out->len;
        st->nentries = first + n + 1; /* nested maps stack theirs above */
        if (n) s_putc(w, ',');
        s_put_key(w, vslot - 1, k, kn);
        s_push_frame_key(w, k, kn);
        s_enc_value(w, vslot, level, json);
        w->nframes--;
        st->entries[first + n].end = w->out->len; /* the array may have moved */
        n++;
        lua_pop(L, 1);
    }
    if (n > 1) s_reorder(w, first, n, from, level);
    s_putc(w, '}');
    st->nentries = first;
}

/* Writes [V,...] for the sequence 1..n at idx (checked to be one). */
static void s_write_list(struct s_walk *w, int idx, lua_Integer n, int level, int json) {
    lua_State *L = w->L;
    size_t mark = w->out->len;
    int frames = w->nframes, vslot;
    lua_Integer i = 0;
    if (!lua_checkstack(L, 6)) s_fail(w, "nesting too deep");
    s_putc(w, '[');
    /* One pass when traversal yields 1, 2, ... n, as it does for tables
       whose elements all sit in the array part. */
    lua_pushnil(L);
    vslot = lua_gettop(L) + 1;
    while (lua_next(L, idx)) {
        if (i >= n || !lua_isinteger(L, -2) || lua_tointeger(L, -2) != i + 1) {
            lua_pop(L, 2);
            goto slow;
        }
        if (i++) s_putc(w, ',');
        s_push_frame_index(w, i);
        s_enc_value(w, vslot, level, json);
        w->nframes--;
        lua_pop(L, 1);
    }
    if (i != n) goto slow;
    s_putc(w, ']');
    return;
slow:
    w->nframes = frames;
    dyn_buf_truncate(w->out, mark);
    s_check_sequence(w, idx, n); /* raises unless 1..n are the only keys */
    s_putc(w, '[');
    for (i = 1; i <= n; i++) {
        if (i > 1) s_putc(w, ',');
        lua_rawgeti(L, idx, i);
        s_push_frame_index(w, i);
        s_enc_value(w, lua_gettop(L), level, json);
        w->nframes--;
        lua_pop(L, 1);
    }
    s_putc(w, ']');
}

/* Lists and maps: tagged, or told apart by their keys. */
static void s_write_table(struct s_walk *w, int idx, enum s_kind k, int level, int json) {
    lua_Integer n;
    int max = json ? JSON_MAX_DEPTH : AV_MAX_DEPTH;
    if (level >= max) s_fail(w, "nesting deeper than %d levels", max);
    n = k == K_MAP ? 0 : (lua_Integer)lua_rawlen(w->L, idx);
    if (k == K_LIST || n > 0) {
        if (!json) PUT_LIT(w, "{\"L\":");
        s_write_list(w, idx, n, level + 1, json);
    } else {
        if (!json) PUT_LIT(w, "{\"M\":");
        s_write_map(w, idx, level + 1, json);
    }
    if (!json) s_putc(w, '}');
}

/* Writes the elements of the set at idx: "SS":[...] (or a plain array). */
static void s_write_set(struct s_walk *w, int idx, enum s_kind k, int json) {
    lua_State *L = w->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
    char buf[DYN_AV_NUM_MAX];
    if (!json) {
        if (n == 0 || k == K_SET) s_fail(w, "empty set cannot be stored in DynamoDB");
        PUT_LIT(w, "{\"");
        s_putc(w, k == K_SS ? 'S' : k == K_NS ? 'N' : 'B');
        PUT_LIT(w, "S\":");
    }
    s_putc(w, '[');
    for (i = 1; i <= n; i++) {
        int top;
        enum s_kind ek;
        lua_rawgeti(L, idx, i);
        top = lua_gettop(L);
        ek = s_kind_of(L, w->st, top);
        if (i > 1) s_putc(w, ',');
        s_push_frame_index(w, i);
        if (k == K_SS && ek == K_STRING) {
            size_t len;
            const char *s = lua_tolstring(L, top, &len);
            s_put_string(w, s, len);
        } else if (k == K_NS && (ek == K_INT || ek == K_FLOAT || ek == K_NUMBER)) {
            size_t len;
            const char *text = buf;
            if (ek == K_NUMBER) {
                text = s_num_at(L, top)->text;
                len = s_num_at(L, top)->len;
            } else {
                len = s_lua_number_text(w, top, buf);
            }
            if (!json) s_putc(w, '"');
            s_put(w, text, len);
            if (!json) s_putc(w, '"');
        } else if (k == K_BS && ek == K_BINARY) {
            s_put_base64(w, s_binary_bytes(L, top));
        } else {
            s_fail(w, "%s element in a %s set", luaL_typename(L, top),
                   k == K_SS ? "string" : k == K_NS ? "number" : k == K_BS ? "binary" : "typeless");
        }
        w->nframes--;
        lua_settop(L, top - 1);
    }
    s_putc(w, ']');
    if (!json) s_putc(w, '}');
}

static void s_bad_value(struct s_walk *w, int idx) {
    int t = lua_type(w->L, idx);
    if (t == LUA_TNIL || t == LUA_TNONE) s_fail(w, "nil cannot be stored in DynamoDB");
    s_fail(w, "a %s cannot be stored in DynamoDB", luaL_typename(w->L, idx));
}

static void s_enc_item(struct s_walk *w, int idx);

/* Writes one AttributeValue for the Lua value at idx (absolute). */
static void s_enc_av(struct s_walk *w, int idx, int level) {
    lua_State *L = w->L;
    enum s_kind k;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        PUT_LIT(w, "{\"S\":");
        s_put_string(w, s, n);
        s_putc(w, '}');
        return;
    }
    case LUA_TNUMBER: {
        int isint;
        lua_Integer i = lua_tointegerx(L, idx, &isint); /* also integral floats: same text */
        PUT_LIT(w, "{\"N\":\"");
        if (isint) {
            s_put_int(w, i);
        } else {
            char buf[DYN_AV_NUM_MAX];
            size_t n = s_lua_number_text(w, idx, buf);
            s_put(w, buf, n);
        }
        PUT_LIT(w, "\"}");
        return;
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) PUT_LIT(w, "{\"BOOL\":true}");
        else PUT_LIT(w, "{\"BOOL\":false}");
        return;
    default: break;
    }
    k = s_kind_of(L, w->st, idx);
    switch (k) {
    case K_NUMBER: {
        const struct s_num *num = s_num_at(L, idx);
        PUT_LIT(w, "{\"N\":\"");
        s_put(w, num->text, num->len);
        PUT_LIT(w, "\"}");
        return;
    }
    case K_NULL: PUT_LIT(w, "{\"NULL\":true}"); return;
    case K_BINARY:
        PUT_LIT(w, "{\"B\":");
        s_put_base64(w, s_binary_bytes(L, idx));
        lua_pop(L, 1);
        s_putc(w, '}');
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
        s_enc_av(w, lua_gettop(L), level);
        lua_pop(L, 1);
        return;
    default: s_bad_value(w, idx);
    }
}

/* Writes the item at idx as an AV map; it must be map-shaped. */
static void s_enc_item(struct s_walk *w, int idx) {
    lua_State *L = w->L;
    enum s_kind k = s_kind_of(L, w->st, idx);
    if (k == K_ITEM || k == K_AV) {
        lua_rawgeti(L, idx, 1);
        s_enc_item(w, lua_gettop(L));
        lua_pop(L, 1);
        return;
    }
    if (k != K_TABLE && k != K_MAP)
        s_fail(w, "an item must be a table with string keys, got %s", k == K_NIL ? "nil" : luaL_typename(L, idx));
    if (k == K_TABLE && lua_rawlen(L, idx) > 0) {
        s_check_sequence(w, idx, (lua_Integer)lua_rawlen(L, idx));
        s_fail(w, "an item must be a map (table with string keys), got a sequence");
    }
    s_write_map(w, idx, 0, 0);
}

/* Writes a Lua float as a JSON number: shortest digits, plain when it can. */
static void s_put_json_float(struct s_walk *w, lua_Number d) {
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    enum dyn_av_num_err why;
    int rc = dyn_av_number_from_double(d, buf, &len, &why);
    if (rc == DYN_OK) {
        s_put(w, buf, len);
    } else if (why == DYN_AV_NUM_NOT_FINITE) {
        s_fail(w, "%s cannot be written as JSON", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
    } else {
        /* Beyond DynamoDB's range: JSON still takes it, in exponent form. */
        char dig[17];
        int q, n = dyn_av_double_digits(d, dig, &q);
        char *p = s_room(w, 40);
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
static void s_enc_json(struct s_walk *w, int idx, int level) {
    lua_State *L = w->L;
    enum s_kind k;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        s_put_string(w, s, n);
        return;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) s_put_int(w, lua_tointeger(L, idx));
        else s_put_json_float(w, lua_tonumber(L, idx));
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) PUT_LIT(w, "true");
        else PUT_LIT(w, "false");
        return;
    default: break;
    }
    k = s_kind_of(L, w->st, idx);
    switch (k) {
    case K_NUMBER: s_put(w, s_num_at(L, idx)->text, s_num_at(L, idx)->len); return;
    case K_NULL: PUT_LIT(w, "null"); return;
    case K_BINARY:
        s_put_base64(w, s_binary_bytes(L, idx));
        lua_pop(L, 1);
        return;
    case K_SET:
    case K_SS:
    case K_NS:
    case K_BS: s_write_set(w, idx, k, 1); return;
    case K_ITEM:
        lua_rawgeti(L, idx, 1);
        s_enc_item(w, lua_gettop(L));
        lua_pop(L, 1);
        return;
    case K_AV:
        lua_rawgeti(L, idx, 1);
        s_enc_av(w, lua_gettop(L), 0);
        lua_pop(L, 1);
        return;
    case K_LIST:
    case K_MAP:
    case K_TABLE: s_write_table(w, idx, k, level, 1); return;
    default: s_bad_value(w, idx);
    }
}

static void s_walk_init(struct s_walk *w, lua_State *L, struct s_state *st, int st_idx, const char *root) {
    w->L = L;
    w->st = st;
    w->st_idx = st_idx;
    w->out = &st->out;
    w->root = root;
    w->nframes = 0;
}

/* Pushes the output buffer as a string and releases the state. */
static int s_finish_out(lua_State *L, struct s_state *st) {
    lua_pushlstring(L, st->out.len ? st->out.ptr : "", st->out.len);
    s_release(st);
    return 1;
}

/* ---- JSON / AV reader -> Lua ----------------------------------------- */

/*
 * The decoders are recursive descent over the json.h scanner: they know
 * the shape they expect (an AttributeValue is a one-member object), so
 * they skip the pull reader's state machine.
 */
#define NAME_SLOTS 64 /* a power of two */
#define NAME_MAX_LEN 32

struct s_read {
    lua_State *L;
    struct s_state *st;
    int depth;   /* containers open, against DYN_JSON_MAX_DEPTH */
    int avdepth; /* AV maps open, for the size hints */
    /*
     * Member names seen in this document, kept on the Lua stack from
     * `names` on: items of one table repeat their names, and pushing a stack
     * slot costs a fraction of interning the bytes again. name_ptr is the Lua
     * string's own bytes (alive while the slot holds it); NULL when empty.
     */
    int names;
    const char *name_ptr[NAME_SLOTS];
    unsigned char name_len[NAME_SLOTS];
    struct dyn_json_reader r;
};

static int s_read_fail_at(struct s_read *d, const char *at, const char *what) {
    dyn_json_fail(&d->r, at, what);
    s_release(d->st);
    return luaL_error(d->L, "json: %s at byte %d", d->r.err, (int)d->r.err_pos + 1);
}

/* Raises the error the scanner recorded. */
static int s_read_fail(struct s_read *d) {
    s_release(d->st);
    return luaL_error(d->L, "json: %s at byte %d", d->r.err, (int)d->r.err_pos + 1);
}

static int s_read_oom(struct s_read *d) {
    s_release(d->st);
    return luaL_error(d->L, "not enough memory");
}

/* s_peek when whitespace may follow: kept out of line, compact JSON has none. */
static char s_peek_ws(struct s_read *d) {
    d->r.p = dyn_json_skip_ws(d->r.p, d->r.end);
    return d->r.p < d->r.end ? *d->r.p : 0;
}

/* Skips whitespace; returns the next byte, or 0 at the end. */
static inline char s_peek(struct s_read *d) {
    if (d->r.p < d->r.end && (unsigned char)*d->r.p > ' ') return *d->r.p;
    return s_peek_ws(d);
}

/* Consumes c after whitespace, or raises `what` (or end of input). */
static inline void s_expect(struct s_read *d, char c, const char *what) {
    if (s_peek(d) != c) s_read_fail_at(d, d->r.p, d->r.p < d->r.end ? what : "unexpected end of input");
    d->r.p++;
}

/* Reads a string at the current position (after whitespace). */
static inline void s_string_tok(struct s_read *d, struct dyn_json_token *t, const char *what) {
    if (s_peek(d) != '"') s_read_fail_at(d, d->r.p, d->r.p < d->r.end ? what : "unexpected end of input");
    if (dyn_json_scan_string_fast(&d->r, t) != DYN_OK) s_read_fail(d);
}

/* After a member or element: 1 when another follows (',' read), 0 at `close`. */
static inline int s_more(struct s_read *d, char close, const char *what) {
    char c = s_peek(d);
    if (c == ',') {
        d->r.p++;
        return 1;
    }
    if (c == close) {
        d->r.p++;
        return 0;
    }
    return s_read_fail_at(d, d->r.p, d->r.p < d->r.end ? what : "unexpected end of input");
}

/* One more container open; the error points at its opening byte, before p. */
static void s_enter(struct s_read *d) {
    if (++d->depth > DYN_JSON_MAX_DEPTH || !lua_checkstack(d->L, 8)) s_read_fail_at(d, d->r.p - 1, "nesting too deep");
}

/* The value of a string token (unescaped into scratch when needed). */
static dyn_slice s_tok_string(struct s_read *d, const struct dyn_json_token *t) {
    if (!t->escaped) return t->text;
    dyn_buf_reset(&d->st->scratch);
    if (dyn_json_unescape(t->text, &d->st->scratch) != DYN_OK) s_read_oom(d);
    return dyn_buf_slice(&d->st->scratch);
}

static void s_push_tok_string(struct s_read *d, const struct dyn_json_token *t) {
    dyn_slice s = s_tok_string(d, t);
    lua_pushlstring(d->L, s.ptr, s.len);
}

/* Pushes a member name, from the document's name slots when it is there. */
static void s_push_name(struct s_read *d, const struct dyn_json_token *t) {
    const char *p = t->text.ptr;
    size_t n = t->text.len;
    unsigned h;
    uint32_t a, b;
    if (t->escaped || n > NAME_MAX_LEN) {
        s_push_tok_string(d, t);
        return;
    }
    if (n >= 4) {
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
    } else {
        a = n ? (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[n - 1] << 8 : 0;
        b = n > 1 ? (unsigned char)p[1] : 0;
    }
    h = (unsigned)(((a * 0x9E3779B1u) ^ (b * 0x85EBCA77u) ^ (uint32_t)n) >> 26) & (NAME_SLOTS - 1);
    if (d->name_ptr[h] && d->name_len[h] == n && memcmp(d->name_ptr[h], p, n) == 0) {
        lua_pushvalue(d->L, d->names + (int)h);
        return;
    }
    d->name_ptr[h] = lua_pushlstring(d->L, p, n);
    d->name_len[h] = (unsigned char)n;
    lua_pushvalue(d->L, -1);
    lua_replace(d->L, d->names + (int)h);
}

/* Where a token starts (its opening quote for strings). */
static const char *s_tok_at(const struct dyn_json_token *t) {
    return t->type == DYN_JSON_STRING ? t->text.ptr - 1 : t->text.ptr;
}

/*
 * Pushes the native value of N text (any decimal text): an integer, a float
 * or a number object. Returns DYN_OK or the canonicaliser's status.
 */
static int s_push_n(lua_State *L, dyn_slice t, enum dyn_av_num_err *why) {
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14};
    const char *p = t.ptr, *end = p + t.len, *s, *q, *lim;
    int neg = p < end && *p == '-';
    uint64_t m = 0;
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    int64_t iv;
    double dv;
    int rc;
    /*
     * Fast paths for text that is canonical already (no leading zero, no
     * trailing fraction zero, no "-0"): integers of up to 18 digits are exact,
     * and decimals of up to 15 digits are the one rounded division m / 10^k
     * that dyn_av_number_classify would compute.
     */
    s = q = p + neg;
    lim = end - s > 19 ? s + 19 : end; /* more digits fail the tests below anyway */
    while (q < lim && (unsigned)((unsigned char)*q - '0') < 10) m = m * 10 + (unsigned char)*q++ - '0';
    if (q > s && (*s != '0' || q - s == 1)) {
        if (q == end) {
            if (q - s <= 18 && !(neg && *s == '0')) {
                lua_pushinteger(L, neg ? -(lua_Integer)m : (lua_Integer)m);
                return DYN_OK;
            }
        } else if (*q == '.' && end - q > 1 && end - s <= 16 && end[-1] != '0') {
            const char *f = ++q;
            while (q < end && (unsigned)((unsigned char)*q - '0') < 10) m = m * 10 + (unsigned char)*q++ - '0';
            if (q == end) {
                double v = (double)m / pow10[end - f];
                lua_pushnumber(L, (lua_Number)(neg ? -v : v));
                return DYN_OK;
            }
        }
    }
    if ((rc = dyn_av_number_canon(t, buf, &len, why)) != DYN_OK) return rc;
    switch (dyn_av_number_classify(dyn_slice_make(buf, len), &iv, &dv)) {
    case DYN_AV_INT: lua_pushinteger(L, (lua_Integer)iv); break;
    case DYN_AV_FLOAT: lua_pushnumber(L, (lua_Number)dv); break;
    default: s_push_number_obj(L, buf, len); break;
    }
    return DYN_OK;
}

static void s_dec_n_token(struct s_read *d, const struct dyn_json_token *t) {
    enum dyn_av_num_err why;
    dyn_slice s = s_tok_string(d, t);
    if (s_push_n(d->L, s, &why) != DYN_OK) s_read_fail_at(d, s_tok_at(t), "invalid N value");
}

static void s_dec_b_token(struct s_read *d, const struct dyn_json_token *t) {
    struct dyn_buf *sc = &d->st->scratch;
    dyn_slice s = t->text;
    size_t start = 0;
    int rc;
    dyn_buf_reset(sc);
    if (t->escaped) {
        /* Unescaped text goes first in scratch and the bytes after it: room
           for both is made first, so the text does not move while read. */
        if (dyn_json_unescape(t->text, sc) != DYN_OK || dyn_buf_reserve(sc, sc->len / 4 * 3 + 4) != DYN_OK)
            s_read_oom(d);
        s = dyn_slice_make(sc->ptr, sc->len);
        start = sc->len;
    }
    rc = dyn_base64_decode(s, sc);
    if (rc == DYN_ENOMEM) s_read_oom(d);
    if (rc != DYN_OK) s_read_fail_at(d, s_tok_at(t), "invalid base64 in B value");
    lua_pushlstring(d->L, sc->len ? sc->ptr + start : "", sc->len - start);
    s_wrap_binary(d->L);
}

/* The upvalue of the set metatable for kind 'S', 'N' or 'B'. */
static int s_set_uv(char kind) { return kind == 'S' ? UV_MT_SS : kind == 'N' ? UV_MT_NS : UV_MT_BS; }

static void s_dec_av(struct s_read *d);

/* Consumes the '}' that closes an AttributeValue, or raises. */
static inline void s_av_close(struct s_read *d) {
    if (s_peek(d) == '}') {
        d->r.p++;
        return;
    }
    s_read_fail_at(d, d->r.p,
                   d->r.p >= d->r.end ? "unexpected end of input"
                   : *d->r.p == ','   ? "AttributeValue with more than one member"
                                      : "expected '}'");
}

/*
 * s_dec_av with the commonest values, compact {"S":"..."} and {"N":"..."},
 * read here, inline; anything else (errors included) is left to s_dec_av.
 */
static inline void s_dec_av_fast(struct s_read *d) {
    const char *p = d->r.p;
    struct dyn_json_token t;
    if (d->r.end - p >= 6 && p[0] == '{' && p[1] == '"' && (p[2] == 'S' || p[2] == 'N') && p[3] == '"' &&
        p[4] == ':' && p[5] == '"') {
        d->r.p = p + 5;
        if (dyn_json_scan_string_fast(&d->r, &t) != DYN_OK) s_read_fail(d);
        if (p[2] == 'S') s_push_tok_string(d, &t);
        else s_dec_n_token(d, &t);
        s_av_close(d);
        return;
    }
    s_dec_av(d);
}

/* Reads an AV map (name -> AttributeValue) into a new table. */
static void s_dec_av_map(struct s_read *d, int tag_empty) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    int n = 0, *hint = &d->st->hint[d->avdepth < HINT_LEVELS ? d->avdepth : HINT_LEVELS - 1];
    s_expect(d, '{', "expected an object of AttributeValues");
    s_enter(d);
    /* Sized like the last map at this depth: no rehash for same-shaped items. */
    lua_createtable(L, 0, *hint);
    d->avdepth++;
    if (s_peek(d) == '}') {
        d->r.p++;
    } else {
        do {
            s_string_tok(d, &t, "expected a member name");
            s_push_name(d, &t);
            s_expect(d, ':', "expected ':'");
            s_dec_av_fast(d);
            lua_rawset(L, -3);
            n++;
        } while (s_more(d, '}', "expected ',' or '}'"));
    }
    d->avdepth--;
    d->depth--;
    *hint = n < 64 ? n : 64;
    if (n == 0 && tag_empty) {
        lua_pushvalue(L, lua_upvalueindex(UV_MT_MAP));
        lua_setmetatable(L, -2);
    }
}

/* Reads the array of a SS/NS/BS value into a new set. */
static void s_dec_set(struct s_read *d, char kind) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    lua_Integer i = 0;
    s_expect(d, '[', "expected an array for a set");
    lua_createtable(L, 4, 0);
    if (s_peek(d) == ']') {
        d->r.p++;
    } else {
        do {
            s_string_tok(d, &t, "set elements must be strings");
            if (kind == 'S') s_push_tok_string(d, &t);
            else if (kind == 'N') s_dec_n_token(d, &t);
            else s_dec_b_token(d, &t);
            lua_rawseti(L, -2, ++i);
        } while (s_more(d, ']', "expected ',' or ']'"));
    }
    lua_pushvalue(L, lua_upvalueindex(s_set_uv(kind)));
    lua_setmetatable(L, -2);
}

/* Consumes the literal `word` at the current position, or raises. */
static void s_literal(struct s_read *d, const char *word, size_t n, const char *what) {
    s_peek(d);
    if ((size_t)(d->r.end - d->r.p) < n || memcmp(d->r.p, word, n) != 0) s_read_fail_at(d, d->r.p, what);
    d->r.p += n;
}

/* AttributeValue types, from the member name of an AttributeValue. */
enum s_avt { AVT_NONE, AVT_S, AVT_N, AVT_B, AVT_M, AVT_L, AVT_SS, AVT_NS, AVT_BS, AVT_BOOL, AVT_NULL };

/* The type named by the raw name k[0..kn) (escapes are not undone), or AVT_NONE. */
static inline enum s_avt s_av_type(const char *k, size_t kn) {
    if (kn == 1) {
        switch (k[0]) {
        case 'S': return AVT_S;
        case 'N': return AVT_N;
        case 'M': return AVT_M;
        case 'L': return AVT_L;
        case 'B': return AVT_B;
        default: return AVT_NONE;
        }
    }
    if (kn == 2 && k[1] == 'S') return k[0] == 'S' ? AVT_SS : k[0] == 'N' ? AVT_NS : k[0] == 'B' ? AVT_BS : AVT_NONE;
    if (kn == 4 && memcmp(k, "BOOL", 4) == 0) return AVT_BOOL;
    if (kn == 4 && memcmp(k, "NULL", 4) == 0) return AVT_NULL;
    return AVT_NONE;
}

/* Reads one AttributeValue object and pushes its native value. */
static void s_dec_av(struct s_read *d) {
    lua_State *L = d->L;
    struct dyn_json_token t, ty;
    enum s_avt avt = AVT_NONE;
    const char *p;
    s_expect(d, '{', "expected an AttributeValue object");
    p = d->r.p;
    /* Fast path for the compact form servers send: {"S": where a known type
       name (capitals: no escape can hide in it) is closed by '"' and ':'. */
    if (d->r.end - p >= 7 && p[0] == '"') {
        size_t kn = p[2] == '"' ? 1 : p[3] == '"' ? 2 : p[5] == '"' ? 4 : 0;
        if (kn && p[kn + 2] == ':' && (avt = s_av_type(p + 1, kn)) != AVT_NONE) d->r.p = p + kn + 3;
    }
    if (avt == AVT_NONE) {
        s_string_tok(d, &ty, "expected an AttributeValue type");
        s_expect(d, ':', "expected ':'");
        avt = s_av_type(ty.text.ptr, ty.text.len);
    }
    switch (avt) {
    case AVT_S:
        s_string_tok(d, &t, "S value must be a string");
        s_push_tok_string(d, &t);
        break;
    case AVT_N:
        s_string_tok(d, &t, "N value must be a string");
        s_dec_n_token(d, &t);
        break;
    case AVT_M: s_dec_av_map(d, 1); break;
    case AVT_L: {
        lua_Integer i = 0;
        s_expect(d, '[', "L value must be an array");
        s_enter(d);
        lua_createtable(L, 4, 0);
        if (s_peek(d) == ']') {
            d->r.p++;
        } else {
            do {
                s_dec_av_fast(d);
                lua_rawseti(L, -2, ++i);
            } while (s_more(d, ']', "expected ',' or ']'"));
        }
        d->depth--;
        lua_pushvalue(L, lua_upvalueindex(UV_MT_LIST));
        lua_setmetatable(L, -2);
        break;
    }
    case AVT_B:
        s_string_tok(d, &t, "B value must be a string");
        s_dec_b_token(d, &t);
        break;
    case AVT_BOOL:
        if (s_peek(d) == 't') {
            s_literal(d, "true", 4, "BOOL value must be true or false");
            lua_pushboolean(L, 1);
        } else {
            s_literal(d, "false", 5, "BOOL value must be true or false");
            lua_pushboolean(L, 0);
        }
        break;
    case AVT_NULL:
        s_literal(d, "true", 4, "NULL value must be true");
        lua_pushvalue(L, lua_upvalueindex(UV_NULL));
        break;
    case AVT_SS: s_dec_set(d, 'S'); break;
    case AVT_NS: s_dec_set(d, 'N'); break;
    case AVT_BS: s_dec_set(d, 'B'); break;
    default: s_read_fail_at(d, s_tok_at(&ty), "unknown AttributeValue type");
    }
    s_av_close(d);
}

/* Where a plain JSON value sits in a response, for the unmarshal mode. */
enum s_mode {
    M_PLAIN,
    M_TOP,         /* the response object */
    M_AVMAP,       /* an item: AV map */
    M_AVMAP_ARRAY, /* an array of items */
    M_RESPONSES,   /* "Responses": table -> items, or [ {Item = ...} ] */
    M_ITEM_HOLDER  /* an object whose "Item" is an item */
};

static enum s_mode s_member_mode(enum s_mode parent, dyn_slice key) {
    if (parent == M_TOP) {
        if (dyn_slice_eq_cstr(key, "Item") || dyn_slice_eq_cstr(key, "Attributes")) return M_AVMAP;
        if (dyn_slice_eq_cstr(key, "Items")) return M_AVMAP_ARRAY;
        if (dyn_slice_eq_cstr(key, "Responses")) return M_RESPONSES;
    } else if (parent == M_RESPONSES) {
        return M_AVMAP_ARRAY;
    } else if (parent == M_ITEM_HOLDER) {
        if (dyn_slice_eq_cstr(key, "Item")) return M_AVMAP;
    }
    return M_PLAIN;
}

/* JSON numbers: integers when integral and within int64, else floats. */
static void s_push_json_number(struct s_read *d, const struct dyn_json_token *t) {
    lua_State *L = d->L;
    enum dyn_av_num_err why;
    char buf[DYN_AV_NUM_MAX];
    size_t len;
    int64_t iv;
    double dv;
    const char *p = t->text.ptr;
    size_t n = t->text.len;
    int literal_int = !memchr(p, '.', n) && !memchr(p, 'e', n) && !memchr(p, 'E', n);
    if (literal_int && s_push_n(L, t->text, &why) == DYN_OK) {
        if (lua_isinteger(L, -1)) return;
        lua_pop(L, 1);
    }
    /* "1.0" and "1e3" are integral too. */
    if (dyn_av_number_canon(t->text, buf, &len, &why) == DYN_OK &&
        dyn_av_number_classify(dyn_slice_make(buf, len), &iv, &dv) == DYN_AV_INT) {
        lua_pushinteger(L, (lua_Integer)iv);
        return;
    }
    if (dyn_av_parse_double(t->text, &d->st->alloc, &dv) != DYN_OK) s_read_oom(d);
    lua_pushnumber(L, (lua_Number)dv);
}

/* Reads a plain JSON value and pushes it. */
static void s_dec_plain(struct s_read *d, enum s_mode mode) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    switch (s_peek(d)) {
    case '"':
        if (dyn_json_scan_string_fast(&d->r, &t) != DYN_OK) s_read_fail(d);
        s_push_tok_string(d, &t);
        return;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if (dyn_json_scan_number(&d->r, &t) != DYN_OK) s_read_fail(d);
        s_push_json_number(d, &t);
        return;
    case 't':
        s_literal(d, "true", 4, "unexpected character");
        lua_pushboolean(L, 1);
        return;
    case 'f':
        s_literal(d, "false", 5, "unexpected character");
        lua_pushboolean(L, 0);
        return;
    case 'n':
        s_literal(d, "null", 4, "unexpected character");
        lua_pushvalue(L, lua_upvalueindex(UV_NULL));
        return;
    case '{':
        if (mode == M_AVMAP) {
            s_dec_av_map(d, 0);
            return;
        }
        d->r.p++;
        s_enter(d);
        lua_createtable(L, 0, 4);
        if (s_peek(d) == '}') {
            d->r.p++;
        } else {
            do {
                enum s_mode child;
                s_string_tok(d, &t, "expected a member name");
                child = s_member_mode(mode, t.text);
                s_push_tok_string(d, &t);
                s_expect(d, ':', "expected ':'");
                s_dec_plain(d, child);
                lua_rawset(L, -3);
            } while (s_more(d, '}', "expected ',' or '}'"));
        }
        d->depth--;
        return;
    case '[': {
        lua_Integer i = 0;
        enum s_mode child = mode == M_AVMAP_ARRAY ? M_AVMAP : mode == M_RESPONSES ? M_ITEM_HOLDER : M_PLAIN;
        d->r.p++;
        s_enter(d);
        lua_createtable(L, child == M_AVMAP ? d->st->items_hint : 4, 0);
        if (s_peek(d) == ']') {
            d->r.p++;
        } else {
            do {
                s_dec_plain(d, child);
                lua_rawseti(L, -2, ++i);
            } while (s_more(d, ']', "expected ',' or ']'"));
        }
        d->depth--;
        if (child == M_AVMAP) d->st->items_hint = i < ITEMS_HINT_MAX ? (int)i : ITEMS_HINT_MAX;
        lua_pushvalue(L, lua_upvalueindex(UV_MT_LIST));
        lua_setmetatable(L, -2);
        return;
    }
    case 0: s_read_fail_at(d, d->r.p, "unexpected end of input"); return;
    default: s_read_fail_at(d, d->r.p, "unexpected character");
    }
}

/* Pushes the name slots: the decoded value goes above them, at the top. */
static void s_read_init(struct s_read *d, lua_State *L, struct s_state *st, dyn_slice text) {
    int i;
    d->L = L;
    d->st = st;
    if (!lua_checkstack(L, NAME_SLOTS + 8)) luaL_error(L, "not enough memory");
    d->names = lua_gettop(L) + 1;
    for (i = 0; i < NAME_SLOTS; i++) lua_pushnil(L);
    memset(d->name_ptr, 0, sizeof d->name_ptr);
    d->depth = 0;
    d->avdepth = 0;
    dyn_json_reader_init(&d->r, text);
}

/* Only whitespace may follow the document. */
static void s_read_end(struct s_read *d) {
    if (s_peek(d) || d->r.p != d->r.end) s_read_fail_at(d, d->r.p, "unexpected data after the document");
}

/* ---- Lua AV tables -> native (unmarshal) ------------------------------ */

static void s_unm_av(struct s_walk *w, int idx);

/* Pushes the canonical text's native value; raises with the path. */
static void s_unm_n(struct s_walk *w, int idx) {
    enum dyn_av_num_err why = DYN_AV_NUM_SYNTAX;
    size_t n;
    const char *s;
    if (lua_type(w->L, idx) == LUA_TNUMBER) {
        lua_pushvalue(w->L, idx);
        return;
    }
    if (lua_type(w->L, idx) != LUA_TSTRING) s_fail(w, "N value must be a string, got %s", luaL_typename(w->L, idx));
    s = lua_tolstring(w->L, idx, &n);
    if (s_push_n(w->L, dyn_slice_make(s, n), &why) != DYN_OK) s_fail(w, "invalid N value: %s", s_num_err_text(why));
}

static void s_unm_b(struct s_walk *w, int idx) {
    lua_State *L = w->L;
    size_t n;
    const char *s;
    int rc;
    if (s_kind_of(L, w->st, idx) == K_BINARY) {
        lua_pushvalue(L, idx);
        return;
    }
    if (lua_type(L, idx) != LUA_TSTRING) s_fail(w, "B value must be a base64 string, got %s", luaL_typename(L, idx));
    s = lua_tolstring(L, idx, &n);
    dyn_buf_reset(&w->st->scratch);
    rc = dyn_base64_decode(dyn_slice_make(s, n), &w->st->scratch);
    if (rc == DYN_ENOMEM) s_oom(w);
    if (rc != DYN_OK) s_fail(w, "invalid base64 in B value");
    lua_pushlstring(L, w->st->scratch.len ? w->st->scratch.ptr : "", w->st->scratch.len);
    s_wrap_binary(L);
}

/* Pushes the native table of an AV map (a table of name -> AV) at idx. */
static void s_unm_map(struct s_walk *w, int idx, int tag_empty) {
    lua_State *L = w->L;
    int n = 0, out;
    if (lua_type(L, idx) != LUA_TTABLE) s_fail(w, "expected a table of AttributeValues, got %s", luaL_typename(L, idx));
    if (!lua_checkstack(L, 8)) s_fail(w, "nesting too deep");
    lua_createtable(L, 0, 8);
    out = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kn;
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING)
            s_fail(w, "table key of type %s (map keys must be strings)", luaL_typename(L, -2));
        k = lua_tolstring(L, -2, &kn);
        s_push_frame_key(w, k, kn);
        s_unm_av(w, lua_gettop(L));
        w->nframes--;
        lua_pushvalue(L, -3); /* key */
        lua_insert(L, -2);
        lua_rawset(L, out);
        lua_pop(L, 1);
        n++;
    }
    if (n == 0 && tag_empty) {
        lua_pushvalue(L, lua_upvalueindex(UV_MT_MAP));
        lua_setmetatable(L, -2);
    }
}

/* Elements 1..#t of the array at idx, checked to be an array. */
static lua_Integer s_unm_array_len(struct s_walk *w, int idx, const char *what) {
    lua_State *L = w->L;
    lua_Integer n;
    if (lua_type(L, idx) != LUA_TTABLE) s_fail(w, "%s value must be an array, got %s", what, luaL_typename(L, idx));
    n = (lua_Integer)lua_rawlen(L, idx);
    return s_check_sequence(w, idx, n);
}

/* Pushes the native value of the AV table at idx. */
static void s_unm_av(struct s_walk *w, int idx) {
    lua_State *L = w->L;
    const char *k;
    size_t kn;
    int v;
    if (lua_type(L, idx) != LUA_TTABLE)
        s_fail(w, "an AttributeValue is a table like {S = \"x\"}, got %s", luaL_typename(L, idx));
    lua_pushnil(L);
    if (!lua_next(L, idx)) s_fail(w, "empty AttributeValue");
    if (lua_type(L, -2) != LUA_TSTRING) s_fail(w, "unknown AttributeValue type");
    k = lua_tolstring(L, -2, &kn);
    v = lua_gettop(L);
    lua_pushvalue(L, -2);
    if (lua_next(L, idx)) s_fail(w, "AttributeValue with more than one member");
    /* stack: key, value */
    if (kn == 1 && k[0] == 'S') {
        if (lua_type(L, v) != LUA_TSTRING) s_fail(w, "S value must be a string, got %s", luaL_typename(L, v));
        lua_pushvalue(L, v);
    } else if (kn == 1 && k[0] == 'N') {
        s_unm_n(w, v);
    } else if (kn == 1 && k[0] == 'B') {
        s_unm_b(w, v);
    } else if (kn == 1 && k[0] == 'M') {
        s_unm_map(w, v, 1);
    } else if (kn == 1 && k[0] == 'L') {
        lua_Integer n = s_unm_array_len(w, v, "L"), i;
        if (!lua_checkstack(L, 8)) s_fail(w, "nesting too deep");
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, v, i);
            s_push_frame_index(w, i);
            s_unm_av(w, lua_gettop(L));
            w->nframes--;
            lua_rawseti(L, -3, i);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, lua_upvalueindex(UV_MT_LIST));
        lua_setmetatable(L, -2);
    } else if (kn == 4 && memcmp(k, "BOOL", 4) == 0) {
        if (lua_type(L, v) != LUA_TBOOLEAN) s_fail(w, "BOOL value must be a boolean, got %s", luaL_typename(L, v));
        lua_pushvalue(L, v);
    } else if (kn == 4 && memcmp(k, "NULL", 4) == 0) {
        lua_pushvalue(L, lua_upvalueindex(UV_NULL));
    } else if (kn == 2 && k[1] == 'S' && (k[0] == 'S' || k[0] == 'N' || k[0] == 'B')) {
        char name[3] = {k[0], 'S', 0};
        lua_Integer n = s_unm_array_len(w, v, name), i;
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            int e;
            lua_rawgeti(L, v, i);
            e = lua_gettop(L);
            s_push_frame_index(w, i);
            if (k[0] == 'S') {
                if (lua_type(L, e) != LUA_TSTRING) s_fail(w, "SS elements must be strings");
                lua_pushvalue(L, e);
            } else if (k[0] == 'N') {
                s_unm_n(w, e);
            } else {
                s_unm_b(w, e);
            }
            w->nframes--;
            lua_rawseti(L, -3, i);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, lua_upvalueindex(s_set_uv(k[0])));
        lua_setmetatable(L, -2);
    } else {
        s_fail(w, "unknown AttributeValue type \"%s\"", k);
    }
    /* Leave only the result, in place of the key and value. */
    lua_replace(L, v - 1);
    lua_settop(L, v - 1);
}

/* ---- module functions ------------------------------------------------- */

static const char *s_root(lua_State *L, int arg, const char *def) { return luaL_optstring(L, arg, def); }

/* The walkers the encode entry points share: each writes argument 1. */
static void s_walk_item(struct s_walk *w) { s_enc_item(w, 1); }
static void s_walk_av(struct s_walk *w) { s_enc_av(w, 1, 0); }
static void s_walk_json(struct s_walk *w) { s_enc_json(w, 1, 0); }

/* Runs `walk` over argument 1 with the root name from argument 2 (or
 * `default_root`) and returns the text written. */
static int s_encode_entry(lua_State *L, const char *default_root, void (*walk)(struct s_walk *)) {
    struct s_state *st;
    int st_idx;
    const char *root = s_root(L, 2, default_root);
    struct s_walk w;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, root);
    walk(&w);
    return s_finish_out(L, w.st);
}

/* core.encode_item(tbl [, root]) -> AV map JSON. */
static int l_encode_item(lua_State *L) { return s_encode_entry(L, "item", s_walk_item); }

/* core.encode_av(value [, root]) -> one AttributeValue as JSON. */
static int l_encode_av(lua_State *L) { return s_encode_entry(L, "value", s_walk_av); }

/* core.json_encode(value [, root]) -> plain JSON. */
static int l_json_encode(lua_State *L) { return s_encode_entry(L, "value", s_walk_json); }

/*
 * core.encode_items(list, i, j, sep [, suffix]) -> the items list[i..j], each
 * as AV map JSON, joined by sep: one call for a batch's items. `suffix` (JSON
 * members with a leading comma and the closing brace, such as
 * ',"dt_modified":{"S":"..."}}') replaces each table item's closing brace. A
 * string element is JSON already written and goes in as it is. Raises as
 * encode_item on the first bad item (callers that name records encode them
 * one by one to find it).
 */
static int l_encode_items(lua_State *L) {
    struct s_state *st;
    int st_idx;
    struct s_walk w;
    lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3), k;
    dyn_slice sep = ldynamo_checkslice(L, 4);
    dyn_slice suffix = ldynamo_optslice(L, 5, "");
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argcheck(L, suffix.len == 0 || (suffix.ptr[0] == ',' && suffix.ptr[suffix.len - 1] == '}'), 5,
                  "a suffix starts with ',' and ends with '}'");
    lua_settop(L, 5);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, "item");
    for (k = i; k <= j; k++) {
        if (k > i) s_put(&w, sep.ptr, sep.len);
        if (lua_rawgeti(L, 1, k) == LUA_TSTRING) {
            size_t n;
            const char *text = lua_tolstring(L, 6, &n);
            s_put(&w, text, n);
        } else {
            s_enc_item(&w, 6);
            if (suffix.len) {
                /* the map's closing brace gives way to the suffix ("{}" takes it without its comma) */
                size_t at = --w.out->len;
                if (w.out->ptr[at - 1] == '{') s_put(&w, suffix.ptr + 1, suffix.len - 1);
                else s_put(&w, suffix.ptr, suffix.len);
            }
        }
        lua_settop(L, 5);
    }
    return s_finish_out(L, w.st);
}

/*
 * core.encode_keys(pk, pvals, sk, svals, i, j [, sep]) -> keys i..j as AV maps
 * joined by sep (default ","): {"pk":AV,"sk":AV} from parallel arrays of key
 * values (sk and svals nil for a table without a sort key). Raises as
 * encode_item on a bad value.
 */
static int l_encode_keys(lua_State *L) {
    struct s_state *st;
    int st_idx, two = !lua_isnoneornil(L, 3);
    struct s_walk w;
    dyn_slice pk = ldynamo_checkslice(L, 1), sk = two ? ldynamo_checkslice(L, 3) : DYN_SLICE_EMPTY;
    lua_Integer i = luaL_checkinteger(L, 5), j = luaL_checkinteger(L, 6), k;
    dyn_slice sep = ldynamo_optslice(L, 7, ",");
    luaL_checktype(L, 2, LUA_TTABLE);
    if (two) luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 7);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, "key");
    for (k = i; k <= j; k++) {
        if (k > i) s_put(&w, sep.ptr, sep.len);
        s_putc(&w, '{');
        s_put_string(&w, pk.ptr, pk.len);
        s_putc(&w, ':');
        lua_rawgeti(L, 2, k);
        s_enc_av(&w, 8, 0);
        lua_settop(L, 7);
        if (two) {
            s_putc(&w, ',');
            s_put_string(&w, sk.ptr, sk.len);
            s_putc(&w, ':');
            lua_rawgeti(L, 4, k);
            s_enc_av(&w, 8, 0);
            lua_settop(L, 7);
        }
        s_putc(&w, '}');
    }
    return s_finish_out(L, w.st);
}

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
static int s_key_part(lua_State *L, const struct s_state *st, int idx, struct s_key_part *kp, int *pushed) {
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
    switch (s_kind_of(L, st, idx)) {
    case K_NUMBER:
        kp->type = 'N';
        kp->bytes = dyn_slice_make(s_num_at(L, idx)->text, s_num_at(L, idx)->len);
        return 1;
    case K_BINARY:
        kp->type = 'B';
        kp->bytes = s_binary_bytes(L, idx);
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
static int s_push_key_id(lua_State *L, const struct s_state *st, int a, int bidx) {
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
    if (!s_push_key_id(L, s_shared(L), 1, two ? 2 : 0))
        return luaL_error(L, "key_id: a key value must be a string, a finite number or a binary");
    return 1;
}

/*
 * core.index_items(items, pk, sk, into) -> n: into[key_id(item[pk], item[sk])]
 * = item for each item of the array (sk nil for a table without a sort key).
 * Raises when an item lacks a key attribute.
 */
static int l_index_items(lua_State *L) {
    const struct s_state *st = s_shared(L);
    lua_Integer i, n;
    int two;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstring(L, 2);
    two = !lua_isnoneornil(L, 3);
    if (two) luaL_checkstring(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
    n = (lua_Integer)lua_rawlen(L, 1);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i); /* 5: the item */
        if (lua_type(L, 5) != LUA_TTABLE) return luaL_error(L, "index_items: item %I is not a table", (LUAI_UACINT)i);
        lua_pushvalue(L, 2);
        lua_rawget(L, 5); /* 6 */
        if (two) {
            lua_pushvalue(L, 3);
            lua_rawget(L, 5); /* 7 */
        }
        if (!s_push_key_id(L, st, 6, two ? 7 : 0))
            return luaL_error(L, "index_items: item %I has no valid key attribute %s", (LUAI_UACINT)i,
                              lua_tostring(L, two && !lua_isnil(L, 6) ? 3 : 2));
        lua_pushvalue(L, 5);
        lua_rawset(L, 4);
        lua_settop(L, 4);
    }
    lua_pushinteger(L, n);
    return 1;
}

/*
 * core.prepare_keys(recs, from, to, pk, sk, pv, sv, ids) -> i: for each
 * record recs[from..to] that is a table whose pk (and sk, when given) value is
 * a string, pv[i], sv[i], ids[i] = that value, the sort value, key_id of both.
 * Stops at the first other record and returns its index (to + 1 when none):
 * the caller prepares that one itself (hooks, checks, errors).
 */
static int l_prepare_keys(lua_State *L) {
    const struct s_state *st = s_shared(L);
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

/*
 * core.merge_items(recs, ids, found, out, flags, from, to) -> i: for each
 * record recs[from..to] whose item found[ids[i]] exists, copies into the item
 * every field of the record it lacks, then out[i], flags[i] = item, true.
 * Stops at the first record without an item and returns its index (to + 1
 * when none): the caller makes that one's output itself.
 */
static int l_merge_items(lua_State *L) {
    lua_Integer i = luaL_checkinteger(L, 6), to = luaL_checkinteger(L, 7);
    int k;
    for (k = 1; k <= 5; k++) luaL_checktype(L, k, LUA_TTABLE);
    lua_settop(L, 7);
    for (; i <= to; i++) {
        lua_rawgeti(L, 2, i); /* 8: the id */
        if (lua_rawget(L, 3) != LUA_TTABLE) break; /* 8: the item */
        if (lua_rawgeti(L, 1, i) != LUA_TTABLE) break; /* 9: the record */
        lua_pushnil(L);
        while (lua_next(L, 9)) { /* 10: key, 11: value */
            lua_pushvalue(L, 10);
            if (lua_rawget(L, 8) == LUA_TNIL) { /* 12 */
                lua_pop(L, 1);
                lua_pushvalue(L, 10);
                lua_insert(L, -2); /* key, key, value */
                lua_rawset(L, 8);
            } else {
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
        lua_rawseti(L, 4, i);
        lua_pushboolean(L, 1);
        lua_rawseti(L, 5, i);
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
    struct s_state *st;
    int st_idx;
    struct s_walk w;
    lua_Integer i = luaL_checkinteger(L, 4), j = luaL_checkinteger(L, 5), k;
    dyn_slice suffix = ldynamo_optslice(L, 6, "");
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_argcheck(L, suffix.len == 0 || (suffix.ptr[0] == ',' && suffix.ptr[suffix.len - 1] == '}'), 6,
                  "a suffix starts with ',' and ends with '}'");
    lua_settop(L, 6);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, "item");
    for (k = i; k <= j; k++) {
        dyn_slice json, id;
        size_t size = 0;
        int rc;
        dyn_buf_reset(w.out);
        if (lua_rawgeti(L, 2, k) == LUA_TSTRING) { /* 7 */
            json = ldynamo_checkslice(L, 7);
        } else {
            s_enc_item(&w, 7);
            if (suffix.len) {
                size_t at = --w.out->len;
                if (w.out->ptr[at - 1] == '{') s_put(&w, suffix.ptr + 1, suffix.len - 1);
                else s_put(&w, suffix.ptr, suffix.len);
            }
            json = dyn_buf_slice(w.out);
        }
        if (lua_rawgeti(L, 3, k) != LUA_TSTRING) luaL_error(L, "batch_put_items: ids[%I] is not a string", k); /* 8 */
        id = ldynamo_checkslice(L, 8);
        rc = dyn_batch_put(b, id, json, &size);
        if (rc == DYN_ERANGE) {
            s_release(st);
            lua_pushinteger(L, k);
            lua_pushinteger(L, (lua_Integer)size);
            return 2;
        }
        s_batch_check(L, rc, k);
        lua_settop(L, 6);
    }
    s_release(st);
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
    struct s_state *st;
    int st_idx, two = !lua_isnoneornil(L, 4), get;
    struct s_walk w;
    dyn_slice pk = ldynamo_checkslice(L, 2), sk = two ? ldynamo_checkslice(L, 4) : DYN_SLICE_EMPTY;
    lua_Integer i = luaL_checkinteger(L, 7), j = luaL_checkinteger(L, 8), k;
    luaL_checktype(L, 3, LUA_TTABLE);
    if (two) luaL_checktype(L, 5, LUA_TTABLE);
    luaL_checktype(L, 6, LUA_TTABLE);
    lua_settop(L, 8);
    get = dyn_batch_kind(b) == DYN_BATCH_GET;
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, "key");
    for (k = i; k <= j; k++) {
        int rc;
        dyn_buf_reset(w.out);
        s_putc(&w, '{');
        s_put_string(&w, pk.ptr, pk.len);
        s_putc(&w, ':');
        lua_rawgeti(L, 3, k);
        s_enc_av(&w, 9, 0);
        lua_settop(L, 8);
        if (two) {
            s_putc(&w, ',');
            s_put_string(&w, sk.ptr, sk.len);
            s_putc(&w, ':');
            lua_rawgeti(L, 5, k);
            s_enc_av(&w, 9, 0);
            lua_settop(L, 8);
        }
        s_putc(&w, '}');
        if (lua_rawgeti(L, 6, k) != LUA_TSTRING) luaL_error(L, "batch_add_keys: ids[%I] is not a string", k); /* 9 */
        rc = get ? dyn_batch_get(b, ldynamo_checkslice(L, 9), dyn_buf_slice(w.out))
                 : dyn_batch_delete(b, ldynamo_checkslice(L, 9), dyn_buf_slice(w.out));
        s_batch_check(L, rc, k);
        lua_settop(L, 8);
    }
    s_release(st);
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
    struct s_state *st;
    int st_idx;
    struct s_read d;
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 6);
    /* one decoder for every item: member names stay interned in its slots from one item to the next */
    st = s_acquire(L, &st_idx);
    s_read_init(&d, L, st, DYN_SLICE_EMPTY);
    item = lua_gettop(L) + 1;
    for (k = i; k <= j; k++) {
        struct dyn_batch_slot_info info;
        if (k < 1 || dyn_batch_slot(b, (size_t)(k - 1), &info) < 0) {
            s_release(st);
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
        s_dec_av_map(&d, 0); /* the item, at `item` */
        s_read_end(&d);
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
    s_release(st);
    return 0;
}

/* The document readers behind the decode entry points. */
static void s_read_item(struct s_read *d) { s_dec_av_map(d, 0); }
static void s_read_av(struct s_read *d) { s_dec_av(d); }
static void s_read_plain(struct s_read *d) { s_dec_plain(d, M_PLAIN); }
static void s_read_response(struct s_read *d) { s_dec_plain(d, M_TOP); }

/* Reads the whole document `text` with `read` and returns its value; the
 * stack is first cut to the `nargs` arguments (which keep text alive). */
static int s_decode_entry(lua_State *L, dyn_slice text, int nargs, void (*read)(struct s_read *)) {
    struct s_state *st;
    int st_idx;
    struct s_read d;
    lua_settop(L, nargs);
    st = s_acquire(L, &st_idx);
    s_read_init(&d, L, st, text);
    read(&d);
    s_read_end(&d);
    s_release(d.st);
    return 1;
}

/* core.decode_item(json) -> native item table. */
static int l_decode_item(lua_State *L) { return s_decode_entry(L, ldynamo_checkslice(L, 1), 1, s_read_item); }

/* core.decode_av(json) -> native value of one AttributeValue. */
static int l_decode_av(lua_State *L) { return s_decode_entry(L, ldynamo_checkslice(L, 1), 1, s_read_av); }

/* core.json_decode(text [, unmarshal]) -> plain Lua value. */
static int l_json_decode(lua_State *L) {
    dyn_slice text = ldynamo_checkslice(L, 1);
    return s_decode_entry(L, text, 2, lua_toboolean(L, 2) ? s_read_response : s_read_plain);
}

/*
 * The decoder behind ldynamo_push_json: json_decode on text held in C (a
 * response body), so the text never becomes a Lua string. Reached only
 * through the registry, with a light userdata for the slice.
 */
static int l_decode_slice(lua_State *L) {
    dyn_slice text = *(const dyn_slice *)lua_touserdata(L, 1);
    return s_decode_entry(L, text, 2, lua_toboolean(L, 2) ? s_read_response : s_read_plain);
}

static const char s_decode_slice_key = 0; /* its address keys the registry entry */

int ldynamo_push_json(lua_State *L, dyn_slice text, int unmarshal) {
    int rc;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &s_decode_slice_key);
    lua_pushlightuserdata(L, &text);
    lua_pushboolean(L, unmarshal);
    rc = lua_pcall(L, 2, 1, 0);
    if (rc == LUA_ERRMEM) lua_error(L);
    return rc == LUA_OK;
}

/* ---- pages: a Query or Scan response read one item at a time ----------- */

/*
 * A "dynamo.page" owns a response body and reads its "Items" one by one as
 * the caller asks, so a 1 MB page never becomes thousands of Lua tables at
 * once: each item is made, used and dropped while its memory is still in
 * cache. The other members (LastEvaluatedKey, Count, ...) go to a table, the
 * page's user value, complete once every item has been read.
 */
#define PAGE_MT "dynamo.page"

struct s_page {
    struct dyn_buf body;
    ldynamo_recycle_fn recycle; /* takes the body once read (NULL: it is freed) */
    size_t pos;   /* where reading resumes */
    int in_items; /* inside the Items array */
    int done;     /* the document was read to its end */
};

/* Reads the response object's members from the current position into the
 * table at `members`, until the Items array opens (in_items) or the object
 * closes (done). */
static void s_page_members(struct s_read *d, struct s_page *pg, int at_start, int members) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    if (at_start) {
        s_expect(d, '{', "expected a response object");
        if (s_peek(d) == '}') {
            d->r.p++;
            goto end;
        }
    } else if (!s_more(d, '}', "expected ',' or '}'")) {
        goto end;
    }
    do {
        s_string_tok(d, &t, "expected a member name");
        s_expect(d, ':', "expected ':'");
        if (dyn_slice_eq_cstr(t.text, "Items") && !t.escaped && s_peek(d) == '[') {
            d->r.p++;
            if (s_peek(d) == ']') {
                d->r.p++;
                continue;
            }
            pg->in_items = 1;
            return;
        }
        s_push_tok_string(d, &t);
        s_dec_plain(d, s_member_mode(M_TOP, t.text));
        lua_rawset(L, members);
    } while (s_more(d, '}', "expected ',' or '}'"));
end:
    s_read_end(d);
    pg->done = 1;
}

/* The protected step behind page:next() and page_fill: (page, buf, max)
 * reads up to max items into buf[1..] and pushes their count. */
static int l_page_step(lua_State *L) {
    struct s_page *pg = lua_touserdata(L, 1);
    lua_Integer max = lua_tointeger(L, 3), n = 0;
    struct s_state *st;
    int st_idx;
    struct s_read d;
    lua_settop(L, 3);
    lua_getiuservalue(L, 1, 1); /* 4: the members table */
    st = s_acquire(L, &st_idx);
    s_read_init(&d, L, st, dyn_buf_slice(&pg->body));
    d.r.p = d.r.begin + pg->pos;
    while (n < max && !pg->done) {
        if (!pg->in_items) {
            s_page_members(&d, pg, pg->pos == 0, 4);
        } else if (s_peek(&d) == ']') {
            d.r.p++;
            pg->in_items = 0;
            s_page_members(&d, pg, 0, 4);
        } else {
            s_dec_av_map(&d, 0);
            lua_rawseti(L, 2, ++n);
            if (!s_more(&d, ']', "expected ',' or ']'")) d.r.p--; /* the ']' is read next */
        }
        pg->pos = (size_t)(d.r.p - d.r.begin);
    }
    s_release(st);
    lua_pushinteger(L, n);
    return 1;
}

static const char s_page_step_key = 0; /* its address keys the registry entry */

/* Read to its end, the page needs its text no more: the memory goes back to
 * the page's owner (the client's driver, for the next response) or is freed. */
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
    lua_rawgetp(L, LUA_REGISTRYINDEX, &s_page_step_key);
    lua_pushvalue(L, page);
    lua_pushvalue(L, buf);
    lua_pushinteger(L, max);
    rc = lua_pcall(L, 3, 1, 0);
    if (rc == LUA_ERRMEM) lua_error(L);
    if (rc != LUA_OK) {
        pg->done = 1; /* nothing more can be read */
        return -1;
    }
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (pg->done) s_page_drop_body(L, pg, page);
    return n;
}

/*
 * page:next() -> the next item (native values), or nil after the last one;
 * nil, message when the body is not the JSON it should be.
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
 * (0 after the last one); nil, message for a broken body. For loops that
 * take items in runs, without a call per item.
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

/* page:result() -> the members other than Items (complete after the last item). */
static int l_page_result(lua_State *L) {
    luaL_checkudata(L, 1, PAGE_MT);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int l_page_gc(lua_State *L) {
    struct s_page *pg = luaL_checkudata(L, 1, PAGE_MT);
    dyn_buf_free(&pg->body);
    return 0;
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
    pg->done = 0;
    luaL_setmetatable(L, PAGE_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* core.page(text) -> a page over a copy of text (for responses that arrive as
 * Lua strings, from a host transport). */
static int l_page(lua_State *L) {
    dyn_slice text = ldynamo_checkslice(L, 1);
    struct dyn_buf b = DYN_BUF_INIT(NULL);
    if (dyn_buf_append(&b, text.ptr, text.len) != DYN_OK) return luaL_error(L, "not enough memory");
    return ldynamo_push_page(L, &b, 0, NULL);
}

static void s_open_pages(lua_State *L, int base) {
    static const luaL_Reg methods[] = {{"next", l_page_next}, {"result", l_page_result}, {NULL, NULL}};
    int i;
    if (luaL_newmetatable(L, PAGE_MT)) {
        lua_pushcfunction(L, l_page_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    for (i = 0; i < UV_COUNT; i++) lua_pushvalue(L, base + i);
    lua_pushcclosure(L, l_page_step, UV_COUNT);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &s_page_step_key);
}

/* Is the value at idx map-shaped (a tagged map, {} or string keys)? */
static int s_is_mapish(lua_State *L, const struct s_state *st, int idx) {
    enum s_kind k = s_kind_of(L, st, idx);
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
    const char *root = s_root(L, 2, "value");
    struct s_walk w;
    struct s_read d;
    struct s_state *st;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, root);
    if (!force_value && s_is_mapish(L, st, 1)) s_enc_item(&w, 1);
    else s_enc_av(&w, 1, 0);
    s_read_init(&d, L, st, dyn_buf_slice(&st->out));
    s_dec_plain(&d, M_PLAIN);
    s_release(st);
    return 1;
}

static int l_marshal(lua_State *L) { return s_marshal(L, 0); }
static int l_marshal_value(lua_State *L) { return s_marshal(L, 1); }

/* core.unmarshal(av_map [, root]) -> native item. */
static int l_unmarshal(lua_State *L) {
    struct s_state *st;
    int st_idx;
    const char *root = s_root(L, 2, "value");
    struct s_walk w;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, root);
    s_unm_map(&w, 1, 0);
    s_release(w.st);
    return 1;
}

/* core.unmarshal_value(av [, root]) -> native value. */
static int l_unmarshal_value(lua_State *L) {
    struct s_state *st;
    int st_idx;
    const char *root = s_root(L, 2, "value");
    struct s_walk w;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = s_acquire(L, &st_idx);
    s_walk_init(&w, L, st, st_idx, root);
    s_unm_av(&w, 1);
    s_release(w.st);
    return 1;
}

/* ---- value constructors ----------------------------------------------- */

/* Canonical N text of a Lua number / numeric string / number object at arg. */
static size_t s_number_arg(lua_State *L, int arg, char *buf, const char *fname) {
    struct s_state *st = s_shared(L);
    enum dyn_av_num_err why = DYN_AV_NUM_SYNTAX;
    size_t len = 0;
    int rc;
    switch (s_kind_of(L, st, arg)) {
    case K_NUMBER:
        len = s_num_at(L, arg)->len;
        memcpy(buf, s_num_at(L, arg)->text, len + 1);
        return len;
    case K_INT: return dyn_av_format_int((int64_t)lua_tointeger(L, arg), buf);
    case K_FLOAT: {
        lua_Number d = lua_tonumber(L, arg);
        if (dyn_av_number_from_double(d, buf, &len, &why) == DYN_OK) return len;
        if (why == DYN_AV_NUM_NOT_FINITE)
            luaL_error(L, "%s: %s cannot be stored in DynamoDB", fname, isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
        luaL_error(L, "%s: %s", fname, s_num_err_text(why));
        return 0;
    }
    case K_STRING: {
        size_t n;
        const char *s = lua_tolstring(L, arg, &n);
        rc = dyn_av_number_canon(dyn_slice_make(s, n), buf, &len, &why);
        if (rc == DYN_OK) return len;
        if (why == DYN_AV_NUM_SYNTAX) luaL_error(L, "%s: \"%s\" is not a decimal number", fname, s);
        luaL_error(L, "%s: %s", fname, s_num_err_text(why));
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
    if (s_kind_of(L, s_shared(L), 1) == K_NUMBER) {
        lua_settop(L, 1);
        return 1;
    }
    len = s_number_arg(L, 1, buf, "dynamo.number");
    s_push_number_obj(L, buf, len);
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
    if (s_kind_of(L, s_shared(L), 1) == K_BINARY) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_settop(L, 1);
    s_wrap_binary(L);
    return 1;
}

/* Set key and kind letter ('S', 'N', 'B') of the element at idx; pushes the key. */
static char s_set_key(lua_State *L, int idx, int pos) {
    char buf[DYN_AV_NUM_MAX];
    struct s_state *st = s_shared(L);
    switch (s_kind_of(L, st, idx)) {
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
        s_binary_bytes(L, idx);
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
    lua_pushvalue(L, lua_upvalueindex(kind ? s_set_uv(kind) : UV_MT_SET));
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
    struct s_state *st = s_shared(L);
    enum s_kind k;
    luaL_checkany(L, 2);
    k = s_kind_of(L, st, 2);
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
        s_binary_bytes(L, 2);
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
    struct s_state *st = s_shared(L);
    const char *t = NULL;
    luaL_checkany(L, 1);
    switch (s_kind_of(L, st, 1)) {
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
    struct s_state *st = s_shared(L);
    enum dyn_av_num_err why;
    o->bucket = 0;
    o->nan = 0;
    switch (s_kind_of(L, st, idx)) {
    case K_NUMBER:
        o->len = s_num_at(L, idx)->len;
        memcpy(o->text, s_num_at(L, idx)->text, o->len + 1);
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
    struct s_state *st = s_shared(L);
    int same = s_kind_of(L, st, 1) == K_NUMBER && s_kind_of(L, st, 2) == K_NUMBER &&
               s_num_at(L, 1)->len == s_num_at(L, 2)->len &&
               memcmp(s_num_at(L, 1)->text, s_num_at(L, 2)->text, s_num_at(L, 1)->len) == 0;
    lua_pushboolean(L, same);
    return 1;
}

static int l_num_tostring(lua_State *L) {
    const struct s_num *n = luaL_checkudata(L, 1, "dynamo.number");
    lua_pushlstring(L, n->text, n->len);
    return 1;
}

static int l_num_concat(lua_State *L) {
    struct s_state *st = s_shared(L);
    int i;
    for (i = 1; i <= 2; i++) {
        if (s_kind_of(L, st, i) == K_NUMBER) lua_pushlstring(L, s_num_at(L, i)->text, s_num_at(L, i)->len);
        else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) lua_pushvalue(L, i);
        else luaL_tolstring(L, i, NULL);
    }
    lua_concat(L, 2);
    return 1;
}

/* n:tonumber() -> integer when integral in int64 range, else nearest float. */
static int l_num_tonumber(lua_State *L) {
    const struct s_num *n = luaL_checkudata(L, 1, "dynamo.number");
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
    const struct s_num *n = luaL_checkudata(L, 1, "dynamo.number");
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
    s_push_number_obj(L, buf, len);
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
    struct s_state *st = s_shared(L);
    int same = 0;
    if (s_kind_of(L, st, 1) == K_BINARY && s_kind_of(L, st, 2) == K_BINARY) {
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
    {"encode_item", l_encode_item},
    {"encode_av", l_encode_av},
    {"decode_item", l_decode_item},
    {"decode_av", l_decode_av},
    {"json_encode", l_json_encode},
    {"encode_items", l_encode_items},
    {"encode_keys", l_encode_keys},
    {"page", l_page},
    {"page_next", l_page_next},
    {"page_fill", l_page_fill},
    {"page_result", l_page_result},
    {"key_id", l_key_id},
    {"index_items", l_index_items},
    {"prepare_keys", l_prepare_keys},
    {"merge_items", l_merge_items},
    {"batch_put_items", l_batch_put_items},
    {"batch_add_keys", l_batch_add_keys},
    {"batch_items", l_batch_items},
    {"json_decode", l_json_decode},
    {"marshal", l_marshal},
    {"marshal_value", l_marshal_value},
    {"unmarshal", l_unmarshal},
    {"unmarshal_value", l_unmarshal_value},
    {"number", l_number},
    {"number_text", l_number_text},
    {"binary", l_binary},
    {"set", l_set},
    {"set_key", l_set_key},
    {"list", l_list},
    {"map", l_map},
    {"as_item", l_as_item},
    {"as_av", l_as_av},
    {"type_of", l_type_of},
    {NULL, NULL},
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

/* Pushes the upvalue set, whose slots start at stack index base. */
static void s_push_upvalues(lua_State *L, int base) {
    int i;
    for (i = 0; i < UV_COUNT; i++) lua_pushvalue(L, base + i);
}

/* Adds funcs (with the shared upvalues) to the table at idx. */
static void s_setfuncs(lua_State *L, int idx, const luaL_Reg *funcs, int base) {
    lua_pushvalue(L, idx);
    s_push_upvalues(L, base);
    luaL_setfuncs(L, funcs, UV_COUNT);
    lua_pop(L, 1);
}

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
    if (funcs) s_setfuncs(L, lua_gettop(L), funcs, base);
    lua_pop(L, 1);
}

void ldynamo_open_codec(lua_State *L) {
    int mod = lua_gettop(L), base = mod + 1, i;
    struct s_state *st = s_state_new(L); /* UV_STATE */
    /* In upvalue order, from UV_MT_NUMBER. */
    static const char *names[] = {"dynamo.number", "dynamo.binary", "dynamo.set",     "dynamo.set_SS", "dynamo.set_NS",
                                  "dynamo.set_BS", "dynamo.list",   "dynamo.map",     "dynamo.as_item", "dynamo.as_av"};
    const int nmt = (int)(sizeof names / sizeof names[0]);
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
    for (i = 0; i < nmt; i++) luaL_newmetatable(L, names[i]); /* UV_MT_NUMBER .. UV_MT_AV */
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

    s_setfuncs(L, mod, s_funcs, base);
    s_setfuncs(L, base + UV_MT_NUMBER - 1, s_number_meta, base);
    s_methods(L, base + UV_MT_NUMBER - 1, s_number_methods, base);
    s_setfuncs(L, base + UV_MT_BINARY - 1, s_binary_meta, base);
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
    lua_createtable(L, 0, nmt);
    for (i = 0; i < nmt; i++) {
        lua_pushvalue(L, base + UV_MT_NUMBER - 1 + i);
        lua_setfield(L, -2, names[i] + 7); /* without "dynamo." */
    }
    lua_setfield(L, mod, "_metatables");
    s_push_upvalues(L, base);
    lua_pushcclosure(L, l_decode_slice, UV_COUNT);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &s_decode_slice_key);
    s_open_pages(L, base);
    /* The state is kept alive by the closures' upvalues. */
    lua_settop(L, mod);
}
