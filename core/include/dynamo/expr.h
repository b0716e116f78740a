/*
 * dynamo/expr.h - DynamoDB expressions: compiled once, rendered per request.
 *
 * An expression (condition, projection or update) is compiled from attribute
 * paths, operators and value operands into an immutable struct dyn_expr: a
 * compact word array the renderer walks, the distinct path segments of the
 * expression sorted by bytes, and its distinct value operands. Compiling
 * parses every path once; combining two compiled expressions (AND, OR, NOT,
 * merge) makes a new one and never changes its inputs.
 *
 * Compiling also lays out each expression's request string as a skeleton
 * with 4-byte holes for its placeholders (they are fixed width), so a render
 * is mostly copying and filling in holes.
 *
 * Rendering a request takes up to five compiled expressions, one per slot of
 * a DynamoDB request, plus what the caller found about each value operand
 * (present or not, its type, its element count), and writes the expression
 * strings and the placeholder maps. The core never sees the values
 * themselves: the caller resolves value names in its own data and builds
 * ExpressionAttributeValues from the references the renderer hands back.
 *
 * Placeholders (deterministic, the same bytes in every process):
 *  - names: every distinct path segment used by the request's expressions
 *    gets "#aaa", "#aab", ... "#zzz" in byte order of the segment names;
 *  - values: ":aaa", ":aab", ... in order of first use while rendering the
 *    slots in the fixed order KeyCondition, Filter, Condition, Update,
 *    Projection. A value name used more than once (even by two slots) gets
 *    one placeholder; every literal operand gets its own. IN with a list or
 *    set value expands to ":aaa_0", ":aaa_1", ... in element order.
 *  - only placeholders that the rendered strings use are reported.
 *
 * Path syntax: name ( "." name | "[" digits "]" )*. A name is one or more
 * bytes; '.', '[', ']' and '\' inside a name are written with a backslash
 * before them ("a\.b" is the single attribute "a.b"). At most
 * DYN_EXPR_MAX_PATH elements; names up to 65535 bytes; indexes below 2^31.
 *
 * Errors: DYN_EINVAL for bad input, with a lowercase message (no trailing
 * period) appended to the caller's `err` buffer when err is not NULL;
 * DYN_ENOMEM. Outputs are untouched on failure.
 */
#ifndef DYNAMO_EXPR_H
#define DYNAMO_EXPR_H

#include "dynamo/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ------------------------------------------------------------ */

#define DYN_EXPR_MAX_LEN 4096          /* bytes of one rendered expression string */
#define DYN_EXPR_MAX_IN 100            /* operands of one IN */
#define DYN_EXPR_MAX_DEPTH 32          /* nested AND/OR/NOT groups of a condition */
#define DYN_EXPR_MAX_PATH 32           /* elements of one document path */
#define DYN_EXPR_MAX_NAME 65535        /* bytes of one attribute name */
#define DYN_EXPR_MAX_UPDATE_OPS 300    /* functions and +/- of one update expression */
#define DYN_EXPR_MAX_PLACEHOLDERS 17576 /* "aaa".."zzz": per map and request */
#define DYN_EXPR_MAX_SUBST (2u * 1024u * 1024u) /* bytes of both placeholder maps */

/* ---- kinds, operators, actions ----------------------------------------- */

enum dyn_expr_kind { DYN_EXPR_CONDITION = 1, DYN_EXPR_PROJECTION = 2, DYN_EXPR_UPDATE = 3 };

enum dyn_expr_op {
    DYN_EXPR_EQ,          /* "=" */
    DYN_EXPR_NE,          /* "<>" */
    DYN_EXPR_LT,          /* "<" */
    DYN_EXPR_LE,          /* "<=" */
    DYN_EXPR_GT,          /* ">" */
    DYN_EXPR_GE,          /* ">=" */
    DYN_EXPR_IN,          /* "IN": 1 or more operands */
    DYN_EXPR_BETWEEN,     /* "BETWEEN": exactly 2 operands */
    DYN_EXPR_BEGINS_WITH, /* "begins_with" */
    DYN_EXPR_CONTAINS,    /* "contains" */
    DYN_EXPR_EXISTS,      /* "attribute_exists": no operand */
    DYN_EXPR_NOT_EXISTS,  /* "attribute_not_exists": no operand */
    DYN_EXPR_TYPE,        /* "attribute_type": 1 operand, the type name */
    DYN_EXPR_OP_COUNT
};

/* The operator spelled exactly as s (case-sensitive), or -1. */
int dyn_expr_op_parse(dyn_slice s);
/* "=", "begins_with", ...; "?" for an unknown value. */
const char *dyn_expr_op_name(int op);

/* How dyn_expr_combine joins two expressions. */
enum dyn_expr_join { DYN_EXPR_AND = 1, DYN_EXPR_OR = 2 };

/* Update actions. The SET clause lists its items by action in this order. */
enum dyn_expr_action {
    DYN_EXPR_SET,               /* #p = :v */
    DYN_EXPR_SET_IF_NOT_EXISTS, /* #p = if_not_exists(#p, :v) */
    DYN_EXPR_INCREMENT,         /* #p = #p + :v   (value: a number) */
    DYN_EXPR_DECREMENT,         /* #p = #p - :v   (value: a number) */
    DYN_EXPR_APPEND,            /* #p = list_append(#p, :v)   (value: a list) */
    DYN_EXPR_PREPEND,           /* #p = list_append(:v, #p)   (value: a list) */
    DYN_EXPR_ADD,               /* ADD #p :v      (value: a number or a set) */
    DYN_EXPR_DELETE,            /* DELETE #p :v   (value: a set) */
    DYN_EXPR_REMOVE,            /* REMOVE #p      (no value) */
    DYN_EXPR_ACTION_COUNT
};

/*
 * A value operand. literal == 0: text is the name of a value in the caller's
 * data (non-empty). literal != 0: a constant the caller holds; text is how
 * templates show it (may be empty). Operands are numbered per compiled
 * expression (see dyn_expr_value); equal names share a number, every literal
 * gets its own.
 */
struct dyn_expr_operand {
    int literal;
    dyn_slice text;
};

struct dyn_expr_update_item {
    int action;                    /* enum dyn_expr_action */
    dyn_slice path;                /* path text */
    struct dyn_expr_operand value; /* ignored for DYN_EXPR_REMOVE */
};

/* An immutable compiled expression. */
struct dyn_expr;

/* ---- paths --------------------------------------------------------------- */

/*
 * Checks path text and appends its canonical form to out: only the four
 * special bytes escaped, indexes without leading zeros. Canonical text parses
 * back to the same path.
 */
int dyn_expr_path_normalize(dyn_slice text, struct dyn_buf *out, struct dyn_buf *err);
/* Appends name as one path element: '.', '[', ']' and '\' get a backslash. */
int dyn_expr_path_escape(dyn_slice name, struct dyn_buf *out);

/* ---- compiling ------------------------------------------------------------ */

/*
 * One comparison or function: `path op operands`, or with size_of set,
 * `size(path) op operands` (only for =, <>, <, <=, >, >=, IN, BETWEEN).
 * Operand counts: none for the exists functions, two for BETWEEN, one or more
 * for IN (each may expand at render time), one otherwise.
 */
int dyn_expr_condition_new(const struct dyn_allocator *alloc, int op, dyn_slice path, int size_of,
                           const struct dyn_expr_operand *values, size_t n_values,
                           struct dyn_expr **out, struct dyn_buf *err);

/*
 * A projection of n paths (n >= 1). Duplicates and paths inside another
 * listed path ("a.b" when "a" is listed) are dropped; the rest are ordered
 * element by element (names by bytes, a name before an index).
 */
int dyn_expr_projection_new(const struct dyn_allocator *alloc, const dyn_slice *paths, size_t n,
                            struct dyn_expr **out, struct dyn_buf *err);

/*
 * An update expression of n items (n >= 1). An item equal to an earlier one
 * (same action, path and operand) is dropped; two items on overlapping paths
 * ("a" and "a.b", or "a" twice with different values) are an error, as
 * DynamoDB would reject them.
 */
int dyn_expr_update_new(const struct dyn_allocator *alloc, const struct dyn_expr_update_item *items,
                        size_t n, struct dyn_expr **out, struct dyn_buf *err);

/*
 * Conditions: x AND y, x OR y; nested groups of the same join are flattened,
 * other groups keep their parentheses. Projections and updates: merge
 * (DYN_EXPR_AND only), as if the items of y followed those of x. Both
 * operands must be of the same kind.
 *
 * The result's value operands are x's (same numbers) followed by y's that
 * x does not have. When remap is not NULL it receives, for each value
 * operand i of y, its number in the result (dyn_expr_value_count(y)
 * entries). Segments are renumbered (see dyn_expr_segment).
 */
int dyn_expr_combine(int join, const struct dyn_expr *x, const struct dyn_expr *y,
                     struct dyn_expr **out, size_t *remap, struct dyn_buf *err);

/* NOT x for a condition; NOT NOT x gives x back. Value operands keep their numbers. */
int dyn_expr_negate(const struct dyn_expr *x, struct dyn_expr **out, struct dyn_buf *err);

/* Frees e (NULL is allowed). */
void dyn_expr_free(struct dyn_expr *e);

/* ---- inspecting ----------------------------------------------------------- */

int dyn_expr_kind(const struct dyn_expr *e);
/* Distinct value operands, numbered 0..count-1. */
size_t dyn_expr_value_count(const struct dyn_expr *e);
struct dyn_expr_operand dyn_expr_value(const struct dyn_expr *e, size_t i);
/* Distinct path segment names in byte order, numbered 0..count-1 (unescaped). */
size_t dyn_expr_segment_count(const struct dyn_expr *e);
dyn_slice dyn_expr_segment(const struct dyn_expr *e, size_t i);

/*
 * Appends the readable form of e to out: names as "#" + escaped name, value
 * names as ":" + name, literals as their text, e.g.
 * "#age <= :age AND NOT begins_with(#name, :prefix)". Used by tostring and in
 * error messages; not sent to DynamoDB.
 */
int dyn_expr_template(const struct dyn_expr *e, struct dyn_buf *out);

/* ---- rendering ------------------------------------------------------------ */

enum dyn_expr_slot {
    DYN_EXPR_SLOT_KEY,        /* KeyConditionExpression */
    DYN_EXPR_SLOT_FILTER,     /* FilterExpression */
    DYN_EXPR_SLOT_CONDITION,  /* ConditionExpression */
    DYN_EXPR_SLOT_UPDATE,     /* UpdateExpression */
    DYN_EXPR_SLOT_PROJECTION, /* ProjectionExpression */
    DYN_EXPR_SLOTS
};

/* "KeyConditionExpression", ...; "?" for an unknown slot. */
const char *dyn_expr_slot_name(int slot);

/* What the caller knows about one value operand. */
enum dyn_expr_vtype {
    DYN_EXPR_V_MISSING = 0, /* a value name absent from the data */
    DYN_EXPR_V_NUMBER,
    DYN_EXPR_V_STRING,
    DYN_EXPR_V_SET,         /* a string, number or binary set: count elements */
    DYN_EXPR_V_LIST,        /* a list: count elements */
    DYN_EXPR_V_OTHER        /* anything else (map, boolean, null, binary) */
};

struct dyn_expr_value_info {
    int type;              /* enum dyn_expr_vtype */
    size_t count;          /* elements of a set or list */
    size_t size;           /* bytes of a string or binary value, else 0 (for the 2 MB limit) */
    const char *type_name; /* for messages ("boolean", "map"); NULL: derived from type */
};

/* ExpressionAttributeNames entry i is "#" + placeholder(i) -> segment `seg` of expression `slot`. */
struct dyn_expr_name_ref {
    int slot;
    size_t seg;
};

/*
 * ExpressionAttributeValues entry: ":" + placeholder(seq), followed by
 * "_" + elem when elem >= 0; the value is operand `index` of the expression
 * in `slot`, or its element elem (0-based) when elem >= 0.
 */
struct dyn_expr_value_ref {
    uint32_t seq;
    int32_t elem;
    int slot;
    size_t index;
};

/*
 * Rendering state and output, reusable: render into the same renderer again
 * and again without new allocations once it has grown. Everything it
 * reports stays valid until the next render or dyn_expr_renderer_free.
 */
struct dyn_expr_renderer {
    const struct dyn_allocator *alloc;
    struct dyn_buf text;                  /* the expression strings, back to back */
    size_t off[DYN_EXPR_SLOTS];           /* slot's string = text.ptr + off, len bytes */
    size_t len[DYN_EXPR_SLOTS];           /* 0 and off 0 for an absent slot */
    struct dyn_expr_name_ref *names;      /* in placeholder order */
    size_t n_names;
    struct dyn_expr_value_ref *values;    /* in order of first use */
    size_t n_values;
    struct dyn_buf error;                 /* message after DYN_EINVAL */
    struct dyn_buf scratch;               /* private */
    size_t names_cap, values_cap;         /* private */
};

void dyn_expr_renderer_init(struct dyn_expr_renderer *r, const struct dyn_allocator *alloc);
void dyn_expr_renderer_free(struct dyn_expr_renderer *r);

/*
 * Renders the expressions of one request. exprs[slot] is NULL for an absent
 * slot; the key and filter and condition slots take conditions, the update
 * slot an update, the projection slot a projection. infos[slot] has one entry
 * per value operand of exprs[slot] (may be NULL when it has none).
 *
 * Checks, each a DYN_EINVAL whose message (in r->error) names the slot, the
 * expression's template and the offending item: a value name missing from
 * data; IN with an empty list or more than DYN_EXPR_MAX_IN operands; ADD with
 * neither a number nor a set, DELETE without a set, INCREMENT/DECREMENT
 * without a number, APPEND/PREPEND without a list; a key condition that is
 * not `k = v` optionally AND-ed with one sort key condition (=, <, <=, >, >=,
 * BETWEEN, begins_with) on top-level attributes; any string longer than
 * DYN_EXPR_MAX_LEN; more placeholders or substitution bytes than the limits.
 * After a failure only r->error is meaningful.
 *
 * When one value name is used by several slots, its first use decides its
 * placeholder and (for IN) its expansion; the caller is expected to give it
 * the same info everywhere.
 */
int dyn_expr_render(struct dyn_expr_renderer *r, const struct dyn_expr *const exprs[DYN_EXPR_SLOTS],
                    const struct dyn_expr_value_info *const infos[DYN_EXPR_SLOTS]);

/*
 * Writes the placeholder text without its prefix ("aab", or "aab_12" when
 * elem >= 0) into out, NUL-terminated, and returns its length.
 * seq < DYN_EXPR_MAX_PLACEHOLDERS.
 */
size_t dyn_expr_placeholder(uint32_t seq, int32_t elem, char out[24]);

#ifdef __cplusplus
}
#endif
#endif
