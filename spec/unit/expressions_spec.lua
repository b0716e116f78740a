-- dynamo.expressions: construction, combination, templates and rendering of
-- whole requests. Ports the reference's tests/test_expressions.py and the
-- request shapes of tests/test_dynamo_query_main.py, adapted to the fixes
-- (parentheses, NOT, nested paths, literals, IN expansion, limits).
local E = require("dynamo.expressions")
local errors = require("dynamo.errors")
local core = require("dynamo.core")

local C = E.ConditionExpression
local P = E.ProjectionExpression
local U = E.UpdateExpression
local render = E.render_request

-- The error a call raises (a dynamo.errors object is expected).
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return err
end

local function validation(f, ...)
  local err = raised(f, ...)
  assert.is_true(errors.is(err, "Validation"), "not a Validation error: " .. tostring(err))
  return err.message
end

local function sorted(t)
  local copy = {}
  for i, v in ipairs(t) do copy[i] = v end
  table.sort(copy)
  return copy
end

describe("dynamo.expressions", function()
  describe("ProjectionExpression (reference TestProjectionExpression)", function()
    it("sorts its paths and renders them as placeholders", function()
      assert.equal("#key1, #key2", tostring(P("key2", "key1")))
      assert.equal("#key1, #key2", P("key1", "key2"):render())
      assert.equal("#key1, #key2", tostring(P{ "key2", "key1" }))
    end)

    it("reports its attribute names and no values", function()
      local p = P("key1", "key2")
      assert.same({ "key1", "key2" }, p:attribute_names())
      assert.same({}, p:value_names())
    end)

    it("merges with & and drops duplicates", function()
      assert.equal("#key1, #key2, #key3", tostring(P("key1", "key2") & P("key2", "key3")))
      assert.equal("#a", tostring(P("a", "a", "a")))
    end)

    it("drops paths inside another listed path (DynamoDB rejects overlaps)", function()
      assert.equal("#a, #b[1]", tostring(P("a.b", "a", "b[1].c", "b[1]", "a.c[2]")))
      assert.equal("#a", tostring(P("a.x") & P("a")))
    end)

    it("refuses to mix with conditions, to | and to ~", function()
      assert.matches("cannot combine a ProjectionExpression with a ConditionExpression",
        validation(function() return P("a") & C("a") end))
      assert.matches("only merges with &", validation(function() return P("a") | P("b") end))
      assert.matches("only a ConditionExpression can be negated", validation(function() return ~P("a") end))
      assert.matches("cannot combine", validation(function() return P("a") & "b" end))
    end)

    it("rejects bad paths with the position", function()
      assert.equal('invalid path "a..b": empty name at character 3', validation(P, "a..b"))
      assert.matches("path 2 must be a string", validation(P, "a", 3))
      assert.matches("at least one path", validation(P))
    end)
  end)

  describe("ConditionExpression (reference TestConditionExpression)", function()
    it("defaults the operator to = and the value name to the key", function()
      local c = C("key2")
      assert.equal("=", c.operator)
      assert.equal("key2", c.value)
      assert.equal("key2", C("key2", "=").value)
      assert.equal("#key2 = :key2", tostring(c))
    end)

    it("takes no value for the exists functions, and false flips them", function()
      assert.is_true(C("key", "attribute_exists").value)
      assert.equal("attribute_not_exists(#key)", tostring(C("key", "attribute_exists", false)))
      assert.equal("attribute_exists(#key)", tostring(C("key", "attribute_not_exists", false)))
      assert.matches("takes no value", validation(C, "key", "attribute_exists", "x"))
    end)

    it("requires two values for BETWEEN", function()
      assert.matches("BETWEEN requires a list of two values", validation(C, "key", "BETWEEN", "value"))
      assert.matches("BETWEEN requires a list of two values", validation(C, "key", "BETWEEN", { "a" }))
      assert.matches("BETWEEN requires a list of two values", validation(C, "key", "BETWEEN", { "a", "b", "c" }))
    end)

    it("rejects unknown operators, listing the valid ones", function()
      local msg = validation(C, "key", "eq")
      assert.matches('invalid operator "eq"', msg, 1, true)
      assert.matches("=, <>, <, <=, >, >=, IN, BETWEEN, begins_with, contains, attribute_exists, "
        .. "attribute_not_exists, attribute_type", msg, 1, true)
      assert.matches('invalid operator "in"', validation(C, "key", "in"), 1, true)
      assert.matches("operator must be a string", validation(C, "key", 5))
      assert.matches("key must be an attribute path", validation(C, 5))
    end)

    it("reports attribute names split on dots and value names", function()
      local c = C("nested.key.test")
      assert.same({ "key", "nested", "test" }, c:attribute_names())
      assert.same({ "nested.key.test" }, c:value_names())
      assert.same({ "value1", "value2" }, sorted(C("key3", "BETWEEN", { "value1", "value2" }):value_names()))
      assert.same({}, C("key", "attribute_exists"):value_names())
    end)

    local forms = {
      { { "key", "=", "value" }, "#key = :value" },
      { { "key", "<>", "value" }, "#key <> :value" },
      { { "key", "<", "value" }, "#key < :value" },
      { { "key", "<=", "value" }, "#key <= :value" },
      { { "key", ">", "value" }, "#key > :value" },
      { { "key", ">=", "value" }, "#key >= :value" },
      { { "key2", "attribute_exists" }, "attribute_exists(#key2)" },
      { { "key2", "attribute_not_exists" }, "attribute_not_exists(#key2)" },
      { { "key3", "BETWEEN", { "value1", "value2" } }, "#key3 BETWEEN :value1 AND :value2" },
      { { "key", "IN", "value" }, "#key IN (:value)" },
      { { "key", "IN", { "a", "b" } }, "#key IN (:a, :b)" },
      { { "key", "begins_with", "value" }, "begins_with(#key, :value)" },
      { { "key", "contains", "value" }, "contains(#key, :value)" },
      { { "key", "attribute_type", "t" }, "attribute_type(#key, :t)" },
      { { "nested.key.test" }, "#nested.#key.#test = :nested.key.test" },
      { { "list[2].x", ">", "v" }, "#list[2].#x > :v" },
    }
    for _, case in ipairs(forms) do
      it("renders " .. case[2], function()
        assert.equal(case[2], tostring(C(table.unpack(case[1], 1, 3))))
      end)
    end

    it("needs the type for attribute_type", function()
      assert.matches("attribute_type needs the type", validation(C, "key", "attribute_type"))
      assert.equal('attribute_type(#key, "S")', tostring(C("key", "attribute_type", E.literal("S"))))
    end)

    it("compares sizes with size()", function()
      assert.equal("size(#name) > :n", tostring(C(E.size("name"), ">", "n")))
      assert.equal("size(#tags) BETWEEN 1 AND :hi", tostring(C(E.size("tags"), "BETWEEN", { E.literal(1), "hi" })))
      assert.equal("size(#a.#b) IN (:x)", tostring(C(E.size("a.b"), "IN", "x")))
      assert.matches("size%(%) cannot be used with begins_with",
        validation(C, E.size("name"), "begins_with", "p"))
    end)

    it("takes literals instead of names", function()
      assert.equal("#age > 21", tostring(C("age", ">", E.literal(21))))
      assert.equal('#name = "J\\"o"', tostring(C("name", "=", E.literal('J"o'))))
      assert.equal("#k IN ({1, 2, 3})", tostring(C("k", "IN", E.literal{ 1, 2, 3 })))
      assert.same({}, C("age", ">", E.literal(21)):value_names())
      assert.matches("dynamo.literal needs a value", validation(E.literal, nil))
      assert.matches("must be a value name %(string%) or dynamo.literal", validation(C, "a", "=", 5))
    end)
  end)

  describe("grouping (reference TestConditionExpressionGroup, with W5 fixed)", function()
    it("joins with AND and OR", function()
      assert.equal("#key = :value AND attribute_exists(#key2)",
        tostring(C("key", "=", "value") & C("key2", "attribute_exists")))
      assert.equal("#key = :value OR attribute_exists(#key2)",
        tostring(C("key", "=", "value") | C("key2", "attribute_exists")))
    end)

    it("keeps a & (b | c) grouped", function()
      local e = C("key3", "BETWEEN", { "value1", "value2" }) & (C("key", "=", "value") | C("key2", "attribute_exists"))
      assert.equal("#key3 BETWEEN :value1 AND :value2 AND (#key = :value OR attribute_exists(#key2))", tostring(e))
    end)

    it("combines groups with groups and conditions", function()
      local g1 = C("key", ">", "value") & C("key2")
      local g2 = C("key3") | C("key4")
      assert.equal("#key > :value AND #key2 = :key2 AND (#key3 = :key3 OR #key4 = :key4)", tostring(g1 & g2))
      assert.equal("(#key > :value AND #key2 = :key2) OR #key3 = :key3 OR #key4 = :key4", tostring(g1 | g2))
      assert.equal("#key > :value AND #key2 = :key2 AND #key5 = :key5", tostring(g1 & C("key5")))
      assert.equal("(#key > :value AND #key2 = :key2) OR #key5 = :key5", tostring(g1 | C("key5")))
    end)

    it("unites attribute and value names", function()
      local g = C("key", ">", "value") & C("key2")
      assert.same({ "key", "key2" }, g:attribute_names())
      assert.same({ "key2", "value" }, sorted(g:value_names()))
    end)

    it("negates with ~, and ~~a is a again", function()
      assert.equal("NOT #a = :a", tostring(~C("a")))
      assert.equal("NOT (#a = :a OR #b = :b)", tostring(~(C("a") | C("b"))))
      assert.equal("#a = :a OR #b = :b", tostring(~~(C("a") | C("b"))))
      assert.equal("#age <= :age AND NOT begins_with(#name, :prefix)",
        tostring(C("age", "<=") & ~C("name", "begins_with", "prefix")))
    end)

    it("rejects nesting deeper than 32 groups", function()
      local e = C("a")
      local ok, err = pcall(function()
        for i = 1, 40 do e = (i % 2 == 0) and (e & C("b" .. i)) or (e | C("b" .. i)) end
      end)
      assert.is_false(ok)
      assert.equal("condition nested deeper than 32 levels", err.message)
    end)
  end)

  describe("UpdateExpression (reference TestUpdateExpression)", function()
    it("takes positional SET paths and a remove list", function()
      assert.equal("SET #key1 = :key1, #key2 = :key2", tostring(U("key1", "key2")))
      assert.equal("SET #key3 = :key3 REMOVE #key4", tostring(U("key3", { remove = { "key4" } })))
      assert.equal("REMOVE #value", tostring(U{ remove = { "value" } }))
    end)

    it("reports names including remove and values excluding it", function()
      local u = U("key3", { remove = { "key4" } })
      assert.same({ "key3", "key4" }, u:attribute_names())
      assert.same({ "key3" }, u:value_names())
    end)

    it("renders the clauses in the order SET, ADD, DELETE, REMOVE", function()
      local u = U{ add = { "add", "add2" }, update = { "update", "update2" }, delete = { "delete", "delete2" },
                   remove = { "remove", "remove2" } }
      assert.equal("SET #update = :update, #update2 = :update2 ADD #add :add, #add2 :add2 DELETE #delete :delete, "
        .. "#delete2 :delete2 REMOVE #remove, #remove2", tostring(u))
      assert.equal("SET #first_name = :first_name, #created_at = if_not_exists(#created_at, :created_at) "
        .. "ADD #tags :tags", tostring(U{ update = { "first_name" }, set_if_not_exists = { "created_at" },
                                          add = { "tags" } }))
    end)

    it("renders list_append and arithmetic", function()
      assert.equal("SET #n = #n + :n, #m = #m - 1, #l = list_append(#l, :l), #p = list_append(:p, #p)",
        tostring(U{ increment = { "n" }, decrement = { m = E.literal(1) }, append = { "l" }, prepend = { "p" } }))
    end)

    it("takes { path, value } pairs and path = value keys in byte order", function()
      assert.equal("SET #a.#b = :x, #A = 5, #B = :y, #Z = :z",
        tostring(U{ update = { { "a.b", "x" }, Z = "z", A = E.literal(5), B = "y" } }))
      assert.equal("REMOVE #a, #b", tostring(U{ remove = { b = true, "a" } }))
    end)

    it("works on nested paths and list indexes", function()
      assert.equal("SET #a.#b[0].#c = :v REMOVE #x[3]", tostring(U{ update = { { "a.b[0].c", "v" } }, remove = { "x[3]" } }))
    end)

    it("merges with & (ordered, without repeats)", function()
      assert.equal("SET #key1 = :key1, #key2 = :key2, #key3 = :key3 REMOVE #key4",
        tostring(U("key1", "key2") & U("key3", "key1", { remove = { "key4" } })))
    end)

    it("rejects overlapping paths, bad options and mixing kinds", function()
      assert.equal('paths overlap in an update expression: "a" and "a.b"',
        validation(U, { update = { "a" }, remove = { "a.b" } }))
      assert.matches("paths overlap", validation(function() return U("a") & U{ add = { "a" } } end))
      assert.matches("unknown UpdateExpression option upsert", validation(U, { upsert = { "a" } }))
      assert.matches("needs at least one action", validation(U, {}))
      assert.matches("cannot combine an? UpdateExpression with a ConditionExpression",
        validation(function() return U("a") & C("a") end))
      assert.matches("remove entry 1 must be a path", validation(U, { remove = { 5 } }))
    end)

    it("checks ADD and DELETE values when rendered (W16: exact numbers accepted)", function()
      local add = U{ add = { "n" } }
      assert.equal("ADD #aaa :aaa", render{ update = add, data = { n = 1 } }.UpdateExpression)
      assert.equal("ADD #aaa :aaa", render{ update = add, data = { n = 1.5 } }.UpdateExpression)
      assert.equal("ADD #aaa :aaa", render{ update = add, data = { n = core.number("123456789012345678901234567890.5") } }.UpdateExpression)
      assert.equal("ADD #aaa :aaa", render{ update = add, data = { n = core.set{ "a" } } }.UpdateExpression)
      assert.equal('ADD needs a number or a set, value "n" is a string in UpdateExpression "ADD #n :n"',
        validation(render, { update = add, data = { n = "x" } }))
      assert.equal('ADD needs a number or a set, value "n" is a list in UpdateExpression "ADD #n :n"',
        validation(render, { update = add, data = { n = { 1 } } }))
      local del = U{ delete = { "s" } }
      assert.equal("DELETE #aaa :aaa", render{ update = del, data = { s = core.set{ 1, 2 } } }.UpdateExpression)
      assert.matches('DELETE needs a set, value "s" is a number', validation(render, { update = del, data = { s = 1 } }))
      assert.matches('list_append needs a list, value "l" is a string',
        validation(render, { update = U{ append = { "l" } }, data = { l = "x" } }))
      assert.matches('arithmetic needs a number, value "n" is a boolean',
        validation(render, { update = U{ increment = { "n" } }, data = { n = true } }))
    end)
  end)

  describe("render_request (request shapes of tests/test_dynamo_query_main.py)", function()
    it("renders a query: key condition, filter and projection", function()
      -- build_query(key_condition_expression=C("pk"), filter_expression=C("test")).projection("test")
      local r = render{ key_condition = C("pk"), filter = C("test"), projection = P("test"),
                        data = { pk = "pk_value", test = "data" } }
      assert.same({
        KeyConditionExpression = "#aaa = :aaa",
        FilterExpression = "#aab = :aab",
        ProjectionExpression = "#aab",
        ExpressionAttributeNames = { ["#aaa"] = "pk", ["#aab"] = "test" },
        ExpressionAttributeValues = { [":aaa"] = "pk_value", [":aab"] = "data" },
      }, r)
    end)

    it("renders a scan", function()
      assert.same({
        FilterExpression = "#aaa = :aaa",
        ProjectionExpression = "#aaa",
        ExpressionAttributeNames = { ["#aaa"] = "test" },
        ExpressionAttributeValues = { [":aaa"] = "value" },
      }, render{ filter = C("test"), projection = P("test"), data = { test = "value" } })
    end)

    it("renders a get_item projection without values", function()
      assert.same({ ProjectionExpression = "#aaa", ExpressionAttributeNames = { ["#aaa"] = "test" } },
        render{ projection = P("test"), data = { pk = "value", sk = "value" } })
    end)

    it("renders an update_item", function()
      local r = render{ condition = C("pk"), update = U("test"),
                        data = { pk = "pk_value", sk = "sk_value", test = "data" } }
      assert.same({
        ConditionExpression = "#aaa = :aaa",
        UpdateExpression = "SET #aab = :aab",
        ExpressionAttributeNames = { ["#aaa"] = "pk", ["#aab"] = "test" },
        ExpressionAttributeValues = { [":aaa"] = "pk_value", [":aab"] = "data" },
      }, r)
    end)

    it("renders a delete_item condition", function()
      assert.same({
        ConditionExpression = "#aaa = :aaa",
        ExpressionAttributeNames = { ["#aaa"] = "test" },
        ExpressionAttributeValues = { [":aaa"] = "data" },
      }, render{ condition = C("test"), data = { pk = "value", sk = "value", test = "data" } })
    end)

    it("renders the DynamoTable query of tests/test_dynamo_table.py with IN expanded", function()
      local r = render{ key_condition = C("pk") & C("sk"), filter = C("key", "IN"),
                        data = { pk = "pk_value", sk = "sk_value", key = { "key_value" } } }
      assert.same({
        KeyConditionExpression = "#aab = :aaa AND #aac = :aab",
        FilterExpression = "#aaa IN (:aac_0)",
        ExpressionAttributeNames = { ["#aaa"] = "key", ["#aab"] = "pk", ["#aac"] = "sk" },
        ExpressionAttributeValues = { [":aaa"] = "pk_value", [":aab"] = "sk_value", [":aac_0"] = "key_value" },
      }, r)
    end)

    it("rejects a contains key condition (test_errors)", function()
      assert.equal('operator "contains" is not supported in key conditions (valid: =, <, <=, >, >=, BETWEEN, '
        .. 'begins_with) in KeyConditionExpression "contains(#pk, :pk)"',
        validation(render, { key_condition = C("pk", "contains"), data = { pk = "x" } }))
    end)

    it("names the missing value and the expression (test_errors)", function()
      assert.equal('value "age" is missing from data in FilterExpression "#age <= :age"',
        validation(render, { filter = C("age", "<="), data = {} }))
      assert.equal('value "test" is missing from data in UpdateExpression "SET #test = :test"',
        validation(render, { update = U("test"), data = { pk = 1 } }))
      assert.matches('value "x" is missing from data', validation(render, { filter = C("x") }))
    end)
  end)

  describe("placeholders", function()
    it("numbers names by sorted segment bytes and values by first use", function()
      local r = render{ filter = C("zeta", "=", "b") & C("Alpha", "=", "a") & C("beta.zeta", "=", "b"),
                        data = { a = 1, b = 2 } }
      assert.equal("#aac = :aaa AND #aaa = :aab AND #aab.#aac = :aaa", r.FilterExpression)
      assert.same({ ["#aaa"] = "Alpha", ["#aab"] = "beta", ["#aac"] = "zeta" }, r.ExpressionAttributeNames)
      assert.same({ [":aaa"] = 2, [":aab"] = 1 }, r.ExpressionAttributeValues)
    end)

    it("gives one value placeholder to a name used in several expressions", function()
      local r = render{ key_condition = C("pk"), filter = C("other", "=", "pk"), condition = C("x", "<>", "pk"),
                        data = { pk = "p" } }
      assert.same({ [":aaa"] = "p" }, r.ExpressionAttributeValues)
      assert.equal("#aab = :aaa", r.KeyConditionExpression)
      assert.equal("#aaa = :aaa", r.FilterExpression)
      assert.equal("#aac <> :aaa", r.ConditionExpression)
    end)

    it("gives every literal its own placeholder, in order of use", function()
      local r = render{ filter = C("a", "=", E.literal(1)) | (C("b", "=", E.literal(1)) & C("c")),
                        data = { c = "C" } }
      assert.equal("#aaa = :aaa OR (#aab = :aab AND #aac = :aac)", r.FilterExpression)
      assert.same({ [":aaa"] = 1, [":aab"] = 1, [":aac"] = "C" }, r.ExpressionAttributeValues)
    end)

    it("keeps literal values native, tables included", function()
      local list = { 1, 2 }
      local r = render{ update = U{ update = { l = E.literal(list) } } }
      assert.equal(list, r.ExpressionAttributeValues[":aaa"])
    end)

    it("sends no unused placeholder and omits empty maps", function()
      local r = render{ condition = C("a", "attribute_exists"), data = { a = 1, unused = 2 } }
      assert.same({ ConditionExpression = "attribute_exists(#aaa)", ExpressionAttributeNames = { ["#aaa"] = "a" } }, r)
      assert.same({}, render{ data = { a = 1 } })
    end)

    it("does not confuse value names a.b and a_b (W19)", function()
      local r = render{ filter = C("x", "=", "a.b") & C("y", "=", "a_b"), data = { ["a.b"] = 1, a_b = 2 } }
      assert.same({ [":aaa"] = 1, [":aab"] = 2 }, r.ExpressionAttributeValues)
    end)

    it("puts reserved words and odd names through placeholders (W18)", function()
      local r = render{ filter = C("status") & C("name", "<>", "size") & C("data", "attribute_exists"),
                        update = U{ update = { { E.path("first name", "a.b", "x[y]"), "v" } } },
                        data = { status = "s", size = 1, v = "V" } }
      assert.equal("#aae = :aaa AND #aad <> :aab AND attribute_exists(#aab)", r.FilterExpression)
      assert.equal("SET #aac.#aaa.#aaf = :aac", r.UpdateExpression)
      assert.same({ ["#aaa"] = "a.b", ["#aab"] = "data", ["#aac"] = "first name", ["#aad"] = "name",
                    ["#aae"] = "status", ["#aaf"] = "x[y]" }, r.ExpressionAttributeNames)
      assert.same({ [":aaa"] = "s", [":aab"] = 1, [":aac"] = "V" }, r.ExpressionAttributeValues)
    end)

    it("is deterministic: the same expression and data give the same request", function()
      local f = C("b") & (C("a", "IN", "ids") | ~C("c", "begins_with", "p"))
      local data = { a = 1, b = 2, ids = { "x", "y" }, p = "q" }
      local r1 = render{ filter = f, projection = P("c", "b", "a"), data = data }
      local r2 = render{ filter = C("b") & (C("a", "IN", "ids") | ~C("c", "begins_with", "p")),
                         projection = P("a", "b", "c"), data = data }
      assert.same(r1, r2)
      assert.equal("#aab = :aaa AND (#aaa IN (:aab_0, :aab_1) OR NOT begins_with(#aac, :aac))", r1.FilterExpression)
    end)
  end)

  describe("IN (W20)", function()
    local f = C("k", "IN", "ids")

    it("expands a list or a set to one placeholder per element", function()
      local r = render{ filter = f, data = { ids = { "a", "b", "c" } } }
      assert.equal("#aaa IN (:aaa_0, :aaa_1, :aaa_2)", r.FilterExpression)
      assert.same({ [":aaa_0"] = "a", [":aaa_1"] = "b", [":aaa_2"] = "c" }, r.ExpressionAttributeValues)
      local s = render{ filter = f, data = { ids = core.set{ "x", "y" } } }
      assert.equal("#aaa IN (:aaa_0, :aaa_1)", s.FilterExpression)
      assert.same({ [":aaa_0"] = "x", [":aaa_1"] = "y" }, s.ExpressionAttributeValues)
    end)

    it("takes a scalar as one operand and several names or literals", function()
      assert.equal("#aaa IN (:aaa)", render{ filter = f, data = { ids = 5 } }.FilterExpression)
      local r = render{ filter = C("k", "IN", { "a", E.literal(2), "b" }), data = { a = 1, b = { 3, 4 } } }
      assert.equal("#aaa IN (:aaa, :aab, :aac_0, :aac_1)", r.FilterExpression)
      assert.same({ [":aaa"] = 1, [":aab"] = 2, [":aac_0"] = 3, [":aac_1"] = 4 }, r.ExpressionAttributeValues)
    end)

    it("takes 100 values and refuses 101 or none", function()
      local ids = {}
      for i = 1, 100 do ids[i] = i end
      local r = render{ filter = f, data = { ids = ids } }
      local n = 0
      for _ in pairs(r.ExpressionAttributeValues) do n = n + 1 end
      assert.equal(100, n)
      assert.equal(100, r.ExpressionAttributeValues[":aaa_99"])
      ids[101] = 101
      assert.equal('IN takes at most 100 values, got 101 in FilterExpression "#k IN (:ids)"',
        validation(render, { filter = f, data = { ids = ids } }))
      assert.equal('IN needs at least one value, value "ids" is an empty list in FilterExpression "#k IN (:ids)"',
        validation(render, { filter = f, data = { ids = {} } }))
      assert.matches("is an empty set", validation(render, { filter = f, data = { ids = core.set{} } }))
      assert.matches("operator IN takes at most 100 values, got 101", validation(C, "k", "IN", (function()
        local t = {}
        for i = 1, 101 do t[i] = "v" .. i end
        return t
      end)()))
    end)

    it("passes a list whole to other operators", function()
      local list = { 1, 2 }
      local r = render{ filter = C("l", "=", "v"), data = { v = list } }
      assert.equal("#aaa = :aaa", r.FilterExpression)
      assert.equal(list, r.ExpressionAttributeValues[":aaa"])
    end)

    it("can expand one value and use it whole in the same request", function()
      local r = render{ filter = C("k", "IN", "v") & C("l", "=", "v"), data = { v = { 7 } } }
      assert.equal("#aaa IN (:aaa_0) AND #aab = :aaa", r.FilterExpression)
      assert.same({ [":aaa_0"] = 7, [":aaa"] = { 7 } }, r.ExpressionAttributeValues)
    end)
  end)

  describe("limits", function()
    it("refuses an expression string over 4 KB", function()
      local e = C("a", "=", "v0")
      for i = 1, 300 do e = e | C("a", "=", "v" .. i) end
      local data = {}
      for i = 0, 300 do data["v" .. i] = i end
      assert.matches("^the expression is %d+ bytes, more than the 4096 DynamoDB takes in FilterExpression",
        validation(render, { filter = e, data = data }))
    end)

    it("refuses paths deeper than 32 levels", function()
      assert.matches("more than 32 levels", validation(C, string.rep("a.", 32) .. "a"))
    end)

    it("refuses an update with more than 300 functions", function()
      local names = {}
      for i = 1, 301 do names[i] = "n" .. i end
      assert.equal("an update expression takes at most 300 functions and operators, got 301",
        validation(U, { increment = names }))
    end)
  end)

  describe("key conditions", function()
    it("builds partition and sort key conditions", function()
      assert.equal("#pk = :pk", tostring(E.key_condition("pk")))
      assert.equal("#pk = :pk AND #sk = :sk", tostring(E.key_condition("pk", "sk")))
      assert.equal("#pk = :pk AND begins_with(#sk, :sk)", tostring(E.key_condition("pk", "sk", "begins_with")))
      assert.equal("#pk = :pk AND #sk BETWEEN :sk_low AND :sk_high", tostring(E.key_condition("pk", "sk", "BETWEEN")))
      assert.equal("#pk = :pk AND #sk BETWEEN :a AND :b",
        tostring(E.key_condition("pk", "sk", "BETWEEN", { "a", "b" })))
    end)

    it("validates the sort key operator", function()
      assert.equal('sort key operator "<>" is not supported in key conditions (valid: =, <, <=, >, >=, BETWEEN, '
        .. "begins_with)", validation(E.key_condition, "pk", "sk", "<>"))
      assert.matches("no sort key name", validation(E.key_condition, "pk", nil, "="))
    end)

    local bad = {
      { C("pk") | C("sk"), "a key condition is a partition key equality" },
      { ~C("pk"), "a key condition is a partition key equality" },
      { C("pk") & C("sk") & C("x"), "a key condition is a partition key equality" },
      { C("pk", "<"), "a key condition needs an equality on the partition key" },
      { C("pk") & C("pk", ">"), "a key condition names two different keys" },
      { C("a.b"), "not size%(%) or document paths" },
      { C(E.size("pk")), "not size%(%) or document paths" },
      { C("pk", "IN"), 'operator "IN" is not supported in key conditions' },
    }
    for i, case in ipairs(bad) do
      it("rejects invalid key condition " .. i, function()
        assert.matches(case[2], validation(render, { key_condition = case[1], data = { pk = 1, sk = 1, x = 1 } }))
      end)
    end

    it("accepts every sort key operator", function()
      for _, op in ipairs{ "=", "<", "<=", ">", ">=", "begins_with" } do
        local r = render{ key_condition = E.key_condition("pk", "sk", op), data = { pk = 1, sk = 2 } }
        assert.same({ [":aaa"] = 1, [":aab"] = 2 }, r.ExpressionAttributeValues)
      end
    end)
  end)

  describe("render_request input", function()
    it("raises Validation errors for wrong slot contents", function()
      assert.equal("filter must be an expression, got string", validation(render, { filter = "a = b" }))
      assert.equal("FilterExpression needs a condition, got a projection", validation(render, { filter = P("a") }))
      assert.equal("UpdateExpression needs an update, got a condition", validation(render, { update = C("a"), data = { a = 1 } }))
      assert.equal("data must be a table, got string", validation(render, { filter = C("a"), data = "x" }))
      assert.equal("render_request needs a table, got nil", validation(render, nil))
      assert.equal("render_request needs a table, got no value", validation(render))
    end)

    it("is also dynamo.core.render_request, which returns nil and a message", function()
      local r, msg = core.render_request{ filter = C("a"), data = {} }
      assert.is_nil(r)
      assert.equal('value "a" is missing from data in FilterExpression "#a = :a"', msg)
      assert.same({ FilterExpression = "#aaa = :aaa", ExpressionAttributeNames = { ["#aaa"] = "a" },
                    ExpressionAttributeValues = { [":aaa"] = 1 } }, core.render_request{ filter = C("a"), data = { a = 1 } })
    end)

    it("reads data through __index", function()
      local data = setmetatable({}, { __index = function(_, k) return k == "a" and "A" or nil end })
      assert.same({ [":aaa"] = "A" }, render{ filter = C("a"), data = data }.ExpressionAttributeValues)
    end)

    it("survives a render nested inside another (from an __index)", function()
      local inner
      local data = setmetatable({}, { __index = function(_, k)
        inner = render{ filter = C("q", "IN", "z"), data = { z = { 1, 2, 3 } } }
        return k
      end })
      local r = render{ filter = C("a") & C("b"), data = data }
      assert.equal("#aaa = :aaa AND #aab = :aab", r.FilterExpression)
      assert.same({ [":aaa"] = "a", [":aab"] = "b" }, r.ExpressionAttributeValues)
      assert.equal("#aaa IN (:aaa_0, :aaa_1, :aaa_2)", inner.FilterExpression)
    end)

    it("recovers after a render that raised from an __index", function()
      local data = setmetatable({}, { __index = function() error("boom") end })
      assert.has_error(function() render{ filter = C("a"), data = data } end)
      assert.same({ [":aaa"] = 1 }, render{ filter = C("a"), data = { a = 1 } }.ExpressionAttributeValues)
    end)

    it("renders repeated expressions right when the value shapes change", function()
      local f = C("k", "IN", "ids") & C("n")
      local a = render{ filter = f, data = { ids = { 1, 2 }, n = "x" } }
      local b = render{ filter = f, data = { ids = { 1, 2, 3 }, n = "y" } }
      local c = render{ filter = f, data = { ids = { 4, 5 }, n = "z" } }
      assert.equal("#aaa IN (:aaa_0, :aaa_1) AND #aab = :aab", a.FilterExpression)
      assert.equal("#aaa IN (:aaa_0, :aaa_1, :aaa_2) AND #aab = :aab", b.FilterExpression)
      assert.same({ [":aaa_0"] = 4, [":aaa_1"] = 5, [":aab"] = "z" }, c.ExpressionAttributeValues)
      assert.matches("is missing", validation(render, { filter = f, data = { ids = { 1 } } }))
      assert.same({ [":aaa_0"] = 9, [":aab"] = "w" }, render{ filter = f, data = { ids = { 9 }, n = "w" } }.ExpressionAttributeValues)
    end)

    it("returns fresh tables each time", function()
      local f = C("a")
      local r1 = render{ filter = f, data = { a = 1 } }
      r1.ExpressionAttributeNames["#aaa"] = "changed"
      local r2 = render{ filter = f, data = { a = 1 } }
      assert.equal("a", r2.ExpressionAttributeNames["#aaa"])
    end)

    it("keeps working under garbage collection pressure", function()
      for i = 1, 200 do
        local f = C("a" .. (i % 7)) & (C("b", "IN", "ids") | ~C(E.size("c"), ">", E.literal(i)))
        local r = render{ filter = f, projection = P("x.y[" .. i .. "]"), data = { ["a" .. (i % 7)] = i, ids = { i, i + 1 } } }
        assert.equal(i, r.ExpressionAttributeValues[":aaa"])
        collectgarbage()
      end
    end)
  end)

  describe("paths", function()
    it("escapes names and builds paths", function()
      assert.equal("a\\.b", E.escape("a.b"))
      assert.equal("a\\.b[2].c", E.path("a.b", 2, "c"))
      assert.equal("#a\\.b[2].#c = :v", tostring(C(E.path("a.b", 2, "c"), "=", "v")))
      assert.matches("path element 1 must be a name", validation(E.path, 1))
      assert.matches("path element 2 must be a name or a list index", validation(E.path, "a", -1))
    end)

    it("gives the position of a parse error", function()
      assert.equal('invalid path "a[x]": expected digits and \']\' at character 3', validation(C, "a[x]"))
      assert.equal('invalid path "a]": unexpected \']\' at character 2', validation(C, "a]"))
    end)
  end)

  describe("sharing", function()
    it("returns one object for equal constructions and combinations", function()
      assert.equal(C("a", ">", "b"), C("a", ">", "b"))
      assert.equal(C("a") & C("b"), C("a") & C("b"))
      assert.equal(~C("a"), ~C("a"))
      assert.are_not.equal(C("a") & C("b"), C("a") | C("b"))
      assert.are_not.equal(C("a", ">", "b"), C("a", ">=", "b"))
      assert.are_not.equal(C("a", "=", E.literal(1)), C("a", "=", E.literal(1)))
    end)
  end)
end)
