-- dynamo.DynamoTable against a local DynamoDB-compatible server (dynalite):
-- ports of the reference's tests/integration/test_dynamo_table.py and the
-- behaviour tests of tests/test_dynamo_table.py.
local helpers = require("spec.helpers")

describe("dynamo.DynamoTable against dynalite", function()
  local dynamo, DynamoTable, DynamoTableIndex, DynamoRecord, C
  local client, UserRecord, UserTable, users

  local function all(iter)
    local out = {}
    for r in iter do out[#out + 1] = r end
    return out
  end

  -- A partial record naming one user: inputs go through record_class, whose
  -- email field is required, and its computed keys give pk/sk.
  local function K(company) return { company = company, email = "" } end

  setup(function()
    dynamo = require("dynamo")
    DynamoTable = require("dynamo.DynamoTable")
    DynamoTableIndex = require("dynamo.DynamoTableIndex")
    DynamoRecord = require("dynamo.DynamoRecord")
    C = dynamo.ConditionExpression
    client = helpers.client()

    UserRecord = DynamoRecord:extend{
      name = "UserRecord",
      fields = {
        project_id = { default = "my_project" },
        company = { required = true },
        email = { required = true },
        "name", "age", "dt_created", "dt_modified", "nested", "tags", "note",
      },
      computed = {
        pk = function(rec) return rec.project_id end,
        sk = function(rec) return rec.company end,
      },
    }

    UserTable = DynamoTable:extend{
      global_secondary_indexes = {
        DynamoTableIndex("gsi_name_age", "name", "age", { sort_key_type = "N" }),
      },
      read_capacity_units = 50,
      write_capacity_units = 10,
      record_class = UserRecord,
    }
    function UserTable:get_partition_key(record) return record.project_id end
    function UserTable:get_sort_key(record) return record.company end

    users = UserTable{ client = client, table = helpers.table_name("users") }
    users:create_table()
    users:wait_until_exists()
  end)

  teardown(function()
    if users then pcall(users.delete_table, users) end
  end)

  before_each(function()
    users:clear_table()
    users:invalidate_cache()
  end)

  it("creates a PAY_PER_REQUEST table when no capacity is set", function()
    local Free = DynamoTable:extend{ sort_key_name = false }
    local t = Free{ client = client, table = helpers.table_name("free") }
    assert.is_nil(t:get_table_status())
    t:create_table()
    t:wait_until_exists()
    assert.equal("ACTIVE", t:get_table_status())
    local d = client:call("DescribeTable", { TableName = t:get_table_name() }).Table
    assert.equal("PAY_PER_REQUEST", (d.BillingModeSummary or {}).BillingMode or "PAY_PER_REQUEST")
    assert.equal(0, d.ProvisionedThroughput and d.ProvisionedThroughput.ReadCapacityUnits or 0)
    assert.is_nil(t:create_table())
    t:delete_table()
    t:wait_until_not_exists()
    assert.is_nil(t:get_table_status())
  end)

  it("creates the table with its GSI and provisioned capacity", function()
    local d = client:call("DescribeTable", { TableName = users:get_table_name() }).Table
    assert.equal(50, d.ProvisionedThroughput.ReadCapacityUnits)
    assert.equal("gsi_name_age", d.GlobalSecondaryIndexes[1].IndexName)
    local types = {}
    for _, a in ipairs(d.AttributeDefinitions) do types[a.AttributeName] = a.AttributeType end
    assert.same({ pk = "S", sk = "S", name = "S", age = "N" }, types)
  end)

  it("clears the table", function()
    users:upsert_record(UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34 })
    assert.equal(1, #all(users:scan()))
    users:clear_table()
    assert.equal(0, #all(users:scan()))
  end)

  it("batch upserts a typed record and a plain table", function()
    users:batch_upsert({
      UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34 },
      { email = "mike@gmail.com", company = "CiscoSystems", name = "Mike", age = 34 },
    })
    local emails = {}
    for r in users:scan() do emails[#emails + 1] = r.email end
    table.sort(emails)
    assert.same({ "john@gmail.com", "mike@gmail.com" }, emails)
  end)

  it("gets a record, and nil for another sort key", function()
    users:upsert_record(UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34 })
    local r = users:get_record(UserRecord{ email = "", company = "IBM" })
    assert.equal(34, r.age)
    assert.equal("John", r.name)
    assert.is_true(UserRecord.is_instance(r))
    assert.is_nil(users:get_record(UserRecord{ email = "", company = "Nope" }))
    assert.is_nil(users:get_record(K("Nope"), { consistent_read = true }))
  end)

  it("batch gets records through the iterator", function()
    users:upsert_record(UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34 })
    local got = {}
    for r, found in users:batch_get_records({ UserRecord{ email = "x", company = "IBM" } }) do
      got[#got + 1] = { r, found }
    end
    assert.equal(1, #got)
    assert.is_true(got[1][2])
    assert.equal("john@gmail.com", got[1][1].email)
    assert.equal(34, got[1][1].age)
  end)

  it("batch upserts records, then batch gets them", function()
    users:batch_upsert_records({ UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34 } })
    local dt, found = users:batch_get({ { project_id = "my_project", company = "IBM", email = "?" } })
    assert.same({ true }, found)
    assert.equal(34, dt:get_record(1).age)
  end)

  it("batch deletes records given partially (computed keys)", function()
    users:upsert_record(UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34 })
    users:batch_delete_records({ K("IBM"), { project_id = "my_project", company = "IBM", email = "x" } })
    assert.equal(0, #all(users:scan()))
  end)

  it("queries a partition with a nested-path filter", function()
    users:upsert_record(UserRecord{ email = "john@gmail.com", company = "IBM", name = "John", age = 34,
                                    nested = { test = { deep = "value" } } })
    local hits = all(users:query{ partition_key = "my_project",
                                  filter_expression = C("nested.test.deep", "=", "deep_value"),
                                  data = { deep_value = "value" } })
    assert.equal(1, #hits)
    assert.equal("value", hits[1].nested.test.deep)
    local none = all(users:query{ partition_key = "my_project",
                                  filter_expression = C("nested.test.deep", "=", "deep_value"),
                                  data = { deep_value = "none" } })
    assert.equal(0, #none)
  end)

  it("queries a GSI by partition and sort key operators", function()
    local records = {}
    for i = 1, 6 do
      records[i] = { email = i .. "@x", company = "c" .. i, name = i <= 4 and "Ann" or "Bob", age = 20 + i }
    end
    users:batch_upsert(records)
    local ages = {}
    for r in users:query{ partition_key = "Ann", index = "gsi_name_age", sort_key = 22, sort_key_operator = ">",
                          scan_index_forward = false } do
      ages[#ages + 1] = r.age
    end
    assert.same({ 24, 23 }, ages)
    local between = all(users:query{ partition_key = "Ann", index = users.global_secondary_indexes[1],
                                     sort_key = { 21, 22 }, sort_key_operator = "BETWEEN" })
    assert.equal(2, #between)
  end)

  it("queries by sort key prefix with a limit and a projection", function()
    local records = {}
    for i = 1, 5 do records[i] = { email = i .. "@x", company = "acme_" .. i, name = "N", age = i } end
    records[6] = { email = "o@x", company = "other", name = "N", age = 9 }
    users:batch_upsert_records(records)
    local out = all(users:query{ partition_key = "my_project", sort_key_prefix = "acme_", limit = 3,
                                 projection = { "company", "email" }, consistent_read = true })
    assert.equal(3, #out)
    assert.equal("acme_1", out[1].company)
    assert.is_nil(out[1].age)
  end)

  it("upserts with dt stamps: dt_created kept, dt_modified refreshed", function()
    local ms = 1600000000000
    local t = UserTable{ client = client, table = users:get_table_name(), clock = function() return ms end }
    local first = t:upsert_record(UserRecord{ email = "a@x", company = "T", name = "A", age = 1 })
    assert.equal("2020-09-13T12:26:40.000Z", first.dt_created)
    ms = ms + 61001
    local second = t:upsert_record(UserRecord{ email = "b@x", company = "T", name = "A", age = 2 })
    assert.equal("2020-09-13T12:26:40.000Z", second.dt_created)
    assert.equal("2020-09-13T12:27:41.001Z", second.dt_modified)
    assert.equal("b@x", second.email)
    assert.equal(24, #second.dt_modified)
  end)

  it("batch_upsert keeps attributes that are not in the input and set_if_not_exists keys", function()
    users:upsert_record(UserRecord{ email = "a@x", company = "K", name = "A", age = 1, tags = dynamo.core.set{ "x" } })
    local before = users:get_record(K("K"))
    users:batch_upsert({ { company = "K", email = "new@x", name = "A", age = 2 } },
      { set_if_not_exists_keys = { "email" } })
    local after = users:get_record(K("K"))
    assert.equal("a@x", after.email)
    assert.equal(2, after.age)
    assert.is_not_nil(after.tags)
    assert.equal(before.dt_created, after.dt_created)
  end)

  it("upsert with a failing condition raises ConditionalCheckFailedException and writes nothing", function()
    users:upsert_record(UserRecord{ email = "a@x", company = "Cond", name = "A", age = 1 })
    local ok, err = pcall(users.upsert_record, users, UserRecord{ email = "b@x", company = "Cond", name = "A", age = 5 },
      { condition_expression = C("age", ">", "min_age"), extra_data = { min_age = 3 } })
    assert.is_false(ok)
    assert.equal("ConditionalCheckFailedException", err.code)
    assert.equal("a@x", users:get_record(K("Cond")).email)
    local stored = users:upsert_record(UserRecord{ email = "c@x", company = "Cond", name = "A", age = 5 },
      { condition_expression = C("age", "<", "min_age"), extra_data = { min_age = 3 } })
    assert.equal("c@x", stored.email)
  end)

  it("deletes a record and returns the old item", function()
    users:upsert_record(UserRecord{ email = "a@x", company = "Del", name = "A", age = 1 })
    local old = users:delete_record(K("Del"))
    assert.equal("a@x", old.email)
    assert.is_nil(users:delete_record(K("Del")))
    assert.is_nil(users:get_record(K("Del")))
  end)

  it("scans with a filter, a limit and in parallel segments", function()
    local records = {}
    for i = 1, 40 do records[i] = { email = i .. "@x", company = string.format("c%02d", i), name = "S", age = i } end
    users:batch_upsert_records(records, { read_existing = false })
    local young = all(users:scan{ filter_expression = C("age", "<=", "max_age"), data = { max_age = 10 } })
    assert.equal(10, #young)
    assert.equal(7, #all(users:scan{ filter_expression = C("age", "<=", "max_age"), data = { max_age = 10 },
                                      limit = 7, page_size = 3 }))
    assert.equal(40, #all(users:scan{ segments = 4, consistent_read = true }))
    local on_index = all(users:scan{ index = "gsi_name_age", limit = 5 })
    assert.equal(5, #on_index)
  end)

  it("query_many reads many partitions at once, each whole and in order, with their own limits", function()
    local Plain = DynamoTable:extend{}
    local t = Plain{ client = client, table = helpers.table_name("query_many") }
    t:create_table()
    t:wait_until_exists()
    local sizes = { 7, 0, 12, 1, 5 }
    local records = {}
    for p, size in ipairs(sizes) do
      for i = 1, size do records[#records + 1] = { pk = "part" .. p, sk = string.format("%03d", i), n = i } end
    end
    t:batch_upsert_records(records, { read_existing = false })
    local queries = {}
    for p = 1, #sizes do queries[p] = { partition_key = "part" .. p, page_size = 2, consistent_read = true } end
    queries[5].limit = 3
    local got = {}
    for r, i in t:query_many(queries, { concurrency = 2 }) do
      got[i] = got[i] or {}
      got[i][#got[i] + 1] = r.n
      assert.equal("part" .. i, r.pk)
    end
    for p, size in ipairs(sizes) do
      local want = {}
      for i = 1, (p == 5 and 3 or size) do want[i] = i end
      assert.same(want, got[p] or {})
    end
    assert.is_true(pcall(t.delete_table, t))
  end)

  it("validate_record_attributes checks every index key and its type", function()
    users:validate_record_attributes{ pk = "p", sk = "s", name = "n", age = 3 }
    users:validate_record_attributes{ pk = "p", sk = "s", name = "n", age = dynamo.core.number("3.5") }
    assert.has_error(function() users:validate_record_attributes{ pk = "p", sk = "s", name = "n" } end)
    assert.has_error(function() users:validate_record_attributes{ pk = "p", sk = "s", name = "n", age = "3" } end)
  end)

  it("batch writes 10,000 records and reads them back in input order", function()
    local Plain = DynamoTable:extend{}
    local t = Plain{ client = client, table = users:get_table_name() }
    local records = {}
    for i = 1, 10000 do
      records[i] = { pk = "bulk#" .. (i % 10), sk = string.format("%06d", i), n = i }
    end
    t:batch_upsert_records(records, { read_existing = false })
    local keys = {}
    for i = 1, 10000 do keys[i] = { pk = records[i].pk, sk = records[i].sk } end
    local i = 0
    for r, found in t:batch_get_records(keys) do
      i = i + 1
      assert.is_true(found)
      assert.equal(i, r.n)
    end
    assert.equal(10000, i)
    local count = 0
    for _ in t:query{ partition_key = "bulk#3" } do count = count + 1 end
    assert.equal(1000, count)
    assert.equal(10000, t:clear_table{ partition_key_prefix = "bulk#" })
    assert.equal(0, #all(t:scan{ filter_expression = C("pk", "begins_with", "p"), data = { p = "bulk#" } }))
  end)

  it("a table with a numeric sort key and no hooks round-trips numbers", function()
    local Events = DynamoTable:extend{ partition_key_name = "stream", sort_key_name = "seq", sort_key_type = "N" }
    local ev = Events{ client = client, table = helpers.table_name("events") }
    ev:create_table()
    ev:wait_until_exists()
    ev:batch_upsert_records({ { stream = "s", seq = 2, v = "b" }, { stream = "s", seq = 10, v = "c" },
                              { stream = "s", seq = 1.5, v = "a" } })
    local seqs = {}
    for r in ev:query{ partition_key = "s" } do seqs[#seqs + 1] = r.seq end
    assert.same({ 1.5, 2, 10 }, seqs)
    assert.equal("c", ev:get_record{ stream = "s", seq = 10.0 }.v)
    local dt, found = ev:batch_get({ { stream = "s", seq = 10 }, { stream = "s", seq = 3 } })
    assert.same({ true, false }, found)
    assert.equal("c", dt:get_record(1).v)
    ev:delete_table()
  end)
end)
