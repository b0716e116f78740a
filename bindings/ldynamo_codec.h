/*
 * ldynamo_codec.h - what the codec files of dynamo.core share. Internal:
 * only bindings/ldynamo_{codec,values,encode,decode,page,records}.c include it.
 *
 *   ldynamo_codec.c    the shared state, error paths, registration (ldynamo_open_codec)
 *   ldynamo_values.c   the value types: NULL, number, binary, sets, list/map tags, as_item/as_av
 *   ldynamo_encode.c   Lua values -> AttributeValue JSON, plain JSON, marshal
 *   ldynamo_decode.c   JSON / AttributeValue text and AV tables -> Lua values
 *   ldynamo_page.c     dynamo.page: a Query or Scan response read a few items at a time
 *   ldynamo_records.c  keys and items for the batch engine (encode_items, key_id, ...)
 *
 * Upvalues. Every function and metamethod of these files is a closure over
 * the same UV_COUNT upvalues (the state userdata, the NULL userdata and the
 * value metatables), set by codec_setfuncs; so a function that pushes a
 * value type (codec_push_number, codec_wrap_binary, codec_set_uv) must be
 * called from one of them.
 *
 * Value types are recognised by metatable identity: the state caches the
 * metatables' addresses, so codec_kind_of costs one lua_getmetatable and a
 * pointer compare.
 *
 * Memory: output and scratch buffers belong to the state userdata, reused
 * across calls, so a Lua error raised mid-walk never leaks. A finalizer may
 * run codec functions while a call is under way (decoding allocates, and
 * allocation runs the GC); the state is then marked busy and the nested call
 * works on a temporary state of its own (codec_acquire). Every error path
 * releases the state before it raises (codec_fail, codec_read_fail_at); a
 * memory error raised by Lua itself mid-call leaves the shared state marked
 * busy: later calls stay correct, on temporary states, only slower.
 *
 * The helpers on hot paths (value kinds, output bytes, the reader's
 * scanner steps) are static inline here, so splitting the files costs no
 * call; the rest is hidden (not exported from core.so), so calls between
 * the files are direct.
 */
#ifndef LDYNAMO_CODEC_H
#define LDYNAMO_CODEC_H

#include <string.h>

#include "dynamo/av.h"
#include "dynamo/json.h"
#include "ldynamo.h"

#pragma GCC visibility push(hidden)

/* Upvalues shared by every function and metamethod of the codec. */
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

#define HINT_LEVELS 8
#define PERM_MAX 32   /* maps up to this size remember their key order */
#define KEY_CACHE 64  /* slots of the escaped-key cache */
#define KEY_RAW 24    /* longest key it holds */
#define NAME_SLOTS 64 /* a power of two */
#define OUT_KEEP (1u << 20) /* a larger output buffer is freed after use */

/* ---- the state ---------------------------------------------------------- */

/*
 * A map member already written to the output, waiting to be put in key
 * order: the key's bytes (anchored by the table) and where its text lies.
 */
struct codec_entry {
    const char *key;
    size_t len;
    size_t start, end;
};

/*
 * A map key already validated and written as JSON ("key":), found by the
 * address of the key's bytes. The key string is anchored in the state's
 * anchor table while it sits here, so no other string can take its address.
 */
struct codec_keyc {
    const char *ptr;
    unsigned char len, elen;
    char esc[KEY_RAW + 8];
};

/* The key order of the last map written at one nesting level. */
struct codec_perm {
    size_t n;
    const char *keys[PERM_MAX];    /* the keys in traversal order (anchored) */
    unsigned char order[PERM_MAX]; /* traversal positions, in key order */
};

/* The state userdata (upvalue UV_STATE); its user value is the anchor table. */
struct codec_state {
    struct dyn_allocator alloc;
    struct dyn_buf out;     /* encoder output */
    struct dyn_buf scratch; /* unescaped strings, base64, long numbers */
    struct codec_entry *entries;
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
    struct codec_perm perm[HINT_LEVELS];
    struct codec_keyc keys[KEY_CACHE];
    const void *null_ud, *mt_number, *mt_binary, *mt_set, *mt_ss, *mt_ns, *mt_bs, *mt_list, *mt_map, *mt_item,
        *mt_av;
};

static inline struct codec_state *codec_shared(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(UV_STATE)); }

/* A temporary state for a call made while the shared one is busy, pushed on the stack. */
struct codec_state *codec_acquire_temp(lua_State *L, const struct codec_state *shared, int *idx);

/*
 * The state for this call, with empty buffers: the shared one (*idx its
 * upvalue index), or when a call is already under way (a finalizer
 * re-entered us) a temporary one pushed on the stack (*idx its slot).
 * Pair with codec_release.
 */
static inline struct codec_state *codec_acquire(lua_State *L, int *idx) {
    struct codec_state *st = codec_shared(L);
    *idx = lua_upvalueindex(UV_STATE);
    if (st->busy) st = codec_acquire_temp(L, st, idx);
    st->busy = 1;
    dyn_buf_reset(&st->out);
    dyn_buf_reset(&st->scratch);
    st->nentries = 0;
    return st;
}

static inline void codec_release(struct codec_state *st) {
    st->busy = 0;
    if (st->out.cap > OUT_KEEP) dyn_buf_free(&st->out);
    if (st->scratch.cap > OUT_KEEP) dyn_buf_free(&st->scratch);
}

/* ---- value types (ldynamo_values.c) -------------------------------------- */

enum codec_kind {
    K_BAD,
    K_NIL,
    K_STRING,
    K_INT,
    K_FLOAT,
    K_BOOL,
    K_NULL,
    K_NUMBER,
    K_BINARY,
    K_SET, /* a set of no element type yet */
    K_SS,
    K_NS,
    K_BS,
    K_LIST,  /* tagged list */
    K_MAP,   /* tagged map */
    K_TABLE, /* untagged table: list or map by its keys */
    K_ITEM,  /* as_item wrapper */
    K_AV     /* as_av wrapper */
};

static inline enum codec_kind codec_kind_of(lua_State *L, const struct codec_state *st, int idx) {
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

/* A number object: canonical text, NUL-terminated. */
struct codec_num {
    unsigned short len;
    char text[1];
};

/* Canonical text of a number object at idx (known to be one). */
static inline const struct codec_num *codec_num_at(lua_State *L, int idx) { return lua_touserdata(L, idx); }

/* Bytes of the binary object at idx; the string stays pushed (anchor). */
static inline dyn_slice codec_binary_bytes(lua_State *L, int idx) {
    size_t n;
    const char *p;
    lua_getiuservalue(L, idx, 1);
    p = lua_tolstring(L, -1, &n);
    return dyn_slice_make(p ? p : "", p ? n : 0);
}

/* The upvalue of the set metatable for kind 'S', 'N' or 'B'. */
static inline int codec_set_uv(char kind) { return kind == 'S' ? UV_MT_SS : kind == 'N' ? UV_MT_NS : UV_MT_BS; }

/* Pushes a number object of canonical text[0..len). */
void codec_push_number(lua_State *L, const char *text, size_t len);
/* Pushes a binary object holding the string at the top (which it replaces). */
void codec_wrap_binary(lua_State *L);

/* ---- walks over Lua values (encoder, unmarshal) --------------------------- */

/* One step of the path shown in error messages: a map key or a list index. */
struct codec_frame {
    const char *key; /* NULL: index */
    size_t len;
    lua_Integer index;
};

/* What a walk over Lua values carries. */
struct codec_walk {
    lua_State *L;
    struct codec_state *st;
    int st_idx; /* where the state userdata is (its anchors) */
    struct dyn_buf *out;
    const char *root;
    int nframes;
    struct codec_frame path[PATH_MAX_FRAMES];
};

static inline void codec_walk_init(struct codec_walk *w, lua_State *L, struct codec_state *st, int st_idx,
                                   const char *root) {
    w->L = L;
    w->st = st;
    w->st_idx = st_idx;
    w->out = &st->out;
    w->root = root;
    w->nframes = 0;
}

/* Raises "<root><path>: <message>" (e.g. "item.address.geo[2]: ..."), after releasing the state. */
int codec_fail(struct codec_walk *w, const char *fmt, ...);
/* Raises "not enough memory", after releasing the state. */
int codec_oom(struct codec_walk *w);
/* Why a number cannot be stored, as a message. */
const char *codec_num_err_text(enum dyn_av_num_err why);

static inline void codec_push_frame_key(struct codec_walk *w, const char *k, size_t n) {
    struct codec_frame *f;
    if (w->nframes >= PATH_MAX_FRAMES) codec_fail(w, "nesting too deep");
    f = &w->path[w->nframes++];
    f->key = k;
    f->len = n;
}

static inline void codec_push_frame_index(struct codec_walk *w, lua_Integer i) {
    struct codec_frame *f;
    if (w->nframes >= PATH_MAX_FRAMES) codec_fail(w, "nesting too deep");
    f = &w->path[w->nframes++];
    f->key = NULL;
    f->index = i;
}

/* ---- output (ldynamo_encode.c) ------------------------------------------ */

/* Room for n more bytes of output (raises on a memory error). */
static inline char *codec_room(struct codec_walk *w, size_t n) {
    struct dyn_buf *o = w->out;
    if (o->cap - o->len <= n && dyn_buf_reserve(o, n) != DYN_OK) codec_oom(w);
    return o->ptr + o->len;
}

static inline void codec_put(struct codec_walk *w, const char *s, size_t n) {
    memcpy(codec_room(w, n), s, n);
    w->out->len += n;
}

#define CODEC_PUT_LIT(w, s) codec_put((w), (s), sizeof(s) - 1)

static inline void codec_putc(struct codec_walk *w, char c) {
    *codec_room(w, 1) = c;
    w->out->len++;
}

static inline void codec_put_int(struct codec_walk *w, lua_Integer v) {
    char *p = codec_room(w, 24);
    w->out->len += dyn_av_format_int((int64_t)v, p);
}

/* Writes a string value as JSON; raises on invalid UTF-8. */
void codec_put_string(struct codec_walk *w, const char *s, size_t n);
/* Checks that the table at idx holds exactly the keys 1..n and returns n; raises with the reason. */
lua_Integer codec_check_sequence(struct codec_walk *w, int idx, lua_Integer n);
/* Writes the item at idx (map-shaped) as an AV map. */
void codec_enc_item(struct codec_walk *w, int idx);
/* Writes one AttributeValue for the Lua value at idx (absolute). */
void codec_enc_av(struct codec_walk *w, int idx, int level);
/* Pushes the output buffer as a string and releases the state; returns 1. */
int codec_finish_out(lua_State *L, struct codec_state *st);

/* ---- the reader (ldynamo_decode.c) ---------------------------------------- */

/*
 * The decoders are recursive descent over the json.h scanner: they know
 * the shape they expect (an AttributeValue is a one-member object), so
 * they skip the pull reader's state machine.
 */
struct codec_read {
    lua_State *L;
    struct codec_state *st;
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

/* Where a plain JSON value sits in a response, for the unmarshal mode. */
enum codec_mode {
    M_PLAIN,
    M_TOP,         /* the response object */
    M_AVMAP,       /* an item: AV map */
    M_AVMAP_ARRAY, /* an array of items */
    M_RESPONSES,   /* "Responses": table -> items, or [ {Item = ...} ] */
    M_ITEM_HOLDER  /* an object whose "Item" is an item */
};

/* Pushes the name slots: the decoded value goes above them, at the top. */
void codec_read_init(struct codec_read *d, lua_State *L, struct codec_state *st, dyn_slice text);
/* Only whitespace may follow the document. */
void codec_read_end(struct codec_read *d);
/* Raise "json: <what> at byte N" (at: where), the error the scanner recorded, or a memory error. */
int codec_read_fail_at(struct codec_read *d, const char *at, const char *what);
int codec_read_fail(struct codec_read *d);
int codec_read_oom(struct codec_read *d);
/* codec_peek when whitespace may follow: kept out of line, compact JSON has none. */
char codec_peek_ws(struct codec_read *d);
/* Reads an AV map (name -> AttributeValue) into a new table (tagged as a map when empty and tag_empty). */
void codec_dec_av_map(struct codec_read *d, int tag_empty);
/* Reads a plain JSON value and pushes it; mode says where AV maps sit. */
void codec_dec_plain(struct codec_read *d, enum codec_mode mode);
/* The mode of a member `key` of an object read in mode `parent`. */
enum codec_mode codec_member_mode(enum codec_mode parent, dyn_slice key);

/* Skips whitespace; returns the next byte, or 0 at the end. */
static inline char codec_peek(struct codec_read *d) {
    if (d->r.p < d->r.end && (unsigned char)*d->r.p > ' ') return *d->r.p;
    return codec_peek_ws(d);
}

/* Consumes c after whitespace, or raises `what` (or end of input). */
static inline void codec_expect(struct codec_read *d, char c, const char *what) {
    if (codec_peek(d) != c) codec_read_fail_at(d, d->r.p, d->r.p < d->r.end ? what : "unexpected end of input");
    d->r.p++;
}

/* Reads a string at the current position (after whitespace). */
static inline void codec_string_tok(struct codec_read *d, struct dyn_json_token *t, const char *what) {
    if (codec_peek(d) != '"') codec_read_fail_at(d, d->r.p, d->r.p < d->r.end ? what : "unexpected end of input");
    if (dyn_json_scan_string_fast(&d->r, t) != DYN_OK) codec_read_fail(d);
}

/* After a member or element: 1 when another follows (',' read), 0 at `close`. */
static inline int codec_more(struct codec_read *d, char close, const char *what) {
    char c = codec_peek(d);
    if (c == ',') {
        d->r.p++;
        return 1;
    }
    if (c == close) {
        d->r.p++;
        return 0;
    }
    return codec_read_fail_at(d, d->r.p, d->r.p < d->r.end ? what : "unexpected end of input");
}

/* The value of a string token (unescaped into scratch when needed). */
static inline dyn_slice codec_tok_string(struct codec_read *d, const struct dyn_json_token *t) {
    if (!t->escaped) return t->text;
    dyn_buf_reset(&d->st->scratch);
    if (dyn_json_unescape(t->text, &d->st->scratch) != DYN_OK) codec_read_oom(d);
    return dyn_buf_slice(&d->st->scratch);
}

static inline void codec_push_tok_string(struct codec_read *d, const struct dyn_json_token *t) {
    dyn_slice s = codec_tok_string(d, t);
    lua_pushlstring(d->L, s.ptr, s.len);
}

/* ---- registration (ldynamo_codec.c) ----------------------------------------- */

/* Pushes the UV_COUNT upvalues, whose slots start at stack index base. */
void codec_push_upvalues(lua_State *L, int base);
/* Adds funcs, closures over the upvalues at base, to the table at idx. */
void codec_setfuncs(lua_State *L, int idx, const luaL_Reg *funcs, int base);

/* Pushes the NULL userdata and the metatables, in upvalue order from UV_NULL. */
void codec_push_types(lua_State *L);

/* Each adds its functions to the module table at mod, over the upvalues at base. */
void codec_open_values(lua_State *L, int mod, int base);
void codec_open_encode(lua_State *L, int mod, int base);
void codec_open_decode(lua_State *L, int mod, int base);
void codec_open_page(lua_State *L, int mod, int base);
void codec_open_records(lua_State *L, int mod, int base);

#pragma GCC visibility pop

#endif
