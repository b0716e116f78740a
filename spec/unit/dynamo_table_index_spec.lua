-- Specs for dynamo.DynamoTableIndex: the reference's tests/test_dynamo_table_index.py
-- plus KEYS_ONLY / INCLUDE projections (W30), capacities and definition checks.
local DynamoTableIndex = require("dynamo.DynamoTableIndex")
local errors = require("dynamo.errors")

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(errors.is(err, "Validation"), "expected a Validation error, got " .. tostring(err))
  assert.is_truthy(tostring(err.message):find(pattern), "message: " .. tostring(err.message))
end

describe("dynamo.DynamoTableIndex", function()
  local result, no_sort_key_index, primary
  before_each(function()
    result = DynamoTableIndex("my_index", "pk", "sk")
    no_sort_key_index = DynamoTableIndex("no_sort_key_index", "pk", "")
    primary = DynamoTableIndex(DynamoTableIndex.PRIMARY, "pk", "sk")
  end)

  describe("construction (test_init)", function()
    it("keeps the names; the primary index has no name", function()
      assert.equal("my_index", result.name)
      assert.equal("pk", result.partition_key_name)
      assert.equal("sk", result.sort_key_name)
      assert.equal("S", result.partition_key_type)
      assert.equal("S", result.sort_key_type)
      assert.equal("ALL", result.projection)
      assert.is_nil(primary.name)
      assert.is_true(primary:is_primary())
      assert.is_false(result:is_primary())
      assert.equal("primary", DynamoTableIndex.PRIMARY)
      assert.is_true(DynamoTableIndex.is_instance(result))
    end)

    it("prints its name", function()
      assert.equal("<DynamoTableIndex name=my_index>", tostring(result))
      assert.equal("<DynamoTableIndex name=primary>", tostring(primary))
    end)

    it("treats an empty, false or nil sort key name as none", function()
      assert.is_nil(no_sort_key_index.sort_key_name)
      assert.is_nil(DynamoTableIndex("i", "pk", false).sort_key_name)
      assert.is_nil(DynamoTableIndex("i", "pk").sort_key_name)
    end)
  end)

  describe("as_global_secondary_index", function()
    it("renders the index with ALL projection by default", function()
      assert.same({
        IndexName = "my_index",
        KeySchema = {
          { AttributeName = "pk", KeyType = "HASH" },
          { AttributeName = "sk", KeyType = "RANGE" },
        },
        Projection = { ProjectionType = "ALL" },
      }, result:as_global_secondary_index())
      assert.same({
        IndexName = "no_sort_key_index",
        KeySchema = { { AttributeName = "pk", KeyType = "HASH" } },
        Projection = { ProjectionType = "ALL" },
      }, no_sort_key_index:as_global_secondary_index())
    end)

    it("adds ProvisionedThroughput only when both capacities are set", function()
      local both = DynamoTableIndex("g", "pk", "sk", { read_capacity_units = 50, write_capacity_units = 10 })
      assert.same({ ReadCapacityUnits = 50, WriteCapacityUnits = 10 },
        both:as_global_secondary_index().ProvisionedThroughput)
      local one = DynamoTableIndex("g", "pk", "sk", { read_capacity_units = 50 })
      assert.is_nil(one:as_global_secondary_index().ProvisionedThroughput)
    end)

    it("refuses to render the primary index", function()
      raises("primary index cannot be a global secondary index", primary.as_global_secondary_index, primary)
    end)
  end)

  describe("as_local_secondary_index", function()
    it("renders the index without throughput", function()
      assert.same({
        IndexName = "my_index",
        KeySchema = {
          { AttributeName = "pk", KeyType = "HASH" },
          { AttributeName = "sk", KeyType = "RANGE" },
        },
        Projection = { ProjectionType = "ALL" },
      }, result:as_local_secondary_index())
      assert.same({
        IndexName = "no_sort_key_index",
        KeySchema = { { AttributeName = "pk", KeyType = "HASH" } },
        Projection = { ProjectionType = "ALL" },
      }, no_sort_key_index:as_local_secondary_index())
      local with_capacity = DynamoTableIndex("l", "pk", "sk", { read_capacity_units = 1, write_capacity_units = 1 })
      assert.is_nil(with_capacity:as_local_secondary_index().ProvisionedThroughput)
    end)

    it("refuses to render the primary index", function()
      raises("primary index cannot be a local secondary index", primary.as_local_secondary_index, primary)
    end)
  end)

  describe("as_key_schema", function()
    it("lists HASH then RANGE", function()
      assert.same({
        { AttributeName = "pk", KeyType = "HASH" },
        { AttributeName = "sk", KeyType = "RANGE" },
      }, result:as_key_schema())
      assert.same({ { AttributeName = "pk", KeyType = "HASH" } }, no_sort_key_index:as_key_schema())
      assert.same(result:as_key_schema(), primary:as_key_schema())
    end)
  end)

  describe("as_attribute_definitions", function()
    it("lists the key attributes with their types", function()
      assert.same({
        { AttributeName = "pk", AttributeType = "S" },
        { AttributeName = "sk", AttributeType = "S" },
      }, result:as_attribute_definitions())
      assert.same({ { AttributeName = "pk", AttributeType = "S" } },
        no_sort_key_index:as_attribute_definitions())
      local typed = DynamoTableIndex("gsi_name_age", "name", "age",
        { partition_key_type = "B", sort_key_type = "N" })
      assert.same({
        { AttributeName = "name", AttributeType = "B" },
        { AttributeName = "age", AttributeType = "N" },
      }, typed:as_attribute_definitions())
    end)
  end)

  describe("get_query_data", function()
    it("gives the key values by name", function()
      assert.same({ pk = "pk_value", sk = "sk_value" }, result:get_query_data("pk_value", "sk_value"))
      assert.same({ pk = "pk_value" }, result:get_query_data("pk_value", nil))
      assert.same({ pk = "pk_value" }, result:get_query_data("pk_value"))
      assert.same({ pk = "pk_value" }, no_sort_key_index:get_query_data("pk_value", "sk_value"))
      assert.same({ pk = 1, sk = false }, result:get_query_data(1, false))
    end)
  end)

  describe("projections (W30)", function()
    it("supports KEYS_ONLY", function()
      local keys_only = DynamoTableIndex("k", "pk", "sk", { projection = "KEYS_ONLY" })
      assert.same({ ProjectionType = "KEYS_ONLY" }, keys_only:as_global_secondary_index().Projection)
      assert.same({ ProjectionType = "KEYS_ONLY" }, keys_only:as_local_secondary_index().Projection)
    end)

    it("supports ALL given explicitly and an empty list", function()
      assert.same({ ProjectionType = "ALL" },
        DynamoTableIndex("a", "pk", nil, { projection = "ALL" }):get_projection())
      assert.same({ ProjectionType = "ALL" },
        DynamoTableIndex("a", "pk", nil, { projection = {} }):get_projection())
    end)

    it("renders an array of names as INCLUDE, copied from the caller", function()
      local names = { "pk", "other" }
      local include = DynamoTableIndex("no_sort_key_index", "pk", "", { projection = names })
      names[3] = "late"
      local gsi = include:as_global_secondary_index()
      assert.same({ ProjectionType = "INCLUDE", NonKeyAttributes = { "pk", "other" } }, gsi.Projection)
      gsi.Projection.NonKeyAttributes[1] = "changed"
      assert.same({ "pk", "other" }, include:get_projection().NonKeyAttributes)
    end)

    it("rejects malformed projections", function()
      raises("projection must be", DynamoTableIndex, "i", "pk", "sk", { projection = "SOME" })
      raises("INCLUDE projection is given as an array", DynamoTableIndex, "i", "pk", "sk",
        { projection = "INCLUDE" })
      raises("projection must be", DynamoTableIndex, "i", "pk", "sk", { projection = 5 })
      raises("projection entry 2 must be", DynamoTableIndex, "i", "pk", "sk", { projection = { "a", 5 } })
      raises("projection entry 1 must be", DynamoTableIndex, "i", "pk", "sk", { projection = { "" } })
      raises("array of attribute names, got key \"a\"", DynamoTableIndex, "i", "pk", "sk",
        { projection = { a = "x" } })
      raises("lists \"a\" twice", DynamoTableIndex, "i", "pk", "sk", { projection = { "a", "a" } })
    end)
  end)

  describe("definition checks", function()
    it("accepts only S, N and B key types", function()
      raises("DynamoTableIndex i: partition_key_type must be \"S\", \"N\" or \"B\", got \"X\"",
        DynamoTableIndex, "i", "pk", "sk", { partition_key_type = "X" })
      raises("sort_key_type must be", DynamoTableIndex, "i", "pk", "sk", { sort_key_type = "s" })
      raises("sort_key_type must be", DynamoTableIndex, "i", "pk", "sk", { sort_key_type = 1 })
    end)

    it("checks names and options", function()
      raises("partition_key_name must be a non%-empty string", DynamoTableIndex, "i", "", "sk")
      raises("partition_key_name must be a non%-empty string", DynamoTableIndex, "i", nil, "sk")
      raises("sort_key_name must be a string", DynamoTableIndex, "i", "pk", 5)
      raises("cannot both be \"pk\"", DynamoTableIndex, "i", "pk", "pk")
      raises("name must be a non%-empty string", DynamoTableIndex, "", "pk", "sk")
      raises("name must be a non%-empty string", DynamoTableIndex, 5, "pk", "sk")
      raises("unknown option \"sort_key_typ\"", DynamoTableIndex, "i", "pk", "sk", { sort_key_typ = "N" })
      raises("options must be a table", DynamoTableIndex, "i", "pk", "sk", "N")
    end)

    it("checks capacities", function()
      raises("read_capacity_units must be a positive integer, got 0", DynamoTableIndex, "i", "pk", "sk",
        { read_capacity_units = 0 })
      raises("write_capacity_units must be a positive integer, got 1.5", DynamoTableIndex, "i", "pk", "sk",
        { write_capacity_units = 1.5 })
      raises("read_capacity_units must be a positive integer", DynamoTableIndex, "i", "pk", "sk",
        { read_capacity_units = "5" })
      local idx = DynamoTableIndex("i", "pk", "sk", { read_capacity_units = 5.0, write_capacity_units = 2 })
      assert.equal("integer", math.type(idx.read_capacity_units))
    end)

    it("treats a nil name as the primary index", function()
      local idx = DynamoTableIndex(nil, "pk", "sk")
      assert.is_true(idx:is_primary())
      assert.equal("<DynamoTableIndex name=primary>", tostring(idx))
    end)
  end)

  describe("copy", function()
    it("makes a changed index without touching the original", function()
      local gsi = DynamoTableIndex("g", "pk", "sk", { sort_key_type = "N", projection = { "a" } })
      local with_capacity = gsi:copy{ read_capacity_units = 5, write_capacity_units = 6 }
      assert.same({ ReadCapacityUnits = 5, WriteCapacityUnits = 6 },
        with_capacity:as_global_secondary_index().ProvisionedThroughput)
      assert.is_nil(gsi:as_global_secondary_index().ProvisionedThroughput)
      assert.equal("N", with_capacity.sort_key_type)
      assert.same({ ProjectionType = "INCLUDE", NonKeyAttributes = { "a" } }, with_capacity:get_projection())
      assert.is_true(primary:copy():is_primary())
      raises("sort_key_type must be", gsi.copy, gsi, { sort_key_type = "Z" })
    end)
  end)
end)
