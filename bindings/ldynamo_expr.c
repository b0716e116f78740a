/*
 * dynamo.core.expr: compiled DynamoDB expressions (see core/include/dynamo/expr.h).
 *
 * A compiled expression is a `dynamo.Expr` userdata boxing a struct dyn_expr.
 * Its user value is a table: entries 1..n hold its value operands (the name
 * string, or the literal's Lua value), entries n+1..n+m its path segments as
 * Lua strings, so a render pushes them without creating strings.
 *
 * Functions (in core.expr; render_request is also core.render_request):
 *   condition(path, op, size_of, operand...)   -> expr | nil, msg
 *   projection(path...)                       -> expr | nil, msg
 *   update({ {action, path, operand}, ... })   -> expr | nil, msg
 *   combine("AND"|"OR", x, y), negate(x)       -> expr | nil, msg
 *   template(x), kind(x), segments(x), value_names(x)
 *   escape(name), normalize_path(text)         -> string | nil, msg
 *   render_request{ key_condition=, filter=, condition=, update=, projection=, data= }
 *                                              -> table | nil, msg
 *   raising_render(raise)                      -> a render_request that calls raise(msg)
 *                                                 instead of returning nil, msg
 * An operand is a value name (string) or a literal: a table { value = v, text = "shown as" }.
 * Wherever an expr is expected, a table whose field _c holds one works too.
 * Memory errors raise; bad input returns nil and a message.
 */
#include "ldynamo.h"

#include "dynamo/expr.h"

#define EXPR_MT "dynamo.Expr"
#define STATE_MT "dynamo.ExprRenderState"
#define BUF_MT "dynamo.ExprBuffer"

struct l_expr {
    struct dyn_expr *e;
};

/*
 * The reusable render scratch: one per render_request closure, and a fresh
 * one for a nested render. It also remembers its last successful render:
 * rendering is a pure function of the compiled expressions and the type and
 * element count of each operand, so when both repeat, the names and value
 * references in `r` are still right and the strings kept in the state's user
 * value (slots 1-5: the expressions, which also keeps their addresses from
 * being reused; 6-10: the strings) are reused.
 */
struct l_sig {
    int type;
    size_t count;
};

struct l_state {
    struct dyn_expr_renderer r;
    struct dyn_expr_value_info *infos;
    struct l_sig *sig; /* the last render's operand shapes, infos_cap entries */
    size_t infos_cap, n_sig;
    const struct dyn_expr *last[DYN_EXPR_SLOTS];
    size_t names_subst; /* ExpressionAttributeNames bytes of the last render */
    int busy, valid;
};

/*
 * Upvalues of render_request. Keys and the first placeholder strings are
 * upvalues of their own: pushing an upvalue is cheaper than any table lookup,
 * and a prebuilt string spares lua_getfield's strlen and string-cache strcmp.
 */
#define UV_STATE lua_upvalueindex(1)
#define UV_CACHE lua_upvalueindex(2) /* placeholders past the first N_PH: 2i+1 "#xxx", 2i+2 ":xxx" */
#define UV_CORE lua_upvalueindex(3)  /* the module table, for type_of */
#define UV_MT lua_upvalueindex(4)    /* the dynamo.Expr metatable */
#define UV_RAISE lua_upvalueindex(5) /* nil: return nil, msg; else raise by calling it with msg */
#define UV_KEY(k) lua_upvalueindex(5 + (k))
#define N_PH 48
#define UV_PH(prefix, i) lua_upvalueindex(5 + K_COUNT + 1 + ((prefix) == '#' ? 0 : N_PH) + (int)(i))
#define N_UPVALUES (5 + K_COUNT + 2 * N_PH)

static const char *const s_slot_fields[DYN_EXPR_SLOTS] = {"key_condition", "filter", "condition", "update",
                                                           "projection"};

/* Keys render_request uses, as upvalue strings: 1-5 the slot fields, then these. */
enum { K_DATA = 6, K_C, K_RESULT, K_NAMES = K_RESULT + DYN_EXPR_SLOTS, K_VALUES, K_COUNT = K_VALUES };

static const char *const s_actions[DYN_EXPR_ACTION_COUNT + 1] = {
    "update", "set_if_not_exists", "increment", "decrement", "append", "prepend", "add", "delete", "remove", NULL,
};

/* Userdata (or table with _c) at idx -> the compiled expression, or NULL. */
static struct dyn_expr *s_test(lua_State *L, int idx) {
    struct l_expr *x;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_getfield(L, idx, "_c");
        x = luaL_testudata(L, -1, EXPR_MT);
        lua_pop(L, 1); /* the table keeps the userdata alive */
    } else {
        x = luaL_testudata(L, idx, EXPR_MT);
    }
    return x ? x->e : NULL;
}

/* As s_test, raising on anything else. */
static struct dyn_expr *s_check(lua_State *L, int idx) {
    struct dyn_expr *e = s_test(L, idx);
    if (!e) luaL_typeerror(L, idx, "expression");
    return e;
}

/* Pushes the user value table of the expression at idx. */
static void s_push_uv(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_getfield(L, idx, "_c");
        lua_getiuservalue(L, -1, 1);
        lua_remove(L, -2);
    } else {
        lua_getiuservalue(L, idx, 1);
    }
}

static int s_expr_gc(lua_State *L) {
    struct l_expr *x = luaL_checkudata(L, 1, EXPR_MT);
    dyn_expr_free(x->e);
    x->e = NULL;
    return 0;
}

static int s_buf_gc(lua_State *L) {
    dyn_buf_free(luaL_checkudata(L, 1, BUF_MT));
    return 0;
}

/* A dyn_buf owned by a userdata on the stack, so a raise cannot leak it. */
static struct dyn_buf *s_newbuf(lua_State *L) {
    struct dyn_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    dyn_buf_init(b, dyn_default_allocator());
    luaL_setmetatable(L, BUF_MT);
    return b;
}

static int s_push_fail(lua_State *L, int rc, const struct dyn_buf *err) {
    if (rc == DYN_ENOMEM) return luaL_error(L, "not enough memory");
    lua_pushnil(L);
    if (err->len)
        lua_pushlstring(L, err->ptr, err->len);
    else
        lua_pushstring(L, dyn_status_str(rc));
    return 2;
}

/* An empty box for a new expression: made before the expression exists, so a
 * raise later cannot leak it (as liolib's newprefile). */
static struct l_expr *s_newbox(lua_State *L) {
    struct l_expr *x = lua_newuserdatauv(L, sizeof *x, 1);
    x->e = NULL;
    luaL_setmetatable(L, EXPR_MT);
    return x;
}

/*
 * Gives the filled box at `box` its user value: operand values from
 * value_of(i) (pushed by the callback), then the segment strings.
 */
typedef void (*s_value_fn)(lua_State *L, void *ctx, size_t i);

static void s_fill(lua_State *L, int box, s_value_fn value_of, void *ctx) {
    const struct dyn_expr *e = ((struct l_expr *)lua_touserdata(L, box))->e;
    size_t i, nv = dyn_expr_value_count(e), ns = dyn_expr_segment_count(e);
    lua_createtable(L, (int)(nv + ns), 0);
    for (i = 0; i < nv; i++) {
        value_of(L, ctx, i);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    for (i = 0; i < ns; i++) {
        dyn_slice seg = dyn_expr_segment(e, i);
        lua_pushlstring(L, seg.ptr, seg.len);
        lua_rawseti(L, -2, (lua_Integer)(nv + i + 1));
    }
    lua_setiuservalue(L, box, 1);
    lua_pushvalue(L, box);
}

/*
 * Reads operand arguments: a string is a value name; a table { value =, text = }
 * a literal. Operand i's Lua value (name or literal value) is at args + i.
 */
static int s_read_operand(lua_State *L, int idx, struct dyn_expr_operand *op) {
    size_t n;
    const char *p;
    if (lua_type(L, idx) == LUA_TSTRING) {
        p = lua_tolstring(L, idx, &n);
        op->literal = 0;
        op->text = dyn_slice_make(p, n);
        return 1;
    }
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    lua_getfield(L, idx, "text");
    p = lua_tolstring(L, -1, &n);
    lua_pop(L, 1); /* the literal table keeps the string alive */
    if (!p) return 0;
    op->literal = 1;
    op->text = dyn_slice_make(p, n);
    return 1;
}

/* Pushes the Lua value of operand `op` (at stack idx): the name, or the literal's value. */
static void s_push_operand_value(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TTABLE)
        lua_getfield(L, idx, "value");
    else
        lua_pushvalue(L, idx);
}

/* Operands of a new expression are numbered in order of first appearance,
 * names de-duplicated: walk the arguments again and map each to its number. */
struct s_args_ctx {
    int first, count; /* stack positions of the operand arguments */
    const struct dyn_expr *e;
};

static void s_value_from_args(lua_State *L, void *vctx, size_t i) {
    struct s_args_ctx *c = vctx;
    struct dyn_expr_operand want = dyn_expr_value(c->e, i), op;
    int k, lit = 0;
    /* literal i is the (number of literals before it)-th literal argument */
    size_t j, lit_before = 0;
    for (j = 0; j < i; j++)
        if (dyn_expr_value(c->e, j).literal) lit_before++;
    for (k = 0; k < c->count; k++) {
        int idx = c->first + k;
        if (!s_read_operand(L, idx, &op)) continue;
        if (want.literal && op.literal) {
            if ((size_t)lit++ == lit_before) {
                s_push_operand_value(L, idx);
                return;
            }
        } else if (!want.literal && !op.literal && dyn_slice_eq(want.text, op.text)) {
            lua_pushvalue(L, idx);
            return;
        }
    }
    lua_pushnil(L); /* not reached: every operand came from an argument */
}

/* expr.condition(path, op, size_of, operand...) */
static int l_condition(lua_State *L) {
    dyn_slice path = ldynamo_checkslice(L, 1), ops = ldynamo_checkslice(L, 2);
    int size_of = lua_toboolean(L, 3), top = lua_gettop(L), n = top > 3 ? top - 3 : 0, i, op, rc, box;
    struct dyn_expr_operand operands[DYN_EXPR_MAX_IN];
    struct dyn_buf *err;
    struct l_expr *x;
    struct s_args_ctx ctx;
    op = dyn_expr_op_parse(ops);
    if (op < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid operator \"%s\", choices are =, <>, <, <=, >, >=, IN, BETWEEN, begins_with, "
                           "contains, attribute_exists, attribute_not_exists, attribute_type", ops.ptr);
        return 2;
    }
    if (n > DYN_EXPR_MAX_IN) {
        lua_pushnil(L);
        lua_pushfstring(L, "operator %s takes at most %d values, got %d", ops.ptr, DYN_EXPR_MAX_IN, n);
        return 2;
    }
    for (i = 0; i < n; i++)
        if (!s_read_operand(L, 4 + i, &operands[i])) return luaL_argerror(L, 4 + i, "value name or literal expected");
    err = s_newbuf(L);
    x = s_newbox(L);
    box = lua_gettop(L);
    rc = dyn_expr_condition_new(dyn_default_allocator(), op, path, size_of, operands, (size_t)n, &x->e, err);
    if (rc) return s_push_fail(L, rc, err);
    ctx.first = 4;
    ctx.count = n;
    ctx.e = x->e;
    s_fill(L, box, s_value_from_args, &ctx);
    return 1;
}

static void s_no_values(lua_State *L, void *ctx, size_t i) {
    (void)ctx;
    (void)i;
    lua_pushnil(L);
}

/* expr.projection(path...) */
static int l_projection(lua_State *L) {
    int n = lua_gettop(L), i, rc, box;
    dyn_slice *paths;
    struct dyn_buf *err;
    struct l_expr *x;
    paths = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *paths, 0);
    for (i = 0; i < n; i++) paths[i] = ldynamo_checkslice(L, i + 1);
    err = s_newbuf(L);
    x = s_newbox(L);
    box = lua_gettop(L);
    rc = dyn_expr_projection_new(dyn_default_allocator(), paths, (size_t)n, &x->e, err);
    if (rc) return s_push_fail(L, rc, err);
    s_fill(L, box, s_no_values, NULL);
    return 1;
}

/* expr.update{ {action, path, operand}, ... }: no operand for "remove". */
static int l_update(lua_State *L) {
    lua_Integer n, i;
    struct dyn_expr_update_item *items;
    struct dyn_buf *err;
    struct l_expr *x;
    struct s_args_ctx ctx;
    int rc, base, box;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, 1);
    if (n > 1000000) return luaL_argerror(L, 1, "too many update items");
    items = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *items, 0);
    /* one stack slot per item holds its operand, in item order, for s_value_from_args */
    luaL_checkstack(L, (int)n + 10, "too many update items");
    base = lua_gettop(L) + 1;
    for (i = 0; i < n; i++) {
        int entry;
        lua_rawgeti(L, 1, i + 1);
        entry = lua_gettop(L);
        if (lua_type(L, entry) != LUA_TTABLE) return luaL_argerror(L, 1, "update items must be tables");
        lua_rawgeti(L, entry, 1);
        items[i].action = luaL_checkoption(L, -1, NULL, s_actions);
        lua_pop(L, 1);
        lua_rawgeti(L, entry, 2);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 1, "update item path must be a string");
        items[i].path = ldynamo_checkslice(L, -1);
        lua_pop(L, 1); /* args[1] keeps the item table, and so the path, alive */
        lua_rawgeti(L, entry, 3);
        items[i].value.literal = 0;
        items[i].value.text = DYN_SLICE_EMPTY;
        if (items[i].action == DYN_EXPR_REMOVE) {
            lua_pop(L, 1);
            lua_pushboolean(L, 0); /* not an operand: s_value_from_args skips it */
        } else if (!s_read_operand(L, -1, &items[i].value)) {
            return luaL_argerror(L, 1, "update item value must be a name or a literal");
        }
        lua_replace(L, entry);
    }
    err = s_newbuf(L);
    x = s_newbox(L);
    box = lua_gettop(L);
    rc = dyn_expr_update_new(dyn_default_allocator(), items, (size_t)n, &x->e, err);
    if (rc) return s_push_fail(L, rc, err);
    ctx.first = base;
    ctx.count = (int)n;
    ctx.e = x->e;
    s_fill(L, box, s_value_from_args, &ctx);
    return 1;
}

/* Values of a combination: x's operands, then y's new ones (ymap from dyn_expr_combine). */
struct s_combine_ctx {
    int xuv, yuv;
    size_t nx, ny;
    const size_t *ymap;
};

static void s_value_from_pair(lua_State *L, void *vctx, size_t i) {
    struct s_combine_ctx *c = vctx;
    size_t k;
    if (i < c->nx) {
        lua_rawgeti(L, c->xuv, (lua_Integer)(i + 1));
        return;
    }
    for (k = 0; k < c->ny; k++) {
        if (c->ymap[k] == i) {
            lua_rawgeti(L, c->yuv, (lua_Integer)(k + 1));
            return;
        }
    }
    lua_pushnil(L); /* not reached */
}

/* expr.combine("AND"|"OR", x, y) */
static int l_combine(lua_State *L) {
    static const char *const joins[] = {"AND", "OR", NULL};
    int join = luaL_checkoption(L, 1, NULL, joins) == 0 ? DYN_EXPR_AND : DYN_EXPR_OR, rc, box;
    struct dyn_expr *ex = s_check(L, 2), *ey = s_check(L, 3);
    struct s_combine_ctx ctx;
    size_t *ymap = lua_newuserdatauv(L, (dyn_expr_value_count(ey) + 1) * sizeof *ymap, 0);
    struct dyn_buf *err = s_newbuf(L);
    struct l_expr *x = s_newbox(L);
    box = lua_gettop(L);
    rc = dyn_expr_combine(join, ex, ey, &x->e, ymap, err);
    if (rc) return s_push_fail(L, rc, err);
    s_push_uv(L, 2);
    ctx.xuv = lua_gettop(L);
    s_push_uv(L, 3);
    ctx.yuv = lua_gettop(L);
    ctx.nx = dyn_expr_value_count(ex);
    ctx.ny = dyn_expr_value_count(ey);
    ctx.ymap = ymap;
    s_fill(L, box, s_value_from_pair, &ctx);
    return 1;
}

static void s_value_from_one(lua_State *L, void *vctx, size_t i) {
    lua_rawgeti(L, *(int *)vctx, (lua_Integer)(i + 1));
}

/* expr.negate(x) */
static int l_negate(lua_State *L) {
    struct dyn_expr *ex = s_check(L, 1);
    struct dyn_buf *err = s_newbuf(L);
    struct l_expr *x = s_newbox(L);
    int box = lua_gettop(L), rc = dyn_expr_negate(ex, &x->e, err), uv;
    if (rc) return s_push_fail(L, rc, err);
    s_push_uv(L, 1);
    uv = lua_gettop(L);
    s_fill(L, box, s_value_from_one, &uv);
    return 1;
}

/* expr.template(x) -> the readable form */
static int l_template(lua_State *L) {
    struct dyn_expr *x = s_check(L, 1);
    struct dyn_buf *b = s_newbuf(L);
    if (dyn_expr_template(x, b) != DYN_OK) return luaL_error(L, "not enough memory");
    lua_pushlstring(L, b->len ? b->ptr : "", b->len);
    return 1;
}

static int l_kind(lua_State *L) {
    static const char *const kinds[] = {"?", "condition", "projection", "update"};
    lua_pushstring(L, kinds[dyn_expr_kind(s_check(L, 1))]);
    return 1;
}

/* expr.segments(x) -> the distinct attribute names, sorted */
static int l_segments(lua_State *L) {
    struct dyn_expr *x = s_check(L, 1);
    size_t i, nv = dyn_expr_value_count(x), ns = dyn_expr_segment_count(x);
    s_push_uv(L, 1);
    lua_createtable(L, (int)ns, 0);
    for (i = 0; i < ns; i++) {
        lua_rawgeti(L, -2, (lua_Integer)(nv + i + 1));
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    return 1;
}

/* expr.value_names(x) -> the value names (not literals), in first-use order */
static int l_value_names(lua_State *L) {
    struct dyn_expr *x = s_check(L, 1);
    size_t i, nv = dyn_expr_value_count(x);
    lua_Integer k = 0;
    s_push_uv(L, 1);
    lua_createtable(L, (int)nv, 0);
    for (i = 0; i < nv; i++) {
        if (dyn_expr_value(x, i).literal) continue;
        lua_rawgeti(L, -2, (lua_Integer)(i + 1));
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

/* expr.escape(name) -> name as one path element */
static int l_escape(lua_State *L) {
    dyn_slice name = ldynamo_checkslice(L, 1);
    struct dyn_buf *b = s_newbuf(L);
    if (dyn_expr_path_escape(name, b) != DYN_OK) return luaL_error(L, "not enough memory");
    lua_pushlstring(L, b->len ? b->ptr : "", b->len);
    return 1;
}

/* expr.normalize_path(text) -> canonical text | nil, msg */
static int l_normalize_path(lua_State *L) {
    dyn_slice path = ldynamo_checkslice(L, 1);
    struct dyn_buf *b = s_newbuf(L), *err = s_newbuf(L);
    int rc = dyn_expr_path_normalize(path, b, err);
    if (rc) return s_push_fail(L, rc, err);
    lua_pushlstring(L, b->len ? b->ptr : "", b->len);
    return 1;
}

/* ---- render_request ---------------------------------------------------- */

static int s_state_gc(lua_State *L) {
    struct l_state *st = luaL_checkudata(L, 1, STATE_MT);
    dyn_expr_renderer_free(&st->r);
    dyn_mem_free(dyn_default_allocator(), st->infos, st->infos_cap * sizeof *st->infos);
    dyn_mem_free(dyn_default_allocator(), st->sig, st->infos_cap * sizeof *st->sig);
    st->infos = NULL;
    st->sig = NULL;
    st->infos_cap = 0;
    st->valid = 0;
    return 0;
}

static struct l_state *s_new_state(lua_State *L) {
    struct l_state *st = lua_newuserdatauv(L, sizeof *st, 1);
    memset(st, 0, sizeof *st);
    dyn_expr_renderer_init(&st->r, dyn_default_allocator());
    luaL_setmetatable(L, STATE_MT);
    lua_createtable(L, 2 * DYN_EXPR_SLOTS, 0);
    lua_setiuservalue(L, -2, 1);
    return st;
}

/* Room for n operand records in infos and sig. */
static int s_state_reserve(struct l_state *st, size_t n) {
    void *p, *q;
    const struct dyn_allocator *a = dyn_default_allocator();
    if (st->infos_cap >= n) return DYN_OK;
    p = dyn_mem_realloc(a, st->infos, st->infos_cap * sizeof *st->infos, n * sizeof *st->infos);
    if (!p) return DYN_ENOMEM;
    st->infos = p;
    q = dyn_mem_realloc(a, st->sig, st->infos_cap * sizeof *st->sig, n * sizeof *st->sig);
    if (!q) return DYN_ENOMEM; /* infos grew, the capacity did not: consistent */
    st->sig = q;
    st->infos_cap = n;
    st->valid = 0;
    return DYN_OK;
}

/* Classifies the value at idx for the renderer. */
static void s_classify(lua_State *L, int idx, struct dyn_expr_value_info *info) {
    const char *t;
    int top;
    info->count = 0;
    info->size = 0;
    info->type_name = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: info->type = DYN_EXPR_V_MISSING; return;
    case LUA_TNUMBER: info->type = DYN_EXPR_V_NUMBER; return;
    case LUA_TSTRING:
        info->type = DYN_EXPR_V_STRING;
        info->size = lua_rawlen(L, idx);
        return;
    case LUA_TBOOLEAN:
        info->type = DYN_EXPR_V_OTHER;
        info->type_name = "boolean";
        return;
    case LUA_TTABLE:
        if (!lua_getmetatable(L, idx)) {
            /* a plain table: a sequence is a list; {} counts as an empty list here so
             * that IN reports it, and is written as the codec decides */
            size_t n = lua_rawlen(L, idx);
            info->type = DYN_EXPR_V_LIST;
            info->count = n;
            if (n == 0) {
                lua_pushnil(L);
                if (lua_next(L, idx)) {
                    lua_pop(L, 2);
                    info->type = DYN_EXPR_V_OTHER;
                    info->type_name = "map";
                }
            }
            return;
        }
        lua_pop(L, 1);
        break;
    case LUA_TUSERDATA: break;
    default:
        info->type = DYN_EXPR_V_OTHER;
        info->type_name = luaL_typename(L, idx);
        return;
    }
    /* a dynamo type (number, set, list, map, binary, NULL): ask the codec.
     * The stack is restored exactly: the caller counts on its positions. */
    top = lua_gettop(L);
    info->type = DYN_EXPR_V_OTHER;
    info->type_name = "value";
    lua_getfield(L, UV_CORE, "type_of");
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        lua_settop(L, top);
        return;
    }
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    t = lua_tostring(L, -1);
    if (!t) {
        /* an empty dynamo.set has no element type yet */
        if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "dynamo.set")) {
            info->type = DYN_EXPR_V_SET;
            info->type_name = "set";
        }
    } else if (!strcmp(t, "N")) {
        info->type = DYN_EXPR_V_NUMBER;
    } else if (!strcmp(t, "S")) {
        info->type = DYN_EXPR_V_STRING;
    } else if (!strcmp(t, "SS") || !strcmp(t, "NS") || !strcmp(t, "BS") || !strcmp(t, "L")) {
        info->type = t[0] == 'L' ? DYN_EXPR_V_LIST : DYN_EXPR_V_SET;
        info->type_name = NULL;
        lua_len(L, idx);
        info->count = (size_t)luaL_optinteger(L, -1, 0);
        lua_pop(L, 1);
    } else if (!strcmp(t, "M")) {
        info->type_name = "map";
    } else if (!strcmp(t, "B")) {
        info->type_name = "binary";
        info->size = lua_rawlen(L, idx);
    } else if (!strcmp(t, "NULL")) {
        info->type_name = "null";
    } else if (!strcmp(t, "BOOL")) {
        info->type_name = "boolean";
    }
    lua_settop(L, top);
}

/* Pushes the placeholder string prefix + letters(seq): an upvalue, or from the cache table. */
static void s_push_ph(lua_State *L, char prefix, uint32_t seq) {
    lua_Integer key = (lua_Integer)seq * 2 + (prefix == '#' ? 1 : 2);
    if (seq < N_PH) {
        lua_pushvalue(L, UV_PH(prefix, seq));
        return;
    }
    if (lua_rawgeti(L, UV_CACHE, key) == LUA_TNIL) {
        char buf[32];
        size_t n;
        lua_pop(L, 1);
        buf[0] = prefix;
        n = dyn_expr_placeholder(seq, -1, buf + 1);
        lua_pushlstring(L, buf, n + 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, UV_CACHE, key);
    }
}

/* The message is on the stack top: return nil, msg, or raise through UV_RAISE. */
static int s_render_fail(lua_State *L, struct l_state *st) {
    if (st) st->busy = 0;
    if (lua_isnil(L, UV_RAISE)) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushvalue(L, UV_RAISE);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    return luaL_error(L, "render_request: the raise function returned");
}

/* True when the last render of st applies to these expressions and operand shapes. */
static int s_memo_hit(const struct l_state *st, const struct dyn_expr *const exprs[DYN_EXPR_SLOTS],
                      const struct dyn_expr_value_info *const infos[DYN_EXPR_SLOTS], size_t total) {
    const struct dyn_expr_renderer *r = &st->r;
    size_t i, subst = st->names_subst;
    if (!st->valid || st->n_sig != total) return 0;
    for (i = 0; i < DYN_EXPR_SLOTS; i++)
        if (st->last[i] != exprs[i]) return 0;
    for (i = 0; i < total; i++)
        if (st->sig[i].type != st->infos[i].type || st->sig[i].count != st->infos[i].count) return 0;
    /* sizes are not part of the shape: redo the 2 MB sum the renderer would do */
    for (i = 0; i < r->n_values; i++) {
        const struct dyn_expr_value_ref *v = &r->values[i];
        subst += v->elem < 0 ? 4 + infos[v->slot][v->index].size : 16;
    }
    return subst <= DYN_EXPR_MAX_SUBST;
}

/*
 * render_request(args): phase 1 resolves every operand (Lua may run here:
 * __index of data, type_of); phase 2 renders in C (or reuses the last render,
 * see struct l_state); phase 3 builds the result. The scratch state is marked
 * busy meanwhile; see the busy case below for nested renders and errors.
 */
static int l_render_request(lua_State *L) {
    const struct dyn_expr *exprs[DYN_EXPR_SLOTS];
    const struct dyn_expr_value_info *infos[DYN_EXPR_SLOTS];
    int uv[DYN_EXPR_SLOTS], vbase[DYN_EXPR_SLOTS], slot, data, st_idx, memo, rc, hit, kind;
    size_t total = 0, k, i;
    struct l_state *st;
    struct dyn_expr_renderer *r;

    if (lua_type(L, 1) != LUA_TTABLE) {
        lua_pushfstring(L, "render_request needs a table, got %s", luaL_typename(L, 1));
        return s_render_fail(L, NULL);
    }
    lua_settop(L, 1);
    st = lua_touserdata(L, UV_STATE);
    if (st->busy) {
        /* a render in progress (this one is nested: an __index or a finalizer)
         * or one that raised: either way take a fresh state from now on */
        st = s_new_state(L);
        lua_pushvalue(L, -1);
        lua_replace(L, UV_STATE);
    } else {
        lua_pushvalue(L, UV_STATE);
    }
    st_idx = lua_gettop(L);
    st->busy = 1;
    lua_getiuservalue(L, st_idx, 1);
    memo = lua_gettop(L);

    for (slot = 0; slot < DYN_EXPR_SLOTS; slot++) {
        exprs[slot] = NULL;
        uv[slot] = vbase[slot] = 0;
        lua_pushvalue(L, UV_KEY(slot + 1));
        if (lua_rawget(L, 1) == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        /* the userdata: the value itself, or the _c field of an expression object */
        kind = lua_type(L, -1);
        if (kind == LUA_TTABLE) {
            lua_pushvalue(L, UV_KEY(K_C));
            lua_rawget(L, -2);
            lua_replace(L, -2);
        }
        if (lua_getmetatable(L, -1)) {
            if (lua_rawequal(L, -1, UV_MT)) exprs[slot] = ((struct l_expr *)lua_touserdata(L, -2))->e;
            lua_pop(L, 1);
        }
        if (!exprs[slot]) {
            lua_pushfstring(L, "%s must be an expression, got %s", s_slot_fields[slot], lua_typename(L, kind));
            return s_render_fail(L, st);
        }
        lua_getiuservalue(L, -1, 1);
        uv[slot] = lua_gettop(L);
        total += dyn_expr_value_count(exprs[slot]);
    }
    lua_pushvalue(L, UV_KEY(K_DATA));
    lua_rawget(L, 1);
    data = lua_gettop(L);
    if (!lua_isnil(L, data) && lua_type(L, data) != LUA_TTABLE) {
        lua_pushfstring(L, "data must be a table, got %s", luaL_typename(L, data));
        return s_render_fail(L, st);
    }

    /* phase 1: operand values go on the stack, their classes into st->infos */
    if (total > 100000 || !lua_checkstack(L, (int)total + 20)) {
        st->busy = 0;
        return luaL_error(L, "too many expression values");
    }
    if (s_state_reserve(st, total) != DYN_OK) {
        st->busy = 0;
        return luaL_error(L, "not enough memory");
    }
    k = 0;
    for (slot = 0; slot < DYN_EXPR_SLOTS; slot++) {
        size_t nv;
        infos[slot] = NULL;
        if (!exprs[slot]) continue;
        nv = dyn_expr_value_count(exprs[slot]);
        infos[slot] = st->infos + k;
        vbase[slot] = lua_gettop(L) + 1;
        for (i = 0; i < nv; i++, k++) {
            lua_rawgeti(L, uv[slot], (lua_Integer)(i + 1));
            if (!dyn_expr_value(exprs[slot], i).literal) {
                if (lua_type(L, data) == LUA_TTABLE)
                    lua_gettable(L, data);
                else {
                    lua_pop(L, 1);
                    lua_pushnil(L);
                }
            }
            s_classify(L, lua_gettop(L), &st->infos[k]);
        }
    }

    /* phase 2 */
    r = &st->r;
    hit = s_memo_hit(st, exprs, infos, total);
    if (!hit) {
        st->valid = 0;
        rc = dyn_expr_render(r, exprs, infos);
        if (rc == DYN_ENOMEM) {
            st->busy = 0;
            return luaL_error(L, "not enough memory");
        }
        if (rc) {
            lua_pushlstring(L, r->error.len ? r->error.ptr : "invalid expression", r->error.len ? r->error.len : 18);
            return s_render_fail(L, st);
        }
        for (i = 0; i < total; i++) {
            st->sig[i].type = st->infos[i].type;
            st->sig[i].count = st->infos[i].count;
        }
        st->n_sig = total;
        st->names_subst = 0;
        for (i = 0; i < r->n_names; i++)
            st->names_subst += 4 + dyn_expr_segment(exprs[r->names[i].slot], r->names[i].seg).len;
        for (slot = 0; slot < DYN_EXPR_SLOTS; slot++) {
            st->last[slot] = exprs[slot];
            /* the userdata itself, so its address cannot be reused while remembered */
            if (exprs[slot])
                lua_pushvalue(L, uv[slot] - 1);
            else
                lua_pushboolean(L, 0);
            lua_rawseti(L, memo, slot + 1);
            if (exprs[slot])
                lua_pushlstring(L, r->text.ptr + r->off[slot], r->len[slot]);
            else
                lua_pushboolean(L, 0);
            lua_rawseti(L, memo, DYN_EXPR_SLOTS + slot + 1);
        }
        st->valid = 1;
    }

    /* phase 3 */
    lua_createtable(L, 0, 7);
    for (slot = 0; slot < DYN_EXPR_SLOTS; slot++) {
        if (!exprs[slot]) continue;
        lua_pushvalue(L, UV_KEY(K_RESULT + slot));
        lua_rawgeti(L, memo, DYN_EXPR_SLOTS + slot + 1);
        lua_rawset(L, -3);
    }
    if (r->n_names) {
        lua_pushvalue(L, UV_KEY(K_NAMES));
        lua_createtable(L, 0, (int)r->n_names);
        for (i = 0; i < r->n_names; i++) {
            const struct dyn_expr_name_ref *n = &r->names[i];
            s_push_ph(L, '#', (uint32_t)i);
            lua_rawgeti(L, uv[n->slot], (lua_Integer)(dyn_expr_value_count(exprs[n->slot]) + n->seg + 1));
            lua_rawset(L, -3);
        }
        lua_rawset(L, -3);
    }
    if (r->n_values) {
        lua_pushvalue(L, UV_KEY(K_VALUES));
        lua_createtable(L, 0, (int)r->n_values);
        for (i = 0; i < r->n_values; i++) {
            const struct dyn_expr_value_ref *v = &r->values[i];
            if (v->elem < 0) {
                s_push_ph(L, ':', v->seq);
                lua_pushvalue(L, vbase[v->slot] + (int)v->index);
            } else {
                char buf[32];
                size_t n;
                buf[0] = ':';
                n = dyn_expr_placeholder(v->seq, v->elem, buf + 1);
                lua_pushlstring(L, buf, n + 1);
                lua_geti(L, vbase[v->slot] + (int)v->index, (lua_Integer)v->elem + 1);
            }
            lua_rawset(L, -3);
        }
        lua_rawset(L, -3);
    }
    st->busy = 0;
    return 1;
}

/* Pushes the N_UPVALUES upvalues of a render_request closure; raise at index raise (0: none). */
static void s_push_render(lua_State *L, int core, int raise) {
    char buf[32];
    int i;
    luaL_checkstack(L, N_UPVALUES + 4, "render_request upvalues");
    s_new_state(L);
    lua_newtable(L); /* placeholder cache */
    lua_pushvalue(L, core);
    luaL_getmetatable(L, EXPR_MT);
    if (raise)
        lua_pushvalue(L, raise);
    else
        lua_pushnil(L);
    for (i = 0; i < DYN_EXPR_SLOTS; i++) lua_pushstring(L, s_slot_fields[i]);
    lua_pushliteral(L, "data");
    lua_pushliteral(L, "_c");
    for (i = 0; i < DYN_EXPR_SLOTS; i++) lua_pushstring(L, dyn_expr_slot_name(i));
    lua_pushliteral(L, "ExpressionAttributeNames");
    lua_pushliteral(L, "ExpressionAttributeValues");
    for (i = 0; i < 2 * N_PH; i++) {
        buf[0] = i < N_PH ? '#' : ':';
        dyn_expr_placeholder((uint32_t)(i % N_PH), -1, buf + 1);
        lua_pushlstring(L, buf, 4);
    }
}

/* expr.raising_render(raise) -> a render_request that calls raise(msg) instead of returning nil, msg
 * (raise must not return). Each has its own scratch state. */
static int l_raising_render(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    s_push_render(L, lua_upvalueindex(1), 1);
    lua_pushcclosure(L, l_render_request, N_UPVALUES);
    return 1;
}

static const luaL_Reg s_funcs[] = {
    {"condition", l_condition},
    {"projection", l_projection},
    {"update", l_update},
    {"combine", l_combine},
    {"negate", l_negate},
    {"template", l_template},
    {"kind", l_kind},
    {"segments", l_segments},
    {"value_names", l_value_names},
    {"escape", l_escape},
    {"normalize_path", l_normalize_path},
    {NULL, NULL},
};

void ldynamo_open_expr(lua_State *L) {
    int core = lua_gettop(L);
    if (luaL_newmetatable(L, EXPR_MT)) {
        lua_pushcfunction(L, s_expr_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_template);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, BUF_MT)) {
        lua_pushcfunction(L, s_buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, STATE_MT)) {
        lua_pushcfunction(L, s_state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);

    luaL_newlib(L, s_funcs);
    s_push_render(L, core, 0);
    lua_pushcclosure(L, l_render_request, N_UPVALUES);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "render_request");
    lua_setfield(L, core, "render_request");
    lua_pushvalue(L, core);
    lua_pushcclosure(L, l_raising_render, 1);
    lua_setfield(L, -2, "raising_render");
    lua_setfield(L, core, "expr");
}
