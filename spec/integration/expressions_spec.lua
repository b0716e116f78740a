-- dynamo.expressions against a DynamoDB-compatible server (dynalite): the
-- rendered requests are accepted, and they select, project and update what
-- the Lua expressions mean (not only the right strings).
local helpers = require("spec.helpers")

describe("dynamo.expressions against dynalite", function()
  local dynamo, E, C, P, U, client, tname

  -- Runs one request with rendered expressions; values are marshalled here.
  local function call(op, params, spec)
    local r = E.render_request(spec)
    for k, v in pairs(r) do params[k] = v end
    if params.ExpressionAttributeValues then
      params.ExpressionAttributeValues = dynamo.marshal(params.ExpressionAttributeValues)
    end
    params.TableName = tname
    return client:call(op, params)
  end

  -- The items of a query (the partition "grid" unless data.pk says otherwise).
  local function query_items(spec)
    spec.key_condition = spec.key_condition or C("pk")
    spec.data = spec.data or {}
    spec.data.pk = spec.data.pk or "grid"
    return call("Query", {}, spec).Items
  end

  -- The sort keys of a query's items, in order.
  local function query(spec)
    local keys = {}
    for i, item in ipairs(query_items(spec)) do keys[i] = dynamo.unmarshal(item).sk end
    return keys
  end

  local function put(item)
    client:call("PutItem", { TableName = tname, Item = dynamo.marshal(item) })
  end

  local function get(pk, sk)
    local out = client:call("GetItem", { TableName = tname, Key = dynamo.marshal{ pk = pk, sk = sk },
                                         ConsistentRead = true })
    return out.Item and dynamo.unmarshal(out.Item)
  end

  setup(function()
    dynamo = require("dynamo")
    E = require("dynamo.expressions")
    C, P, U = E.ConditionExpression, E.ProjectionExpression, E.UpdateExpression
    client = helpers.client()
    tname = helpers.create_table(client, { prefix = "expr" })
    -- "grid": one item per combination of a, b, c in {0, 1}; sk is "abc"
    for a = 0, 1 do
      for b = 0, 1 do
        for c = 0, 1 do
          local sk = ("%d%d%d"):format(a, b, c)
          put{ pk = "grid", sk = sk, code = sk, a = a, b = b, c = c }
        end
      end
    end
    -- "people": reserved-word attributes, nested maps, lists, sets
    local names = { "Ann", "Bob", "Cyd", "Dee", "Eve" }
    for i, name in ipairs(names) do
      put{
        pk = "people", sk = ("p%02d"):format(i),
        name = name, status = i % 2 == 0 and "active" or "gone", size = i * 10, age = 18 + i * 3,
        data = { city = i <= 2 and "Oslo" or "Rome", zip = "0" .. i, deep = { level = i } },
        list = { i, i * 2, i * 3 },
        tags = dynamo.set(i % 2 == 0 and { "x", "even" } or { "x" }),
        ["first.name"] = name:lower(),
      }
    end
  end)

  teardown(function()
    if client then pcall(client.call, client, "DeleteTable", { TableName = tname }) end
  end)

  describe("grouping", function()
    it("returns the rows of a & (b | c), not of (a & b) | c", function()
      local one = { one = 1 }
      assert.same({ "101", "110", "111" },
        query{ filter = C("a", "=", "one") & (C("b", "=", "one") | C("c", "=", "one")), data = one })
      assert.same({ "001", "011", "101", "110", "111" },
        query{ filter = (C("a", "=", "one") & C("b", "=", "one")) | C("c", "=", "one"), data = one })
    end)

    it("negates with ~", function()
      assert.same({ "100" }, query{ filter = C("a", "=", E.literal(1)) & ~(C("b", "=", E.literal(1))
        | C("c", "=", E.literal(1))) })
      assert.same({ "000", "001", "010", "011" }, query{ filter = ~C("a", "=", E.literal(1)) })
      assert.same({ "100", "101", "110", "111" }, query{ filter = ~~C("a", "=", E.literal(1)) })
    end)
  end)

  describe("key conditions", function()
    it("selects with BETWEEN on strings and begins_with", function()
      assert.same({ "010", "011", "100" }, query{ key_condition = E.key_condition("pk", "sk", "BETWEEN"),
                                                  data = { sk_low = "010", sk_high = "100" } })
      assert.same({ "p02", "p03" }, query{ key_condition = C("pk") & C("sk", "BETWEEN", { E.literal("p02"),
        E.literal("p03") }), data = { pk = "people" } })
      assert.same({ "110", "111" }, query{ key_condition = E.key_condition("pk", "sk", "begins_with"),
                                           data = { sk = "11" } })
      assert.same({ "000", "001" }, query{ key_condition = C("pk") & C("sk", "<", E.literal("010")) })
    end)
  end)

  describe("filters", function()
    it("uses reserved words as attribute names", function()
      local keys = query{ filter = C("status", "=", E.literal("active")) & C("size", ">", E.literal(15))
                          & C("name", "<>", E.literal("Dee")) & C("data", "attribute_exists"),
                          data = { pk = "people" } }
      assert.same({ "p02" }, keys)
    end)

    it("walks nested maps and list indexes", function()
      assert.same({ "p01", "p02" }, query{ filter = C("data.city", "=", "city"), data = { pk = "people", city = "Oslo" } })
      assert.same({ "p04" }, query{ filter = C("data.deep.level", "=", E.literal(4)), data = { pk = "people" } })
      assert.same({ "p03" }, query{ filter = C("list[1]", "=", E.literal(6)), data = { pk = "people" } })
      assert.same({ "p05" }, query{ filter = C("list[2]", ">", E.literal(12)), data = { pk = "people" } })
    end)

    it("reads an attribute whose name holds a dot through an escaped path", function()
      assert.same({ "p03" }, query{ filter = C(E.escape("first.name"), "=", "n"), data = { pk = "people", n = "cyd" } })
    end)

    it("matches IN with 100 values", function()
      local ids = {}
      for i = 1, 98 do ids[i] = ("%03d"):format(200 + i) end
      ids[99], ids[100] = "011", "110"
      -- (a Query cannot filter on its key attributes: code repeats sk)
      assert.same({ "011", "110" }, query{ filter = C("code", "IN", "ids"), data = { ids = ids } })
      assert.same({ "p01", "p04" }, query{ filter = C("name", "IN", "names"),
        data = { pk = "people", names = dynamo.set{ "Ann", "Dee", "Zed" } } })
    end)

    it("selects with BETWEEN on numbers", function()
      assert.same({ "p02", "p03", "p04" }, query{ filter = C("age", "BETWEEN", { "lo", "hi" }),
        data = { pk = "people", lo = 24, hi = 30 } })
    end)

    it("tests attribute types", function()
      assert.same({}, query{ filter = C("size", "attribute_type", E.literal("S")), data = { pk = "people" } })
      assert.equal(5, #query{ filter = C("size", "attribute_type", E.literal("N")), data = { pk = "people" } })
      assert.equal(5, #query{ filter = C("tags", "attribute_type", "t"), data = { pk = "people", t = "SS" } })
      assert.equal(5, #query{ filter = C("data.deep", "attribute_type", E.literal("M")), data = { pk = "people" } })
    end)

    it("compares sizes", function()
      assert.same({ "p02", "p04" }, query{ filter = C(E.size("tags"), "=", E.literal(2)), data = { pk = "people" } })
      assert.same({}, query{ filter = C(E.size("list"), "<>", E.literal(3)), data = { pk = "people" } })
      assert.same({ "p03", "p04", "p05" }, query{ filter = C(E.size("name"), ">=", E.literal(3))
        & C("age", ">", E.literal(25)) & C(E.size("data.city"), "=", E.literal(4)), data = { pk = "people" } })
      assert.same({ "p01", "p02", "p03" }, query{ filter = C(E.size("list"), "=", E.literal(3))
        & C(E.size("data.zip"), "BETWEEN", { E.literal(1), E.literal(2) }) & C("size", "<=", E.literal(30)),
        data = { pk = "people" } })
    end)

    it("uses begins_with and contains", function()
      assert.same({ "p03", "p05" }, query{ filter = C("data.city", "begins_with", E.literal("R"))
        & ~C("name", "contains", E.literal("e")) | C("name", "=", E.literal("Eve")), data = { pk = "people" } })
      assert.same({ "p02", "p04" }, query{ filter = C("tags", "contains", E.literal("even")), data = { pk = "people" } })
    end)
  end)

  describe("projections", function()
    it("returns nested paths, list elements and reserved words", function()
      local items = query_items{ key_condition = C("pk") & C("sk", "=", E.literal("p02")),
                              projection = P("data.city", "list[1]", "status", "size", E.escape("first.name")),
                              data = { pk = "people" } }
      assert.same({ data = { city = "Oslo" }, list = { 4 }, status = "active", size = 20, ["first.name"] = "bob" },
        dynamo.unmarshal(items[1]))
    end)

    it("merges projections and drops overlapping paths", function()
      local items = query_items{ key_condition = C("pk") & C("sk", "=", E.literal("p01")),
                              projection = P("data.zip", "name") & P("data", "name"), data = { pk = "people" } }
      local item = dynamo.unmarshal(items[1])
      assert.equal("Ann", item.name)
      assert.equal("Oslo", item.data.city)
      assert.is_nil(item.sk)
    end)
  end)

  describe("updates and conditions", function()
    it("sets, removes and adds on nested paths and list indexes", function()
      put{ pk = "upd", sk = "1", data = { city = "Oslo", zip = "01" }, list = { 1, 2, 3 }, n = 5,
           tags = dynamo.set{ "a", "b" }, name = "x" }
      call("UpdateItem", { Key = dynamo.marshal{ pk = "upd", sk = "1" } }, {
        update = U{ update = { ["data.city"] = "city", ["list[2]"] = E.literal(30), name = "nm" },
                    remove = { "data.zip", "list[0]" }, add = { n = "inc", tags = "more" } },
        data = { city = "Rome", nm = "y", inc = 2, more = dynamo.set{ "c" } },
      })
      local item = get("upd", "1")
      assert.same({ city = "Rome" }, item.data)
      assert.same({ 2, 30 }, item.list)
      assert.equal(7, item.n)
      assert.equal("y", item.name)
      local tags = {}
      for _, t in ipairs(item.tags) do tags[#tags + 1] = t end
      table.sort(tags)
      assert.same({ "a", "b", "c" }, tags)
    end)

    it("runs list_append, arithmetic, if_not_exists and DELETE", function()
      put{ pk = "upd", sk = "2", list = { 1 }, front = { 5 }, n = 10, tags = dynamo.set{ "a", "b" }, created = "then" }
      call("UpdateItem", { Key = dynamo.marshal{ pk = "upd", sk = "2" } }, {
        update = U{ append = { list = "more" }, prepend = { front = E.literal{ 4 } } }
          & U{ decrement = { n = E.literal(3) } }
          & U{ set_if_not_exists = { created = "now", fresh = "now" }, delete = { tags = "gone" } },
        data = { more = { 2, 3 }, now = "now", gone = dynamo.set{ "a" } },
      })
      local item = get("upd", "2")
      assert.same({ 1, 2, 3 }, item.list)
      assert.same({ 4, 5 }, item.front)
      assert.equal(7, item.n)
      assert.equal("then", item.created)
      assert.equal("now", item.fresh)
      assert.equal(1, #item.tags)
      assert.equal("b", item.tags[1])
    end)

    it("applies a condition that shares values with the update", function()
      put{ pk = "upd", sk = "3", status = "open", n = 1 }
      local spec = { condition = C("status", "=", "expected") & C("n", "<", "limit"),
                     update = U{ update = { status = "next" }, increment = { n = E.literal(1) } },
                     data = { expected = "open", next = "closed", limit = 5 } }
      call("UpdateItem", { Key = dynamo.marshal{ pk = "upd", sk = "3" } }, spec)
      assert.same({ pk = "upd", sk = "3", status = "closed", n = 2 }, get("upd", "3"))
      local ok, err = pcall(call, "UpdateItem", { Key = dynamo.marshal{ pk = "upd", sk = "3" } }, spec)
      assert.is_false(ok)
      assert.equal("ConditionalCheckFailedException", err.code)
    end)

    it("guards a put with attribute_not_exists", function()
      local function put_new()
        return call("PutItem", { Item = dynamo.marshal{ pk = "upd", sk = "4", v = 1 } },
          { condition = C("pk", "attribute_exists", false) })
      end
      put_new()
      local ok, err = pcall(put_new)
      assert.is_false(ok)
      assert.equal("ConditionalCheckFailedException", err.code)
    end)
  end)
end)
