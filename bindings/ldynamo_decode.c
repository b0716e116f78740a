/*
 * dynamo.core: the decoder. Reads DynamoDB JSON into Lua values: AV text
 * into native values (decode_item, decode_av), plain JSON with the items of
 * a response unmarshalled on the way (json_decode, ldynamo_push_json), and
 * AV form held in Lua tables (unmarshal).
 *
 *   decode_item(json)           -> native item table
 *   decode_av(json)             -> native value of one AttributeValue
 *   json_decode(text [, unmarshal]) -> plain Lua value (see codec_member_mode)
 *   unmarshal(av_map [, root]) / unmarshal_value(av [, root]) -> native
 *
 * Text errors read "json: <what> at byte N" (N 1-based); unmarshal errors
 * name the path, as the encoder's do. The reader's entry points
 * (codec_read_init, codec_dec_av_map, codec_dec_plain) also serve the page
 * reader (ldynamo_page.c) and marshal (ldynamo_encode.c).
 */
#include "ldynamo_codec.h"

#define NAME_MAX_LEN 32 /* longer member names are not kept in the name slots */
#define ITEMS_HINT_MAX 1024 /* a size hint, not a limit: a bigger array still grows */

/* ---- JSON / AV reader -> Lua ----------------------------------------- */

int codec_read_fail_at(struct codec_read *d, const char *at, const char *what) {
    dyn_json_fail(&d->r, at, what);
    codec_release(d->st);
    return luaL_error(d->L, "json: %s at byte %d", d->r.err, (int)d->r.err_pos + 1);
}

int codec_read_fail(struct codec_read *d) {
    codec_release(d->st);
    return luaL_error(d->L, "json: %s at byte %d", d->r.err, (int)d->r.err_pos + 1);
}

int codec_read_oom(struct codec_read *d) {
    codec_release(d->st);
    return luaL_error(d->L, "not enough memory");
}

char codec_peek_ws(struct codec_read *d) {
    d->r.p = dyn_json_skip_ws(d->r.p, d->r.end);
    return d->r.p < d->r.end ? *d->r.p : 0;
}

/* One more container open; the error points at its opening byte, before p. */
static void s_enter(struct codec_read *d) {
    if (++d->depth > DYN_JSON_MAX_DEPTH || !lua_checkstack(d->L, 8))
        codec_read_fail_at(d, d->r.p - 1, "nesting too deep");
}

/* Pushes a member name, from the document's name slots when it is there. */
static void s_push_name(struct codec_read *d, const struct dyn_json_token *t) {
    const char *p = t->text.ptr;
    size_t n = t->text.len;
    unsigned h;
    uint32_t a, b;
    if (t->escaped || n > NAME_MAX_LEN) {
        codec_push_tok_string(d, t);
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
    default: codec_push_number(L, buf, len); break;
    }
    return DYN_OK;
}

static void s_dec_n_token(struct codec_read *d, const struct dyn_json_token *t) {
    enum dyn_av_num_err why;
    dyn_slice s = codec_tok_string(d, t);
    if (s_push_n(d->L, s, &why) != DYN_OK) codec_read_fail_at(d, s_tok_at(t), "invalid N value");
}

static void s_dec_b_token(struct codec_read *d, const struct dyn_json_token *t) {
    struct dyn_buf *sc = &d->st->scratch;
    dyn_slice s = t->text;
    size_t start = 0;
    int rc;
    dyn_buf_reset(sc);
    if (t->escaped) {
        /* Unescaped text goes first in scratch and the bytes after it: room
           for both is made first, so the text does not move while read. */
        if (dyn_json_unescape(t->text, sc) != DYN_OK || dyn_buf_reserve(sc, sc->len / 4 * 3 + 4) != DYN_OK)
            codec_read_oom(d);
        s = dyn_slice_make(sc->ptr, sc->len);
        start = sc->len;
    }
    rc = dyn_base64_decode(s, sc);
    if (rc == DYN_ENOMEM) codec_read_oom(d);
    if (rc != DYN_OK) codec_read_fail_at(d, s_tok_at(t), "invalid base64 in B value");
    lua_pushlstring(d->L, sc->len ? sc->ptr + start : "", sc->len - start);
    codec_wrap_binary(d->L);
}

static void s_dec_av(struct codec_read *d);

/* Consumes the '}' that closes an AttributeValue, or raises. */
static inline void s_av_close(struct codec_read *d) {
    if (codec_peek(d) == '}') {
        d->r.p++;
        return;
    }
    codec_read_fail_at(d, d->r.p,
                   d->r.p >= d->r.end ? "unexpected end of input"
                   : *d->r.p == ','   ? "AttributeValue with more than one member"
                                      : "expected '}'");
}

/*
 * s_dec_av with the commonest values, compact {"S":"..."} and {"N":"..."},
 * read here, inline; anything else (errors included) is left to s_dec_av.
 */
static inline void s_dec_av_fast(struct codec_read *d) {
    const char *p = d->r.p;
    struct dyn_json_token t;
    if (d->r.end - p >= 6 && p[0] == '{' && p[1] == '"' && (p[2] == 'S' || p[2] == 'N') && p[3] == '"' &&
        p[4] == ':' && p[5] == '"') {
        d->r.p = p + 5;
        if (dyn_json_scan_string_fast(&d->r, &t) != DYN_OK) codec_read_fail(d);
        if (p[2] == 'S') codec_push_tok_string(d, &t);
        else s_dec_n_token(d, &t);
        s_av_close(d);
        return;
    }
    s_dec_av(d);
}

/* Reads an AV map (name -> AttributeValue) into a new table. */
static void s_dec_av_map(struct codec_read *d, int tag_empty) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    int n = 0, *hint = &d->st->hint[d->avdepth < HINT_LEVELS ? d->avdepth : HINT_LEVELS - 1];
    codec_expect(d, '{', "expected an object of AttributeValues");
    s_enter(d);
    /* Sized like the last map at this depth: no rehash for same-shaped items. */
    lua_createtable(L, 0, *hint);
    d->avdepth++;
    if (codec_peek(d) == '}') {
        d->r.p++;
    } else {
        do {
            codec_string_tok(d, &t, "expected a member name");
            s_push_name(d, &t);
            codec_expect(d, ':', "expected ':'");
            s_dec_av_fast(d);
            lua_rawset(L, -3);
            n++;
        } while (codec_more(d, '}', "expected ',' or '}'"));
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
static void s_dec_set(struct codec_read *d, char kind) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    lua_Integer i = 0;
    codec_expect(d, '[', "expected an array for a set");
    lua_createtable(L, 4, 0);
    if (codec_peek(d) == ']') {
        d->r.p++;
    } else {
        do {
            codec_string_tok(d, &t, "set elements must be strings");
            if (kind == 'S') codec_push_tok_string(d, &t);
            else if (kind == 'N') s_dec_n_token(d, &t);
            else s_dec_b_token(d, &t);
            lua_rawseti(L, -2, ++i);
        } while (codec_more(d, ']', "expected ',' or ']'"));
    }
    lua_pushvalue(L, lua_upvalueindex(codec_set_uv(kind)));
    lua_setmetatable(L, -2);
}

/* Consumes the literal `word` at the current position, or raises. */
static void s_literal(struct codec_read *d, const char *word, size_t n, const char *what) {
    codec_peek(d);
    if ((size_t)(d->r.end - d->r.p) < n || memcmp(d->r.p, word, n) != 0) codec_read_fail_at(d, d->r.p, what);
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
static void s_dec_av(struct codec_read *d) {
    lua_State *L = d->L;
    struct dyn_json_token t, ty;
    enum s_avt avt = AVT_NONE;
    const char *p;
    codec_expect(d, '{', "expected an AttributeValue object");
    p = d->r.p;
    /* Fast path for the compact form servers send: {"S": where a known type
       name (capitals: no escape can hide in it) is closed by '"' and ':'. */
    if (d->r.end - p >= 7 && p[0] == '"') {
        size_t kn = p[2] == '"' ? 1 : p[3] == '"' ? 2 : p[5] == '"' ? 4 : 0;
        if (kn && p[kn + 2] == ':' && (avt = s_av_type(p + 1, kn)) != AVT_NONE) d->r.p = p + kn + 3;
    }
    if (avt == AVT_NONE) {
        codec_string_tok(d, &ty, "expected an AttributeValue type");
        codec_expect(d, ':', "expected ':'");
        avt = s_av_type(ty.text.ptr, ty.text.len);
    }
    switch (avt) {
    case AVT_S:
        codec_string_tok(d, &t, "S value must be a string");
        codec_push_tok_string(d, &t);
        break;
    case AVT_N:
        codec_string_tok(d, &t, "N value must be a string");
        s_dec_n_token(d, &t);
        break;
    case AVT_M: s_dec_av_map(d, 1); break;
    case AVT_L: {
        lua_Integer i = 0;
        codec_expect(d, '[', "L value must be an array");
        s_enter(d);
        lua_createtable(L, 4, 0);
        if (codec_peek(d) == ']') {
            d->r.p++;
        } else {
            do {
                s_dec_av_fast(d);
                lua_rawseti(L, -2, ++i);
            } while (codec_more(d, ']', "expected ',' or ']'"));
        }
        d->depth--;
        lua_pushvalue(L, lua_upvalueindex(UV_MT_LIST));
        lua_setmetatable(L, -2);
        break;
    }
    case AVT_B:
        codec_string_tok(d, &t, "B value must be a string");
        s_dec_b_token(d, &t);
        break;
    case AVT_BOOL:
        if (codec_peek(d) == 't') {
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
    default: codec_read_fail_at(d, s_tok_at(&ty), "unknown AttributeValue type");
    }
    s_av_close(d);
}

enum codec_mode codec_member_mode(enum codec_mode parent, dyn_slice key) {
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
static void s_push_json_number(struct codec_read *d, const struct dyn_json_token *t) {
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
    if (dyn_av_parse_double(t->text, &d->st->alloc, &dv) != DYN_OK) codec_read_oom(d);
    lua_pushnumber(L, (lua_Number)dv);
}

/* Reads a plain JSON value and pushes it. */
static void s_dec_plain(struct codec_read *d, enum codec_mode mode) {
    lua_State *L = d->L;
    struct dyn_json_token t;
    switch (codec_peek(d)) {
    case '"':
        if (dyn_json_scan_string_fast(&d->r, &t) != DYN_OK) codec_read_fail(d);
        codec_push_tok_string(d, &t);
        return;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if (dyn_json_scan_number(&d->r, &t) != DYN_OK) codec_read_fail(d);
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
        if (codec_peek(d) == '}') {
            d->r.p++;
        } else {
            do {
                enum codec_mode child;
                codec_string_tok(d, &t, "expected a member name");
                child = codec_member_mode(mode, t.text);
                codec_push_tok_string(d, &t);
                codec_expect(d, ':', "expected ':'");
                s_dec_plain(d, child);
                lua_rawset(L, -3);
            } while (codec_more(d, '}', "expected ',' or '}'"));
        }
        d->depth--;
        return;
    case '[': {
        lua_Integer i = 0;
        enum codec_mode child = mode == M_AVMAP_ARRAY ? M_AVMAP : mode == M_RESPONSES ? M_ITEM_HOLDER : M_PLAIN;
        d->r.p++;
        s_enter(d);
        lua_createtable(L, child == M_AVMAP ? d->st->items_hint : 4, 0);
        if (codec_peek(d) == ']') {
            d->r.p++;
        } else {
            do {
                s_dec_plain(d, child);
                lua_rawseti(L, -2, ++i);
            } while (codec_more(d, ']', "expected ',' or ']'"));
        }
        d->depth--;
        if (child == M_AVMAP) d->st->items_hint = i < ITEMS_HINT_MAX ? (int)i : ITEMS_HINT_MAX;
        lua_pushvalue(L, lua_upvalueindex(UV_MT_LIST));
        lua_setmetatable(L, -2);
        return;
    }
    case 0: codec_read_fail_at(d, d->r.p, "unexpected end of input"); return;
    default: codec_read_fail_at(d, d->r.p, "unexpected character");
    }
}

void codec_read_init(struct codec_read *d, lua_State *L, struct codec_state *st, dyn_slice text) {
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

void codec_read_end(struct codec_read *d) {
    if (codec_peek(d) || d->r.p != d->r.end) codec_read_fail_at(d, d->r.p, "unexpected data after the document");
}

/* The readers for the page reader and marshal. The recursion above stays
 * among static functions, which the compiler inlines into one another more
 * freely than functions other files call. */
void codec_dec_av_map(struct codec_read *d, int tag_empty) { s_dec_av_map(d, tag_empty); }
void codec_dec_plain(struct codec_read *d, enum codec_mode mode) { s_dec_plain(d, mode); }

/* ---- Lua AV tables -> native (unmarshal) ------------------------------ */

static void s_unm_av(struct codec_walk *w, int idx);

/* Pushes the canonical text's native value; raises with the path. */
static void s_unm_n(struct codec_walk *w, int idx) {
    enum dyn_av_num_err why = DYN_AV_NUM_SYNTAX;
    size_t n;
    const char *s;
    if (lua_type(w->L, idx) == LUA_TNUMBER) {
        lua_pushvalue(w->L, idx);
        return;
    }
    if (lua_type(w->L, idx) != LUA_TSTRING) codec_fail(w, "N value must be a string, got %s", luaL_typename(w->L, idx));
    s = lua_tolstring(w->L, idx, &n);
    if (s_push_n(w->L, dyn_slice_make(s, n), &why) != DYN_OK)
        codec_fail(w, "invalid N value: %s", codec_num_err_text(why));
}

static void s_unm_b(struct codec_walk *w, int idx) {
    lua_State *L = w->L;
    size_t n;
    const char *s;
    int rc;
    if (codec_kind_of(L, w->st, idx) == K_BINARY) {
        lua_pushvalue(L, idx);
        return;
    }
    if (lua_type(L, idx) != LUA_TSTRING)
        codec_fail(w, "B value must be a base64 string, got %s", luaL_typename(L, idx));
    s = lua_tolstring(L, idx, &n);
    dyn_buf_reset(&w->st->scratch);
    rc = dyn_base64_decode(dyn_slice_make(s, n), &w->st->scratch);
    if (rc == DYN_ENOMEM) codec_oom(w);
    if (rc != DYN_OK) codec_fail(w, "invalid base64 in B value");
    lua_pushlstring(L, w->st->scratch.len ? w->st->scratch.ptr : "", w->st->scratch.len);
    codec_wrap_binary(L);
}

/* Pushes the native table of an AV map (a table of name -> AV) at idx. */
static void s_unm_map(struct codec_walk *w, int idx, int tag_empty) {
    lua_State *L = w->L;
    int n = 0, out;
    if (lua_type(L, idx) != LUA_TTABLE)
        codec_fail(w, "expected a table of AttributeValues, got %s", luaL_typename(L, idx));
    if (!lua_checkstack(L, 8)) codec_fail(w, "nesting too deep");
    lua_createtable(L, 0, 8);
    out = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kn;
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING)
            codec_fail(w, "table key of type %s (map keys must be strings)", luaL_typename(L, -2));
        k = lua_tolstring(L, -2, &kn);
        codec_push_frame_key(w, k, kn);
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
static lua_Integer s_unm_array_len(struct codec_walk *w, int idx, const char *what) {
    lua_State *L = w->L;
    lua_Integer n;
    if (lua_type(L, idx) != LUA_TTABLE) codec_fail(w, "%s value must be an array, got %s", what, luaL_typename(L, idx));
    n = (lua_Integer)lua_rawlen(L, idx);
    return codec_check_sequence(w, idx, n);
}

/* Pushes the native value of the AV table at idx. */
static void s_unm_av(struct codec_walk *w, int idx) {
    lua_State *L = w->L;
    const char *k;
    size_t kn;
    int v;
    if (lua_type(L, idx) != LUA_TTABLE)
        codec_fail(w, "an AttributeValue is a table like {S = \"x\"}, got %s", luaL_typename(L, idx));
    lua_pushnil(L);
    if (!lua_next(L, idx)) codec_fail(w, "empty AttributeValue");
    if (lua_type(L, -2) != LUA_TSTRING) codec_fail(w, "unknown AttributeValue type");
    k = lua_tolstring(L, -2, &kn);
    v = lua_gettop(L);
    lua_pushvalue(L, -2);
    if (lua_next(L, idx)) codec_fail(w, "AttributeValue with more than one member");
    /* stack: key, value */
    if (kn == 1 && k[0] == 'S') {
        if (lua_type(L, v) != LUA_TSTRING) codec_fail(w, "S value must be a string, got %s", luaL_typename(L, v));
        lua_pushvalue(L, v);
    } else if (kn == 1 && k[0] == 'N') {
        s_unm_n(w, v);
    } else if (kn == 1 && k[0] == 'B') {
        s_unm_b(w, v);
    } else if (kn == 1 && k[0] == 'M') {
        s_unm_map(w, v, 1);
    } else if (kn == 1 && k[0] == 'L') {
        lua_Integer n = s_unm_array_len(w, v, "L"), i;
        if (!lua_checkstack(L, 8)) codec_fail(w, "nesting too deep");
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, v, i);
            codec_push_frame_index(w, i);
            s_unm_av(w, lua_gettop(L));
            w->nframes--;
            lua_rawseti(L, -3, i);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, lua_upvalueindex(UV_MT_LIST));
        lua_setmetatable(L, -2);
    } else if (kn == 4 && memcmp(k, "BOOL", 4) == 0) {
        if (lua_type(L, v) != LUA_TBOOLEAN) codec_fail(w, "BOOL value must be a boolean, got %s", luaL_typename(L, v));
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
            codec_push_frame_index(w, i);
            if (k[0] == 'S') {
                if (lua_type(L, e) != LUA_TSTRING) codec_fail(w, "SS elements must be strings");
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
        lua_pushvalue(L, lua_upvalueindex(codec_set_uv(k[0])));
        lua_setmetatable(L, -2);
    } else {
        codec_fail(w, "unknown AttributeValue type \"%s\"", k);
    }
    /* Leave only the result, in place of the key and value. */
    lua_replace(L, v - 1);
    lua_settop(L, v - 1);
}

/* ---- module functions ------------------------------------------------- */

/* The document readers behind the decode entry points. */
static void s_read_item(struct codec_read *d) { s_dec_av_map(d, 0); }
static void s_read_av(struct codec_read *d) { s_dec_av(d); }
static void s_read_plain(struct codec_read *d) { s_dec_plain(d, M_PLAIN); }
static void s_read_response(struct codec_read *d) { s_dec_plain(d, M_TOP); }

/* Reads the whole document `text` with `read` and returns its value; the
 * stack is first cut to the `nargs` arguments (which keep text alive). */
static int s_decode_entry(lua_State *L, dyn_slice text, int nargs, void (*read)(struct codec_read *)) {
    struct codec_state *st;
    int st_idx;
    struct codec_read d;
    lua_settop(L, nargs);
    st = codec_acquire(L, &st_idx);
    codec_read_init(&d, L, st, text);
    read(&d);
    codec_read_end(&d);
    codec_release(d.st);
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

/* Unmarshals argument 1 (an AV map, or one AV with `value`) with the root
 * name from argument 2 and returns the native value. */
static int s_unmarshal_entry(lua_State *L, int value) {
    struct codec_state *st;
    int st_idx;
    const char *root = luaL_optstring(L, 2, "value");
    struct codec_walk w;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = codec_acquire(L, &st_idx);
    codec_walk_init(&w, L, st, st_idx, root);
    if (value) s_unm_av(&w, 1);
    else s_unm_map(&w, 1, 0);
    codec_release(w.st);
    return 1;
}

/* core.unmarshal(av_map [, root]) -> native item. */
static int l_unmarshal(lua_State *L) { return s_unmarshal_entry(L, 0); }

/* core.unmarshal_value(av [, root]) -> native value. */
static int l_unmarshal_value(lua_State *L) { return s_unmarshal_entry(L, 1); }

static const luaL_Reg s_funcs[] = {
    {"decode_item", l_decode_item}, {"decode_av", l_decode_av},         {"json_decode", l_json_decode},
    {"unmarshal", l_unmarshal},     {"unmarshal_value", l_unmarshal_value}, {NULL, NULL},
};

void codec_open_decode(lua_State *L, int mod, int base) {
    codec_setfuncs(L, mod, s_funcs, base);
    codec_push_upvalues(L, base);
    lua_pushcclosure(L, l_decode_slice, UV_COUNT);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &s_decode_slice_key);
}
