/* dyn_expr: path parsing, compiling, combining, templates and request rendering. */
#include "dynamo/expr.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>

static const struct dyn_allocator *A;

static struct dyn_expr_operand N(const char *name) {
    struct dyn_expr_operand o;
    o.literal = 0;
    o.text = dyn_slice_cstr(name);
    return o;
}

static struct dyn_expr_operand L(const char *text) {
    struct dyn_expr_operand o;
    o.literal = 1;
    o.text = dyn_slice_cstr(text);
    return o;
}

/* A condition `path op` with up to three operands (NULL-terminated names). */
static struct dyn_expr *cond(const char *path, const char *op, const char *v1, const char *v2) {
    struct dyn_expr_operand ops[2];
    struct dyn_expr *e = NULL;
    size_t n = 0;
    int code = dyn_expr_op_parse(dyn_slice_cstr(op));
    if (v1) ops[n++] = N(v1);
    if (v2) ops[n++] = N(v2);
    if (dyn_expr_condition_new(A, code, dyn_slice_cstr(path), 0, ops, n, &e, NULL) != DYN_OK) return NULL;
    return e;
}

static struct dyn_expr *join(int how, struct dyn_expr *x, struct dyn_expr *y) {
    struct dyn_expr *e = NULL;
    if (x && y) dyn_expr_combine(how, x, y, &e, NULL, NULL);
    dyn_expr_free(x);
    dyn_expr_free(y);
    return e;
}

static struct dyn_expr *not_(struct dyn_expr *x) {
    struct dyn_expr *e = NULL;
    if (x) dyn_expr_negate(x, &e, NULL);
    dyn_expr_free(x);
    return e;
}

static char tbuf[8192];

static const char *tmpl(const struct dyn_expr *e) {
    struct dyn_buf b = DYN_BUF_INIT(A);
    if (!e || dyn_expr_template(e, &b) != DYN_OK) {
        dyn_buf_free(&b);
        return "<null>";
    }
    snprintf(tbuf, sizeof tbuf, "%s", b.ptr ? b.ptr : "");
    dyn_buf_free(&b);
    return tbuf;
}

static char ebuf[2048];

static const char *normalize(const char *path) {
    struct dyn_buf out = DYN_BUF_INIT(A), err = DYN_BUF_INIT(A);
    int rc = dyn_expr_path_normalize(dyn_slice_cstr(path), &out, &err);
    snprintf(ebuf, sizeof ebuf, "%s", rc == DYN_OK ? (out.ptr ? out.ptr : "") : (err.ptr ? err.ptr : "?"));
    dyn_buf_free(&out);
    dyn_buf_free(&err);
    return ebuf;
}

TEST(paths_parse_and_normalize) {
    CHECK_EQ_STR(normalize("a"), "a");
    CHECK_EQ_STR(normalize("a.b.c"), "a.b.c");
    CHECK_EQ_STR(normalize("list[0][12].x"), "list[0][12].x");
    CHECK_EQ_STR(normalize("a[007]"), "a[7]");
    CHECK_EQ_STR(normalize("a\\.b.c"), "a\\.b.c");
    CHECK_EQ_STR(normalize("\\x\\y"), "xy");
    CHECK_EQ_STR(normalize("first name.#odd-chars:"), "first name.#odd-chars:");
    CHECK_EQ_STR(normalize(""), "invalid path \"\": empty path");
    CHECK_EQ_STR(normalize("a..b"), "invalid path \"a..b\": empty name at character 3");
    CHECK_EQ_STR(normalize("a."), "invalid path \"a.\": empty name at character 3");
    CHECK_EQ_STR(normalize("[0]"), "invalid path \"[0]\": empty name at character 1");
    CHECK_EQ_STR(normalize("a[x]"), "invalid path \"a[x]\": expected digits and ']' at character 3");
    CHECK_EQ_STR(normalize("a[1"), "invalid path \"a[1\": expected digits and ']' at character 4");
    CHECK_EQ_STR(normalize("a]"), "invalid path \"a]\": unexpected ']' at character 2");
    CHECK_EQ_STR(normalize("a[1]b"), "invalid path \"a[1]b\": expected '.' or '[' at character 5");
    CHECK_EQ_STR(normalize("a\\"), "invalid path \"a\\\\\": backslash at the end at character 2");
    CHECK_EQ_STR(normalize("a[2147483647]"), "a[2147483647]");
    CHECK_EQ_STR(normalize("a[2147483648]"), "invalid path \"a[2147483648]\": list index too large at character 12");
}

TEST(path_depth_limit) {
    char p[200];
    size_t i, n = 0;
    for (i = 0; i < 32; i++) n += (size_t)sprintf(p + n, i ? ".s" : "s");
    CHECK_EQ_STR(normalize(p), p);
    sprintf(p + n, "[0]");
    CHECK_EQ_STR(normalize(p), "invalid path \"s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s[0]\": more than 32 levels");
}

TEST(escape_round_trips) {
    struct dyn_buf b = DYN_BUF_INIT(A);
    CHECK(dyn_expr_path_escape(dyn_slice_cstr("a.b[c]\\d"), &b) == DYN_OK);
    CHECK_EQ_STR(b.ptr, "a\\.b\\[c\\]\\\\d");
    CHECK_EQ_STR(normalize(b.ptr), "a\\.b\\[c\\]\\\\d");
    dyn_buf_free(&b);
}

TEST(operator_names) {
    CHECK_EQ_INT(dyn_expr_op_parse(dyn_slice_cstr("begins_with")), DYN_EXPR_BEGINS_WITH);
    CHECK_EQ_INT(dyn_expr_op_parse(dyn_slice_cstr("<>")), DYN_EXPR_NE);
    CHECK_EQ_INT(dyn_expr_op_parse(dyn_slice_cstr("eq")), -1);
    CHECK_EQ_INT(dyn_expr_op_parse(dyn_slice_cstr("in")), -1);
    CHECK_EQ_STR(dyn_expr_op_name(DYN_EXPR_TYPE), "attribute_type");
    CHECK_EQ_STR(dyn_expr_op_name(99), "?");
    CHECK_EQ_STR(dyn_expr_slot_name(DYN_EXPR_SLOT_FILTER), "FilterExpression");
}

TEST(condition_templates) {
    struct dyn_expr *e;
    e = cond("key", "=", "value", NULL);
    CHECK_EQ_STR(tmpl(e), "#key = :value");
    dyn_expr_free(e);
    e = cond("key", "<>", "v", NULL);
    CHECK_EQ_STR(tmpl(e), "#key <> :v");
    dyn_expr_free(e);
    e = cond("key3", "BETWEEN", "value1", "value2");
    CHECK_EQ_STR(tmpl(e), "#key3 BETWEEN :value1 AND :value2");
    dyn_expr_free(e);
    e = cond("key", "IN", "value", NULL);
    CHECK_EQ_STR(tmpl(e), "#key IN (:value)");
    dyn_expr_free(e);
    e = cond("key", "begins_with", "value", NULL);
    CHECK_EQ_STR(tmpl(e), "begins_with(#key, :value)");
    dyn_expr_free(e);
    e = cond("key", "contains", "value", NULL);
    CHECK_EQ_STR(tmpl(e), "contains(#key, :value)");
    dyn_expr_free(e);
    e = cond("key2", "attribute_exists", NULL, NULL);
    CHECK_EQ_STR(tmpl(e), "attribute_exists(#key2)");
    dyn_expr_free(e);
    e = cond("key2", "attribute_not_exists", NULL, NULL);
    CHECK_EQ_STR(tmpl(e), "attribute_not_exists(#key2)");
    dyn_expr_free(e);
    e = cond("key", "attribute_type", "t", NULL);
    CHECK_EQ_STR(tmpl(e), "attribute_type(#key, :t)");
    dyn_expr_free(e);
    e = cond("nested.key.test", "=", "nested.key.test", NULL);
    CHECK_EQ_STR(tmpl(e), "#nested.#key.#test = :nested.key.test");
    CHECK_EQ_INT(dyn_expr_segment_count(e), 3);
    CHECK(dyn_slice_eq_cstr(dyn_expr_segment(e, 0), "key"));
    CHECK(dyn_slice_eq_cstr(dyn_expr_segment(e, 1), "nested"));
    CHECK(dyn_slice_eq_cstr(dyn_expr_segment(e, 2), "test"));
    dyn_expr_free(e);
    e = cond("a.b[3].c", "=", "x", NULL);
    CHECK_EQ_STR(tmpl(e), "#a.#b[3].#c = :x");
    dyn_expr_free(e);
}

TEST(size_and_literals) {
    struct dyn_expr *e = NULL;
    struct dyn_expr_operand ops[2];
    struct dyn_buf err = DYN_BUF_INIT(A);
    ops[0] = L("45");
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_GT, dyn_slice_cstr("name"), 1, ops, 1, &e, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "size(#name) > 45");
    CHECK_EQ_INT(dyn_expr_value_count(e), 1);
    CHECK(dyn_expr_value(e, 0).literal);
    dyn_expr_free(e);
    e = NULL;
    ops[0] = N("lo");
    ops[1] = L("10");
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_BETWEEN, dyn_slice_cstr("tags"), 1, ops, 2, &e, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "size(#tags) BETWEEN :lo AND 10");
    dyn_expr_free(e);
    e = NULL;
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_BEGINS_WITH, dyn_slice_cstr("x"), 1, ops, 1, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "size() cannot be used with begins_with");
    CHECK(e == NULL);
    dyn_buf_free(&err);
}

TEST(condition_arity_errors) {
    struct dyn_expr *e = NULL;
    struct dyn_expr_operand ops[101];
    struct dyn_buf err = DYN_BUF_INIT(A);
    size_t i;
    for (i = 0; i < 101; i++) ops[i] = N("v");
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_BETWEEN, dyn_slice_cstr("k"), 0, ops, 1, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "operator BETWEEN requires two values, got 1");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_IN, dyn_slice_cstr("k"), 0, ops, 0, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "operator IN takes 1 to 100 values, got 0");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_IN, dyn_slice_cstr("k"), 0, ops, 101, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "operator IN takes 1 to 100 values, got 101");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_EXISTS, dyn_slice_cstr("k"), 0, ops, 1, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "operator attribute_exists takes no value, got 1");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_EQ, dyn_slice_cstr("k"), 0, ops, 2, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "operator = requires one value, got 2");
    dyn_buf_reset(&err);
    ops[0] = N("");
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_EQ, dyn_slice_cstr("k"), 0, ops, 1, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "a value name must not be empty");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_condition_new(A, 42, dyn_slice_cstr("k"), 0, ops, 1, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "unknown operator 42");
    dyn_buf_reset(&err);
    ops[0] = N("v");
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_EQ, dyn_slice_cstr("a..b"), 0, ops, 1, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "invalid path \"a..b\": empty name at character 3");
    CHECK(e == NULL);
    dyn_buf_free(&err);
}

TEST(grouping_keeps_parentheses) {
    struct dyn_expr *a = cond("a", "=", "a", NULL);
    struct dyn_expr *e =
        join(DYN_EXPR_AND, a, join(DYN_EXPR_OR, cond("b", "=", "b", NULL), cond("c", "=", "c", NULL)));
    CHECK_EQ_STR(tmpl(e), "#a = :a AND (#b = :b OR #c = :c)");
    dyn_expr_free(e);
    e = join(DYN_EXPR_OR, join(DYN_EXPR_AND, cond("a", "=", "a", NULL), cond("b", "=", "b", NULL)),
             cond("c", "=", "c", NULL));
    CHECK_EQ_STR(tmpl(e), "(#a = :a AND #b = :b) OR #c = :c");
    dyn_expr_free(e);
    /* same joins flatten: (a & b) & (c & d) is one group */
    e = join(DYN_EXPR_AND, join(DYN_EXPR_AND, cond("a", "=", "a", NULL), cond("b", "=", "b", NULL)),
             join(DYN_EXPR_AND, cond("c", "=", "c", NULL), cond("d", "=", "d", NULL)));
    CHECK_EQ_STR(tmpl(e), "#a = :a AND #b = :b AND #c = :c AND #d = :d");
    dyn_expr_free(e);
    e = not_(join(DYN_EXPR_OR, cond("a", "=", "a", NULL), cond("b", "=", "b", NULL)));
    CHECK_EQ_STR(tmpl(e), "NOT (#a = :a OR #b = :b)");
    e = not_(e);
    CHECK_EQ_STR(tmpl(e), "#a = :a OR #b = :b");
    dyn_expr_free(e);
    e = join(DYN_EXPR_AND, cond("age", "<=", "age", NULL), not_(cond("name", "begins_with", "prefix", NULL)));
    CHECK_EQ_STR(tmpl(e), "#age <= :age AND NOT begins_with(#name, :prefix)");
    dyn_expr_free(e);
}

TEST(combine_numbers_values) {
    struct dyn_expr *x = cond("a", "BETWEEN", "lo", "hi"), *y = cond("b", "BETWEEN", "hi", "z"), *e = NULL;
    size_t remap[2] = {99, 99};
    CHECK(dyn_expr_combine(DYN_EXPR_OR, x, y, &e, remap, NULL) == DYN_OK);
    CHECK_EQ_INT(dyn_expr_value_count(e), 3);
    CHECK(dyn_slice_eq_cstr(dyn_expr_value(e, 0).text, "lo"));
    CHECK(dyn_slice_eq_cstr(dyn_expr_value(e, 1).text, "hi"));
    CHECK(dyn_slice_eq_cstr(dyn_expr_value(e, 2).text, "z"));
    CHECK_EQ_INT(remap[0], 1);
    CHECK_EQ_INT(remap[1], 2);
    CHECK_EQ_STR(tmpl(e), "#a BETWEEN :lo AND :hi OR #b BETWEEN :hi AND :z");
    dyn_expr_free(x);
    dyn_expr_free(y);
    dyn_expr_free(e);
}

TEST(combine_kind_errors) {
    dyn_slice p = DYN_SLICE_LIT("a");
    struct dyn_expr *c = cond("a", "=", "a", NULL), *pr = NULL, *e = NULL;
    struct dyn_buf err = DYN_BUF_INIT(A);
    CHECK(dyn_expr_projection_new(A, &p, 1, &pr, NULL) == DYN_OK);
    CHECK(dyn_expr_combine(DYN_EXPR_AND, c, pr, &e, NULL, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "cannot combine a ConditionExpression with a ProjectionExpression");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_combine(DYN_EXPR_OR, pr, pr, &e, NULL, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "ProjectionExpression only merges with &");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_negate(pr, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "only a ConditionExpression can be negated");
    CHECK(e == NULL);
    dyn_expr_free(c);
    dyn_expr_free(pr);
    dyn_buf_free(&err);
}

TEST(depth_limit) {
    struct dyn_expr *e = cond("a", "=", "a", NULL), *n = NULL;
    struct dyn_buf err = DYN_BUF_INIT(A);
    int i, rc = DYN_OK;
    /* alternate AND and OR so nothing flattens: each level adds one */
    for (i = 0; i < 40 && rc == DYN_OK; i++) {
        struct dyn_expr *c = cond("b", "=", "b", NULL);
        n = NULL;
        rc = dyn_expr_combine(i % 2 ? DYN_EXPR_AND : DYN_EXPR_OR, e, c, &n, NULL, &err);
        dyn_expr_free(c);
        if (rc == DYN_OK) {
            dyn_expr_free(e);
            e = n;
        }
    }
    CHECK(rc == DYN_EINVAL);
    CHECK_EQ_INT(i, 33); /* the 33rd combine fails */
    CHECK_EQ_STR(err.ptr, "condition nested deeper than 32 levels");
    dyn_expr_free(e);
    dyn_buf_free(&err);
}

TEST(projection_dedup_and_overlap) {
    dyn_slice paths[] = {DYN_SLICE_LIT("b"), DYN_SLICE_LIT("a.x"), DYN_SLICE_LIT("b"), DYN_SLICE_LIT("a"),
                         DYN_SLICE_LIT("list[1].y"), DYN_SLICE_LIT("list[0]"), DYN_SLICE_LIT("list[0].z"),
                         DYN_SLICE_LIT("a-b")};
    dyn_slice more[] = {DYN_SLICE_LIT("key2"), DYN_SLICE_LIT("key3")};
    dyn_slice first[] = {DYN_SLICE_LIT("key1"), DYN_SLICE_LIT("key2")};
    struct dyn_expr *e = NULL, *x = NULL, *y = NULL;
    CHECK(dyn_expr_projection_new(A, paths, 8, &e, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "#a, #a-b, #b, #list[0], #list[1].#y");
    /* "x" and "z" were only used by dropped paths: they are gone */
    CHECK_EQ_INT(dyn_expr_segment_count(e), 5);
    dyn_expr_free(e);
    CHECK(dyn_expr_projection_new(A, first, 2, &x, NULL) == DYN_OK);
    CHECK(dyn_expr_projection_new(A, more, 2, &y, NULL) == DYN_OK);
    CHECK(dyn_expr_combine(DYN_EXPR_AND, x, y, &e, NULL, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "#key1, #key2, #key3");
    dyn_expr_free(e);
    dyn_expr_free(x);
    dyn_expr_free(y);
}

static struct dyn_expr_update_item item(int action, const char *path, struct dyn_expr_operand v) {
    struct dyn_expr_update_item it;
    it.action = action;
    it.path = dyn_slice_cstr(path);
    it.value = v;
    return it;
}

TEST(update_templates) {
    struct dyn_expr_update_item items[] = {
        item(DYN_EXPR_REMOVE, "remove", N("")),      item(DYN_EXPR_ADD, "add", N("add")),
        item(DYN_EXPR_SET, "update", N("update")),   item(DYN_EXPR_DELETE, "delete", N("delete")),
        item(DYN_EXPR_SET, "update2", N("update2")), item(DYN_EXPR_ADD, "add2", N("add2")),
        item(DYN_EXPR_DELETE, "delete2", N("delete2")), item(DYN_EXPR_REMOVE, "remove2", N("")),
    };
    struct dyn_expr_update_item sets[] = {
        item(DYN_EXPR_PREPEND, "p", N("pv")),           item(DYN_EXPR_APPEND, "l[2].m", N("lv")),
        item(DYN_EXPR_DECREMENT, "d", L("1")),          item(DYN_EXPR_INCREMENT, "i", N("iv")),
        item(DYN_EXPR_SET_IF_NOT_EXISTS, "c", N("now")), item(DYN_EXPR_SET, "s", N("sv")),
        item(DYN_EXPR_SET, "s", N("sv")),
    };
    struct dyn_expr *e = NULL;
    CHECK(dyn_expr_update_new(A, items, 8, &e, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "SET #update = :update, #update2 = :update2 ADD #add :add, #add2 :add2 DELETE #delete "
                          ":delete, #delete2 :delete2 REMOVE #remove, #remove2");
    dyn_expr_free(e);
    e = NULL;
    CHECK(dyn_expr_update_new(A, sets, 7, &e, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "SET #s = :sv, #c = if_not_exists(#c, :now), #i = #i + :iv, #d = #d - 1, "
                          "#l[2].#m = list_append(#l[2].#m, :lv), #p = list_append(:pv, #p)");
    dyn_expr_free(e);
}

TEST(update_overlap_and_merge) {
    struct dyn_expr_update_item a[] = {item(DYN_EXPR_SET, "key1", N("key1")), item(DYN_EXPR_SET, "key2", N("key2"))};
    struct dyn_expr_update_item b[] = {item(DYN_EXPR_SET, "key3", N("key3")), item(DYN_EXPR_REMOVE, "key4", N("")),
                                       item(DYN_EXPR_SET, "key1", N("key1"))};
    struct dyn_expr_update_item bad[] = {item(DYN_EXPR_SET, "a.b", N("x")), item(DYN_EXPR_REMOVE, "a", N(""))};
    struct dyn_expr_update_item bad2[] = {item(DYN_EXPR_SET, "a", N("x")), item(DYN_EXPR_SET, "a", N("y"))};
    struct dyn_expr *x = NULL, *y = NULL, *e = NULL;
    struct dyn_buf err = DYN_BUF_INIT(A);
    CHECK(dyn_expr_update_new(A, a, 2, &x, NULL) == DYN_OK);
    CHECK(dyn_expr_update_new(A, b, 3, &y, NULL) == DYN_OK);
    CHECK(dyn_expr_combine(DYN_EXPR_AND, x, y, &e, NULL, NULL) == DYN_OK);
    CHECK_EQ_STR(tmpl(e), "SET #key1 = :key1, #key2 = :key2, #key3 = :key3 REMOVE #key4");
    dyn_expr_free(e);
    e = NULL;
    CHECK(dyn_expr_update_new(A, bad, 2, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "paths overlap in an update expression: \"a.b\" and \"a\"");
    dyn_buf_reset(&err);
    CHECK(dyn_expr_update_new(A, bad2, 2, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "paths overlap in an update expression: \"a\" and \"a\"");
    CHECK(e == NULL);
    dyn_expr_free(x);
    dyn_expr_free(y);
    dyn_buf_free(&err);
}

TEST(update_operator_limit) {
    struct dyn_expr_update_item items[301];
    char names[301][8];
    struct dyn_expr *e = NULL;
    struct dyn_buf err = DYN_BUF_INIT(A);
    int i;
    for (i = 0; i < 301; i++) {
        sprintf(names[i], "n%d", i);
        items[i] = item(DYN_EXPR_INCREMENT, names[i], N("one"));
    }
    CHECK(dyn_expr_update_new(A, items, 300, &e, NULL) == DYN_OK);
    dyn_expr_free(e);
    e = NULL;
    CHECK(dyn_expr_update_new(A, items, 301, &e, &err) == DYN_EINVAL);
    CHECK_EQ_STR(err.ptr, "an update expression takes at most 300 functions and operators, got 301");
    dyn_buf_free(&err);
}

/* ---- rendering ---- */

struct req {
    const struct dyn_expr *exprs[DYN_EXPR_SLOTS];
    struct dyn_expr_value_info infos[DYN_EXPR_SLOTS][128];
    const struct dyn_expr_value_info *ip[DYN_EXPR_SLOTS];
};

/* Every operand present as a string, except names listed in the overrides. */
static void req_init(struct req *q) {
    int s, i;
    memset(q, 0, sizeof *q);
    for (s = 0; s < DYN_EXPR_SLOTS; s++) {
        for (i = 0; i < 128; i++) q->infos[s][i].type = DYN_EXPR_V_STRING;
        q->ip[s] = q->infos[s];
    }
}

static void req_set(struct req *q, const char *name, int type, size_t count) {
    int s;
    size_t i;
    for (s = 0; s < DYN_EXPR_SLOTS; s++) {
        if (!q->exprs[s]) continue;
        for (i = 0; i < dyn_expr_value_count(q->exprs[s]); i++) {
            struct dyn_expr_operand v = dyn_expr_value(q->exprs[s], i);
            if (dyn_slice_eq_cstr(v.text, name)) {
                q->infos[s][i].type = type;
                q->infos[s][i].count = count;
            }
        }
    }
}

static char out_buf[16384];

/* "Slot=text|...|#aaa=seg,...|:aaa=slot/index/elem,..." */
static const char *describe(struct dyn_expr_renderer *r) {
    size_t n = 0, i;
    int s;
    char ph[24];
    for (s = 0; s < DYN_EXPR_SLOTS; s++) {
        if (!r->len[s]) continue;
        n += (size_t)snprintf(out_buf + n, sizeof out_buf - n, "%.*s|", (int)r->len[s], r->text.ptr + r->off[s]);
    }
    for (i = 0; i < r->n_names; i++) {
        dyn_expr_placeholder((uint32_t)i, -1, ph);
        n += (size_t)snprintf(out_buf + n, sizeof out_buf - n, "#%s=%d.%zu ", ph, r->names[i].slot, r->names[i].seg);
    }
    n += (size_t)snprintf(out_buf + n, sizeof out_buf - n, "|");
    for (i = 0; i < r->n_values; i++) {
        dyn_expr_placeholder(r->values[i].seq, r->values[i].elem, ph);
        n += (size_t)snprintf(out_buf + n, sizeof out_buf - n, ":%s=%d.%zu ", ph, r->values[i].slot,
                              r->values[i].index);
    }
    return out_buf;
}

static int run(struct dyn_expr_renderer *r, struct req *q) { return dyn_expr_render(r, q->exprs, q->ip); }

TEST(render_reference_update_item) {
    /* reference test_update_item: condition pk, update test */
    struct dyn_expr_update_item u[] = {item(DYN_EXPR_SET, "test", N("test"))};
    struct dyn_expr *c = cond("pk", "=", "pk", NULL), *up = NULL;
    struct dyn_expr_renderer r;
    struct req q;
    req_init(&q);
    dyn_expr_renderer_init(&r, A);
    CHECK(dyn_expr_update_new(A, u, 1, &up, NULL) == DYN_OK);
    q.exprs[DYN_EXPR_SLOT_CONDITION] = c;
    q.exprs[DYN_EXPR_SLOT_UPDATE] = up;
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aaa = :aaa|SET #aab = :aab|#aaa=2.0 #aab=3.0 |:aaa=2.0 :aab=3.0 ");
    dyn_expr_free(c);
    dyn_expr_free(up);
    dyn_expr_renderer_free(&r);
}

TEST(render_shares_names_and_values) {
    /* reference test_query: key pk (+ sk), filter on key, projection; names sorted */
    dyn_slice proj[] = {DYN_SLICE_LIT("test"), DYN_SLICE_LIT("pk")};
    struct dyn_expr *k = join(DYN_EXPR_AND, cond("pk", "=", "pk", NULL), cond("sk", "=", "sk", NULL));
    struct dyn_expr *f = join(DYN_EXPR_AND, cond("key", "IN", "key", NULL), cond("test", "=", "pk", NULL));
    struct dyn_expr *p = NULL;
    struct dyn_expr_renderer r;
    struct req q;
    CHECK(dyn_expr_projection_new(A, proj, 2, &p, NULL) == DYN_OK);
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_KEY] = k;
    q.exprs[DYN_EXPR_SLOT_FILTER] = f;
    q.exprs[DYN_EXPR_SLOT_PROJECTION] = p;
    req_set(&q, "key", DYN_EXPR_V_LIST, 2);
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aab = :aaa AND #aac = :aab|#aaa IN (:aac_0, :aac_1) AND #aad = :aaa|#aab, #aad|"
                               "#aaa=1.0 #aab=0.0 #aac=0.1 #aad=1.1 |:aaa=0.0 :aab=0.1 :aac_0=1.0 :aac_1=1.0 ");
    /* the same renderer again gives the same bytes */
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aab = :aaa AND #aac = :aab|#aaa IN (:aac_0, :aac_1) AND #aad = :aaa|#aab, #aad|"
                               "#aaa=1.0 #aab=0.0 #aac=0.1 #aad=1.1 |:aaa=0.0 :aab=0.1 :aac_0=1.0 :aac_1=1.0 ");
    dyn_expr_free(k);
    dyn_expr_free(f);
    dyn_expr_free(p);
    dyn_expr_renderer_free(&r);
}

TEST(render_literals_get_their_own_placeholders) {
    struct dyn_expr_operand one = L("1");
    struct dyn_expr *a = NULL, *b = NULL, *e;
    struct dyn_expr_renderer r;
    struct req q;
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_EQ, dyn_slice_cstr("a"), 0, &one, 1, &a, NULL) == DYN_OK);
    CHECK(dyn_expr_condition_new(A, DYN_EXPR_EQ, dyn_slice_cstr("b"), 0, &one, 1, &b, NULL) == DYN_OK);
    e = join(DYN_EXPR_OR, a, join(DYN_EXPR_AND, b, cond("c", "=", "c", NULL)));
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = e;
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aaa = :aaa OR (#aab = :aab AND #aac = :aac)|#aaa=1.0 #aab=1.1 #aac=1.2 |"
                               ":aaa=1.0 :aab=1.1 :aac=1.2 ");
    dyn_expr_free(e);
    dyn_expr_renderer_free(&r);
}

TEST(render_in_expansion_limits) {
    struct dyn_expr *f = cond("k", "IN", "ids", NULL);
    struct dyn_expr_renderer r;
    struct req q;
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = f;
    dyn_expr_renderer_init(&r, A);
    req_set(&q, "ids", DYN_EXPR_V_SET, 100);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_INT(r.n_values, 100);
    CHECK(r.values[99].elem == 99);
    req_set(&q, "ids", DYN_EXPR_V_SET, 101);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK_EQ_STR(r.error.ptr, "IN takes at most 100 values, got 101 in FilterExpression \"#k IN (:ids)\"");
    req_set(&q, "ids", DYN_EXPR_V_LIST, 0);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK_EQ_STR(r.error.ptr, "IN needs at least one value, value \"ids\" is an empty list in FilterExpression "
                              "\"#k IN (:ids)\"");
    req_set(&q, "ids", DYN_EXPR_V_NUMBER, 0);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aaa IN (:aaa)|#aaa=1.0 |:aaa=1.0 ");
    dyn_expr_free(f);
    dyn_expr_renderer_free(&r);
}

/* Found by fuzz_expr: one name in two slots whose infos disagree is expanded as first used. */
TEST(render_shared_name_uses_first_info) {
    struct dyn_expr *f = cond("k", "IN", "ids", NULL);
    struct dyn_expr_renderer r;
    struct req q;
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = f;
    q.exprs[DYN_EXPR_SLOT_CONDITION] = f;
    q.infos[DYN_EXPR_SLOT_FILTER][0].type = DYN_EXPR_V_LIST;
    q.infos[DYN_EXPR_SLOT_FILTER][0].count = 2;
    q.infos[DYN_EXPR_SLOT_CONDITION][0].type = DYN_EXPR_V_LIST;
    q.infos[DYN_EXPR_SLOT_CONDITION][0].count = 5;
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aaa IN (:aaa_0, :aaa_1)|#aaa IN (:aaa_0, :aaa_1)|#aaa=1.0 |:aaa_0=1.0 :aaa_1=1.0 ");
    dyn_expr_free(f);
    dyn_expr_renderer_free(&r);
}

TEST(render_missing_value_names_both) {
    struct dyn_expr *f = join(DYN_EXPR_AND, cond("age", "<=", "age", NULL), cond("name", "=", "name", NULL));
    struct dyn_expr_renderer r;
    struct req q;
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = f;
    req_set(&q, "name", DYN_EXPR_V_MISSING, 0);
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK_EQ_STR(r.error.ptr, "value \"name\" is missing from data in FilterExpression \"#age <= :age AND #name = "
                              ":name\"");
    dyn_expr_free(f);
    dyn_expr_renderer_free(&r);
}

TEST(render_update_value_types) {
    struct dyn_expr_update_item u[] = {item(DYN_EXPR_ADD, "n", N("n")), item(DYN_EXPR_DELETE, "s", N("s")),
                                       item(DYN_EXPR_APPEND, "l", N("l")), item(DYN_EXPR_INCREMENT, "i", N("i"))};
    struct dyn_expr *e = NULL;
    struct dyn_expr_renderer r;
    struct req q;
    CHECK(dyn_expr_update_new(A, u, 4, &e, NULL) == DYN_OK);
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_UPDATE] = e;
    req_set(&q, "n", DYN_EXPR_V_NUMBER, 0);
    req_set(&q, "s", DYN_EXPR_V_SET, 2);
    req_set(&q, "l", DYN_EXPR_V_LIST, 2);
    req_set(&q, "i", DYN_EXPR_V_NUMBER, 0);
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "SET #aaa = #aaa + :aaa, #aab = list_append(#aab, :aab) ADD #aac :aac DELETE #aad "
                               ":aad|#aaa=3.0 #aab=3.1 #aac=3.2 #aad=3.3 |:aaa=3.3 :aab=3.2 :aac=3.0 :aad=3.1 ");
    req_set(&q, "n", DYN_EXPR_V_STRING, 0);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK_EQ_STR(r.error.ptr, "ADD needs a number or a set, value \"n\" is a string in UpdateExpression "
                              "\"SET #i = #i + :i, #l = list_append(#l, :l) ADD #n :n DELETE #s :s\"");
    req_set(&q, "n", DYN_EXPR_V_SET, 1);
    req_set(&q, "s", DYN_EXPR_V_NUMBER, 0);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK(strstr(r.error.ptr, "DELETE needs a set, value \"s\" is a number") == r.error.ptr);
    req_set(&q, "s", DYN_EXPR_V_SET, 1);
    q.infos[DYN_EXPR_SLOT_UPDATE][2].type_name = "map";
    req_set(&q, "l", DYN_EXPR_V_OTHER, 0);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK(strstr(r.error.ptr, "list_append needs a list, value \"l\" is a map") == r.error.ptr);
    req_set(&q, "l", DYN_EXPR_V_LIST, 1);
    req_set(&q, "i", DYN_EXPR_V_SET, 1);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK(strstr(r.error.ptr, "arithmetic needs a number, value \"i\" is a set") == r.error.ptr);
    dyn_expr_free(e);
    dyn_expr_renderer_free(&r);
}

static int key_error(struct dyn_expr *k, const char *want) {
    struct dyn_expr_renderer r;
    struct req q;
    int ok;
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_KEY] = k;
    dyn_expr_renderer_init(&r, A);
    ok = k && run(&r, &q) == DYN_EINVAL && r.error.ptr && strcmp(r.error.ptr, want) == 0;
    if (!ok) fprintf(stderr, "  got: %s\n", r.error.ptr ? r.error.ptr : "(none)");
    dyn_expr_free(k);
    dyn_expr_renderer_free(&r);
    return ok;
}

TEST(render_key_conditions) {
    struct dyn_expr *k = join(DYN_EXPR_AND, cond("pk", "=", "pk", NULL), cond("sk", "begins_with", "p", NULL));
    struct dyn_expr_renderer r;
    struct req q;
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_KEY] = k;
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_OK);
    CHECK_EQ_STR(describe(&r), "#aaa = :aaa AND begins_with(#aab, :aab)|#aaa=0.0 #aab=0.1 |:aaa=0.0 :aab=0.1 ");
    dyn_expr_free(k);
    dyn_expr_renderer_free(&r);
    CHECK(key_error(cond("pk", "contains", "pk", NULL),
                    "operator \"contains\" is not supported in key conditions (valid: =, <, <=, >, >=, BETWEEN, "
                    "begins_with) in KeyConditionExpression \"contains(#pk, :pk)\""));
    CHECK(key_error(join(DYN_EXPR_OR, cond("pk", "=", "pk", NULL), cond("sk", "=", "sk", NULL)),
                    "a key condition is a partition key equality, optionally AND-ed with one sort key condition in "
                    "KeyConditionExpression \"#pk = :pk OR #sk = :sk\""));
    CHECK(key_error(not_(cond("pk", "=", "pk", NULL)),
                    "a key condition is a partition key equality, optionally AND-ed with one sort key condition in "
                    "KeyConditionExpression \"NOT #pk = :pk\""));
    CHECK(key_error(cond("pk", "<", "pk", NULL),
                    "a key condition needs an equality on the partition key in KeyConditionExpression \"#pk < :pk\""));
    CHECK(key_error(join(DYN_EXPR_AND, cond("pk", "=", "pk", NULL), cond("pk", ">", "x", NULL)),
                    "a key condition names two different keys in KeyConditionExpression \"#pk = :pk AND #pk > :x\""));
    CHECK(key_error(cond("a.b", "=", "x", NULL),
                    "a key condition takes top-level key attributes, not size() or document paths in "
                    "KeyConditionExpression \"#a.#b = :x\""));
    CHECK(key_error(join(DYN_EXPR_AND, cond("a", "=", "x", NULL),
                         join(DYN_EXPR_AND, cond("b", "=", "x", NULL), cond("c", "=", "x", NULL))),
                    "a key condition is a partition key equality, optionally AND-ed with one sort key condition in "
                    "KeyConditionExpression \"#a = :x AND #b = :x AND #c = :x\""));
}

TEST(render_wrong_kind_in_slot) {
    dyn_slice p = DYN_SLICE_LIT("a");
    struct dyn_expr *pr = NULL;
    struct dyn_expr_renderer r;
    struct req q;
    CHECK(dyn_expr_projection_new(A, &p, 1, &pr, NULL) == DYN_OK);
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = pr;
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK_EQ_STR(r.error.ptr, "FilterExpression needs a condition, got a projection");
    dyn_expr_free(pr);
    dyn_expr_renderer_free(&r);
}

TEST(render_length_limit) {
    struct dyn_expr *e = cond("a", "=", "v0", NULL), *n;
    struct dyn_expr_renderer r;
    struct req q;
    char name[16];
    int i;
    /* 280 clauses of "#aaa = :aaa" joined by " OR ": 280 * 15 - 4 = 4196 bytes */
    for (i = 1; i < 280; i++) {
        sprintf(name, "v%d", i);
        n = join(DYN_EXPR_OR, e, cond("a", "=", name, NULL));
        e = n;
    }
    CHECK(e != NULL);
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = e;
    dyn_expr_renderer_init(&r, A);
    CHECK(run(&r, &q) == DYN_EINVAL);
    CHECK(strstr(r.error.ptr, "the expression is 4196 bytes, more than the 4096 DynamoDB takes in FilterExpression "
                              "\"#a = :v0 OR") == r.error.ptr);
    CHECK(strstr(r.error.ptr, "...\"") != NULL);
    dyn_expr_free(e);
    dyn_expr_renderer_free(&r);
}

TEST(placeholder_text) {
    char ph[24];
    CHECK_EQ_INT(dyn_expr_placeholder(0, -1, ph), 3);
    CHECK_EQ_STR(ph, "aaa");
    dyn_expr_placeholder(27, -1, ph);
    CHECK_EQ_STR(ph, "abb");
    dyn_expr_placeholder(17575, 12, ph);
    CHECK_EQ_STR(ph, "zzz_12");
}

/* ---- allocation failures ---- */

static long fail_at;
static long alloc_count;
static void *counting_alloc(void *ud, void *p, size_t o, size_t n) {
    (void)ud;
    if (n) {
        if (alloc_count++ == fail_at) return NULL;
    }
    return dyn_default_allocator()->fn(NULL, p, o, n);
}

/* Builds, combines and renders with every allocation failing in turn. */
static int build_and_render(const struct dyn_allocator *a) {
    dyn_slice proj[] = {DYN_SLICE_LIT("x.y"), DYN_SLICE_LIT("x")};
    struct dyn_expr_operand v[2];
    struct dyn_expr_update_item u[2];
    struct dyn_expr *c1 = NULL, *c2 = NULL, *g = NULL, *ng = NULL, *p = NULL, *up = NULL;
    struct dyn_expr_renderer r;
    struct req q;
    int rc;
    dyn_expr_renderer_init(&r, a);
    v[0] = N("lo");
    v[1] = N("hi");
    u[0] = item(DYN_EXPR_SET, "s.t", N("lo"));
    u[1] = item(DYN_EXPR_ADD, "n", L("1"));
    if ((rc = dyn_expr_condition_new(a, DYN_EXPR_BETWEEN, dyn_slice_cstr("a.b[1]"), 0, v, 2, &c1, NULL))) goto done;
    if ((rc = dyn_expr_condition_new(a, DYN_EXPR_IN, dyn_slice_cstr("c"), 0, v, 2, &c2, NULL))) goto done;
    if ((rc = dyn_expr_combine(DYN_EXPR_OR, c1, c2, &g, NULL, NULL))) goto done;
    if ((rc = dyn_expr_negate(g, &ng, NULL))) goto done;
    if ((rc = dyn_expr_projection_new(a, proj, 2, &p, NULL))) goto done;
    if ((rc = dyn_expr_update_new(a, u, 2, &up, NULL))) goto done;
    req_init(&q);
    q.exprs[DYN_EXPR_SLOT_FILTER] = ng;
    q.exprs[DYN_EXPR_SLOT_UPDATE] = up;
    q.exprs[DYN_EXPR_SLOT_PROJECTION] = p;
    req_set(&q, "hi", DYN_EXPR_V_LIST, 3);
    q.infos[DYN_EXPR_SLOT_UPDATE][1].type = DYN_EXPR_V_NUMBER;
    rc = run(&r, &q);
    if (rc == DYN_OK && strcmp(describe(&r), "NOT (#aaa.#aab[1] BETWEEN :aaa AND :aab OR #aac IN (:aaa, :aab_0, "
                                             ":aab_1, :aab_2))|SET #aae.#aaf = :aaa ADD #aad :aac|#aag|"
                                             "#aaa=1.0 #aab=1.1 #aac=1.2 #aad=3.0 #aae=3.1 #aaf=3.2 #aag=4.0 |"
                                             ":aaa=1.0 :aab=1.1 :aab_0=1.1 :aab_1=1.1 :aab_2=1.1 :aac=3.1 ") != 0) {
        fprintf(stderr, "  got: %s\n", out_buf);
        rc = -100;
    }
done:
    dyn_expr_free(c1);
    dyn_expr_free(c2);
    dyn_expr_free(g);
    dyn_expr_free(ng);
    dyn_expr_free(p);
    dyn_expr_free(up);
    dyn_expr_renderer_free(&r);
    return rc;
}

TEST(every_allocation_failure_is_clean) {
    struct dyn_allocator a = {counting_alloc, NULL};
    long total;
    fail_at = -1;
    alloc_count = 0;
    CHECK_EQ_INT(build_and_render(&a), DYN_OK);
    total = alloc_count;
    CHECK(total > 20);
    for (fail_at = 0; fail_at < total; fail_at++) {
        int rc;
        alloc_count = 0;
        rc = build_and_render(&a);
        if (rc != DYN_ENOMEM) fprintf(stderr, "  allocation %ld: rc %d\n", fail_at, rc);
        CHECK(rc == DYN_ENOMEM);
    }
}

int main(void) {
    A = dyn_default_allocator();
    RUN(paths_parse_and_normalize);
    RUN(path_depth_limit);
    RUN(escape_round_trips);
    RUN(operator_names);
    RUN(condition_templates);
    RUN(size_and_literals);
    RUN(condition_arity_errors);
    RUN(grouping_keeps_parentheses);
    RUN(combine_numbers_values);
    RUN(combine_kind_errors);
    RUN(depth_limit);
    RUN(projection_dedup_and_overlap);
    RUN(update_templates);
    RUN(update_overlap_and_merge);
    RUN(update_operator_limit);
    RUN(render_reference_update_item);
    RUN(render_shares_names_and_values);
    RUN(render_literals_get_their_own_placeholders);
    RUN(render_in_expansion_limits);
    RUN(render_shared_name_uses_first_info);
    RUN(render_missing_value_names_both);
    RUN(render_update_value_types);
    RUN(render_key_conditions);
    RUN(render_wrong_kind_in_slot);
    RUN(render_length_limit);
    RUN(placeholder_text);
    RUN(every_allocation_failure_is_clean);
    return testing_done();
}
