-- dynamo.DynamoTable request shapes and engine logic, through a fake transport
-- (ports of the reference's tests/test_dynamo_table.py marked A / A~).
local helpers = require("spec.helpers")
local cjson = require("cjson")

local dynamo, DynamoTable, DynamoTableIndex, C, errors

-- The operation name of a transport request (X-Amz-Target: DynamoDB_20120810.Op).
local function target_of(request)
  local headers = request.headers or {}
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == "x-amz-target" then return (tostring(v):match("%.(%w+)$")) end
    if type(v) == "string" then
      local t = v:match("^[Xx]%-[Aa]mz%-[Tt]arget:%s*(.-)%s*$")
      if t then return (t:match("%.(%w+)$")) end
    end
  end
  return nil
end

local ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"

--- A client whose requests go to `router(op, body, n)` -> status, response
-- table (or JSON text). Returns the client and the list of { op, body } seen.
local function fake_client(router, opts)
  local calls = {}
  local t = helpers.fake_transport({ function(request)
    local op = target_of(request)
    local body = cjson.decode(request.body)
    calls[#calls + 1] = { op = op, body = body }
    local status, resp = router(op, body, #calls)
    -- a Query or Scan answer holds Count, as DynamoDB's always does
    if type(resp) == "table" and type(resp.Items) == "table" and resp.Count == nil then
      local with_count = { Count = #resp.Items }
      for k, v in pairs(resp) do with_count[k] = v end
      resp = with_count
    end
    if type(resp) == "table" then resp = cjson.encode(resp) end
    return status, { ["content-type"] = "application/x-amz-json-1.0" }, resp or "{}"
  end })
  local o = { endpoint = "http://127.0.0.1:1", region = "us-east-1", max_attempts = 1,
              credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
              transport = t.fn, sleep = function() end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return dynamo.client(o), calls
end

-- A router answering from a table op -> response (or function(body, n) -> status, response).
local function routes(map)
  return function(op, body, n)
    local r = map[op]
    if r == nil then return 400, { __type = ERROR_PREFIX .. "ValidationException", message = "no route " .. tostring(op) } end
    if type(r) == "function" then return r(body, n) end
    return 200, r
  end
end

local function aws_error(code, message)
  return 400, { __type = ERROR_PREFIX .. code, message = message or code }
end

-- An expression with its placeholders replaced: #aaa by the name, :aaa by the
-- value written as JSON-ish text ("pk = \"p1\""), so expectations do not
-- depend on placeholder numbering.
local function av_text(av)
  if av.S then return string.format("%q", av.S) end
  if av.N then return av.N end
  if av.BOOL ~= nil then return tostring(av.BOOL) end
  if av.NULL then return "NULL" end
  return cjson.encode(av)
end
local function resolve(body, field)
  local expr = body[field]
  if expr == nil then return nil end
  local names, values = body.ExpressionAttributeNames or {}, body.ExpressionAttributeValues or {}
  expr = expr:gsub("#[%w_]+", function(p) return names[p] or p end)
  expr = expr:gsub(":[%w_]+", function(p) return values[p] and av_text(values[p]) or p end)
  return expr
end

-- Native-looking view of an AV map in a request ({pk = {S = "a"}} -> {pk = "a"}).
local function plain(item)
  local out = {}
  for k, v in pairs(item) do
    if v.S then out[k] = v.S
    elseif v.N then out[k] = tonumber(v.N)
    elseif v.BOOL ~= nil then out[k] = v.BOOL
    elseif v.NULL then out[k] = "NULL"
    else out[k] = v end
  end
  return out
end

local function S(v) return { S = v } end

local UserTable

before_each(function()
  dynamo = require("dynamo")
  DynamoTable = require("dynamo.DynamoTable")
  DynamoTableIndex = require("dynamo.DynamoTableIndex")
  C = dynamo.ConditionExpression
  errors = require("dynamo.errors")
  UserTable = DynamoTable:extend{
    table = "my_table_name",
    global_secondary_indexes = { DynamoTableIndex("gsi", "gsi_pk", "gsi_sk") },
    local_secondary_indexes = { DynamoTableIndex("lsi", "lsi_pk", "sk") },
    read_capacity_units = 50,
    write_capacity_units = 10,
  }
  function UserTable:get_partition_key(record) return record.pk_column end
  function UserTable:get_sort_key(record) return record.sk_column end
end)

local CLOCK_MS = 1600000000123
local NOW = "2020-09-13T12:26:40.123Z"

local function manager(router, cls, opts, client_opts)
  local client, calls = fake_client(router, client_opts)
  local o = { client = client, clock = function() return CLOCK_MS end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return (cls or UserTable)(o), calls
end

describe("dynamo.DynamoTable", function()
  describe("definition", function()
    it("has the reference's defaults and table keys", function()
      local t = manager(routes{})
      assert.same({ "pk", "sk" }, t.table_keys)
      assert.equal(25, t.max_batch_size)
      assert.equal("pk", t.primary_index.partition_key_name)
      assert.equal("sk", t.primary_index.sort_key_name)
      assert.is_nil(t.primary_index.name)
      local NoSort = DynamoTable:extend{ table = "x", sort_key_name = false }
      assert.same({ "pk" }, manager(routes{}, NoSort).table_keys)
      assert.is_nil(NoSort.get_primary_index().sort_key_name)
    end)

    it("builds the primary index with the declared key types", function()
      local Numbered = DynamoTable:extend{ table = "n", partition_key_name = "id", sort_key_name = "ts",
                                           sort_key_type = "N" }
      local index = Numbered.get_primary_index()
      assert.equal("id", index.partition_key_name)
      assert.equal("N", index.sort_key_type)
      assert.equal("N", Numbered{ client = fake_client(routes{}) }:get_primary_index().sort_key_type)
    end)

    it("refuses a key value of the wrong type before any request, strings included", function()
      local Numbered = DynamoTable:extend{ table = "n", partition_key_name = "id", sort_key_name = "ts",
                                           sort_key_type = "N" }
      local client, calls = fake_client(routes{})
      local t = Numbered{ client = client }
      local ok, err = pcall(t.batch_get, t, { { id = "a", ts = 1 }, { id = "b", ts = "2" } })
      assert.is_false(ok)
      assert.equal('DynamoTable(n): record 2 {id="b", ts="2"}: sort key ts must be of type N, got S', err.message)
      assert.has_error(function() t:get_record({ id = 1, ts = 1 }) end)
      assert.equal(0, #calls)
    end)

    it("keys plain records and hook-keyed ones in one window, and names the bad one by its position", function()
      local t, calls = manager(routes{ BatchGetItem = function(body)
        local items = {}
        for i, k in ipairs(body.RequestItems.my_table_name.Keys) do items[i] = { pk = k.pk, sk = k.sk, found = { BOOL = true } } end
        return 200, { Responses = { my_table_name = items } }
      end })
      local recs = { { pk = "p1", sk = "s1" }, { pk_column = "p2", sk_column = "s2" }, { pk = "p3", sk = "s3" },
                     { pk = "p4", sk_column = "s4" } }
      local got = {}
      for r, found in t:batch_get_records(recs) do
        assert.is_true(found)
        assert.is_true(r.found)
        got[#got + 1] = r.pk .. "/" .. r.sk
      end
      assert.same({ "p1/s1", "p2/s2", "p3/s3", "p4/s4" }, got)
      local sent = {}
      for _, k in ipairs(calls[1].body.RequestItems.my_table_name.Keys) do sent[#sent + 1] = k.pk.S .. "/" .. k.sk.S end
      assert.same(got, sent)
      -- an iterator: the third record of the second window is bad
      local i = 0
      local ok, err = pcall(function()
        for _ in t:batch_get_records(function()
          i = i + 1
          if i == 803 then return { pk = "x", sk = 5 } end
          if i <= 900 then return { pk = "p", sk = tostring(i) } end
        end) do end
      end)
      assert.is_false(ok)
      assert.matches("record 803 ", err.message, 1, true)
      assert.matches("sort key sk must be of type S, got N", err.message, 1, true)
    end)

    it("lets a definition extend another: hooks in the base, tables in subclasses", function()
      local Base = DynamoTable:extend{ sort_key_name = "kind" }
      function Base:get_partition_key(record) return "user#" .. record.id end
      function Base:normalize_record(record)
        record.email = record.email and record.email:lower()
        return record
      end
      local Users = Base:extend{ table = "users", sort_key_prefix = "profile" }
      local users = manager(routes{}, Users)
      assert.same({ pk = "user#7", kind = "p" }, users:get_record_keys{ id = 7, kind = "p" })
      assert.same({ "pk", "kind" }, users.table_keys)
      assert.equal("users", users:get_table_name())
      assert.has_error(function() manager(routes{}, Base):get_table_name() end)
    end)

    it("prefers the key attributes a record already holds", function()
      local t = manager(routes{})
      assert.same({ pk = "own_pk", sk = "own_sk" },
        t:get_record_keys{ pk = "own_pk", sk = "own_sk", pk_column = "x", sk_column = "y" })
      assert.same({ pk = "x", sk = "y" }, t:get_record_keys{ pk_column = "x", sk_column = "y" })
    end)

    it("raises a Validation error naming the record when a key hook is missing, before any request", function()
      local Plain = DynamoTable:extend{ table = "plain" }
      local t, calls = manager(routes{}, Plain)
      local ok, err = pcall(t.get_record, t, { email = "a@example.com" })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "Validation"))
      assert.matches("get_partition_key method is missing", err.message, 1, true)
      assert.matches("a@example.com", err.message, 1, true)
      ok, err = pcall(t.get_record, t, { pk = "p" })
      assert.is_false(ok)
      assert.matches("get_sort_key method is missing", err.message, 1, true)
      assert.equal(0, #calls)
    end)

    it("raises for a nil key from a hook, naming the record, before a batch sends anything", function()
      local t, calls = manager(routes{})
      local ok, err = pcall(t.batch_upsert_records, t, {
        { pk_column = "a", sk_column = "1" }, { pk_column = "b", name = "second" } })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "Validation"))
      assert.matches("record 2", err.message, 1, true)
      assert.matches("second", err.message, 1, true)
      assert.equal(0, #calls)
    end)

    it("rejects a malformed definition when extend runs", function()
      assert.has_error(function() DynamoTable:extend{ partition_key_name = 3 } end)
      assert.has_error(function() DynamoTable:extend{ global_secondary_indexes = { "gsi" } } end)
      assert.has_error(function() DynamoTable:extend{ sort_key_name = 1 } end)
    end)

    it("invalidate_cache can be called at any time", function()
      local t = manager(routes{})
      t:invalidate_cache()
      t:invalidate_cache()
      assert.same({}, t._cache)
    end)

    it("stamps time as fixed-width UTC ISO 8601 with a Z", function()
      local t = manager(routes{})
      assert.equal(NOW, t:now())
      local t2 = manager(routes{}, nil, { clock = function() return 1600000000000 end })
      assert.equal("2020-09-13T12:26:40.000Z", t2:now())
    end)
  end)

  describe("table lifecycle", function()
    it("get_table_status reads DescribeTable and gives nil when the table is missing", function()
      local t = manager(routes{ DescribeTable = { Table = { TableStatus = "ACTIVE" } } })
      assert.equal("ACTIVE", t:get_table_status())
      local t2 = manager(routes{ DescribeTable = function() return aws_error("ResourceNotFoundException") end })
      assert.is_nil(t2:get_table_status())
      local t3 = manager(routes{ DescribeTable = function() return aws_error("AccessDeniedException") end })
      local ok, err = pcall(t3.get_table_status, t3)
      assert.is_false(ok)
      assert.equal("AccessDeniedException", err.code)
    end)

    it("create_table sends the reference's CreateTable request", function()
      local t, calls = manager(routes{
        DescribeTable = function() return aws_error("ResourceNotFoundException") end,
        CreateTable = { TableDescription = { TableStatus = "CREATING" } },
      })
      local out = t:create_table()
      assert.equal("CREATING", out.TableDescription.TableStatus)
      local req = calls[2]
      assert.equal("CreateTable", req.op)
      assert.same({
        AttributeDefinitions = {
          { AttributeName = "pk", AttributeType = "S" }, { AttributeName = "sk", AttributeType = "S" },
          { AttributeName = "gsi_pk", AttributeType = "S" }, { AttributeName = "gsi_sk", AttributeType = "S" },
          { AttributeName = "lsi_pk", AttributeType = "S" },
        },
        GlobalSecondaryIndexes = { {
          IndexName = "gsi",
          KeySchema = { { AttributeName = "gsi_pk", KeyType = "HASH" }, { AttributeName = "gsi_sk", KeyType = "RANGE" } },
          Projection = { ProjectionType = "ALL" },
          ProvisionedThroughput = { ReadCapacityUnits = 50, WriteCapacityUnits = 10 },
        } },
        KeySchema = { { AttributeName = "pk", KeyType = "HASH" }, { AttributeName = "sk", KeyType = "RANGE" } },
        LocalSecondaryIndexes = { {
          IndexName = "lsi",
          KeySchema = { { AttributeName = "lsi_pk", KeyType = "HASH" }, { AttributeName = "sk", KeyType = "RANGE" } },
          Projection = { ProjectionType = "ALL" },
        } },
        TableName = "my_table_name",
        ProvisionedThroughput = { ReadCapacityUnits = 50, WriteCapacityUnits = 10 },
      }, req.body)
      -- the shared index object was not changed by the inheritance
      assert.is_nil(UserTable.global_secondary_indexes[1].read_capacity_units)
    end)

    it("create_table uses PAY_PER_REQUEST unless both capacities are set, and index key types", function()
      local Events = DynamoTable:extend{
        table = "events", sort_key_type = "N", read_capacity_units = 5,
        global_secondary_indexes = { DynamoTableIndex("by_age", "name", "age", { sort_key_type = "N" }) },
      }
      local t, calls = manager(routes{
        DescribeTable = function() return aws_error("ResourceNotFoundException") end,
        CreateTable = {},
      }, Events)
      t:create_table()
      local body = calls[2].body
      assert.equal("PAY_PER_REQUEST", body.BillingMode)
      assert.is_nil(body.ProvisionedThroughput)
      assert.is_nil(body.GlobalSecondaryIndexes[1].ProvisionedThroughput)
      assert.same({ { AttributeName = "pk", AttributeType = "S" }, { AttributeName = "sk", AttributeType = "N" },
                    { AttributeName = "name", AttributeType = "S" }, { AttributeName = "age", AttributeType = "N" } },
        body.AttributeDefinitions)
    end)

    it("create_table rejects one attribute with two types, before any CreateTable", function()
      local Bad = DynamoTable:extend{
        table = "bad", global_secondary_indexes = { DynamoTableIndex("g", "sk", "x", { partition_key_type = "N" }) },
      }
      local t, calls = manager(routes{
        DescribeTable = function() return aws_error("ResourceNotFoundException") end, CreateTable = {} }, Bad)
      local ok, err = pcall(t.create_table, t)
      assert.is_false(ok)
      assert.is_true(errors.is(err, "Validation"))
      assert.matches("sk", err.message, 1, true)
      for _, c in ipairs(calls) do assert.not_equal("CreateTable", c.op) end
    end)

    it("create_table does nothing for a CREATING, UPDATING or ACTIVE table", function()
      for _, status in ipairs({ "CREATING", "UPDATING", "ACTIVE" }) do
        local t, calls = manager(routes{ DescribeTable = { Table = { TableStatus = status } }, CreateTable = {} })
        assert.is_nil(t:create_table())
        assert.equal(1, #calls)
      end
    end)

    it("create_table waits for a DELETING table to go, then creates", function()
      local slept = 0
      local t, calls = manager(routes{
        DescribeTable = function(_, n)
          if n <= 2 then return 200, { Table = { TableStatus = "DELETING" } } end
          return aws_error("ResourceNotFoundException")
        end,
        CreateTable = {},
      }, nil, { sleep = function() slept = slept + 1 end })
      t:create_table()
      assert.equal("CreateTable", calls[#calls].op)
      assert.equal(4, #calls)
      assert.equal(1, slept)
    end)

    it("delete_table deletes, skips a missing or DELETING table, waits for CREATING", function()
      local t, calls = manager(routes{ DescribeTable = { Table = { TableStatus = "ACTIVE" } }, DeleteTable = {} })
      t:delete_table()
      assert.equal("DeleteTable", calls[2].op)
      assert.same({ TableName = "my_table_name" }, calls[2].body)
      for _, r in ipairs({ function() return aws_error("ResourceNotFoundException") end,
                           function() return 200, { Table = { TableStatus = "DELETING" } } end }) do
        local t2, calls2 = manager(routes{ DescribeTable = r, DeleteTable = {} })
        assert.is_nil(t2:delete_table())
        assert.equal(1, #calls2)
      end
      local t3, calls3 = manager(routes{
        DescribeTable = function(_, n) return 200, { Table = { TableStatus = n <= 2 and "CREATING" or "ACTIVE" } } end,
        DeleteTable = {},
      })
      t3:delete_table()
      local ops = {}
      for i, c in ipairs(calls3) do ops[i] = c.op end
      assert.same({ "DescribeTable", "DescribeTable", "DescribeTable", "DeleteTable" }, ops)
    end)

    it("wait_until_exists polls with the injected sleep until ACTIVE", function()
      local sleeps = {}
      local t, calls = manager(routes{
        DescribeTable = function(_, n)
          if n == 1 then return aws_error("ResourceNotFoundException") end
          return 200, { Table = { TableStatus = n < 3 and "CREATING" or "ACTIVE" } }
        end,
      }, nil, { sleep = function(ms) sleeps[#sleeps + 1] = ms end, wait_delay_ms = 20 })
      t:wait_until_exists()
      assert.equal(3, #calls)
      assert.same({ 20, 20 }, sleeps)
    end)

    it("wait_until_not_exists polls until ResourceNotFound and times out with code Timeout", function()
      local t, calls = manager(routes{
        DescribeTable = function(_, n)
          if n < 3 then return 200, { Table = { TableStatus = "DELETING" } } end
          return aws_error("ResourceNotFoundException")
        end,
      }, nil, { sleep = function() end })
      t:wait_until_not_exists()
      assert.equal(3, #calls)
      local t2 = manager(routes{ DescribeTable = { Table = { TableStatus = "DELETING" } } }, nil,
        { sleep = function() end, wait_max_attempts = 4 })
      local ok, err = pcall(t2.wait_until_not_exists, t2)
      assert.is_false(ok)
      assert.equal("Timeout", err.code)
    end)
  end)

  describe("get_record", function()
    it("sends GetItem with the computed key and returns the keys merged with the item", function()
      local t, calls = manager(routes{ GetItem = { Item = { pk = S("my_pk"), pk_column = S("my_pk") } } })
      local record = t:get_record{ pk_column = "my_pk", sk_column = "my_sk" }
      assert.same({ pk = "my_pk", pk_column = "my_pk", sk = "my_sk" }, record)
      assert.same({ TableName = "my_table_name", Key = { pk = S("my_pk"), sk = S("my_sk") } }, calls[1].body)
    end)

    it("finds an item that holds only its keys (W8) and gives nil only without Item", function()
      local t = manager(routes{ GetItem = { Item = { pk = S("my_pk"), sk = S("my_sk") } } })
      assert.same({ pk = "my_pk", sk = "my_sk" }, t:get_record{ pk = "my_pk", sk = "my_sk" })
      local t2 = manager(routes{ GetItem = {} })
      assert.is_nil(t2:get_record{ pk = "my_pk", sk = "my_sk" })
    end)

    it("sends ConsistentRead when asked", function()
      local t, calls = manager(routes{ GetItem = {} })
      t:get_record({ pk = "a", sk = "b" }, { consistent_read = true })
      assert.is_true(calls[1].body.ConsistentRead)
    end)

    it("converts the result with record_class", function()
      local DynamoRecord = require("dynamo.DynamoRecord")
      local User = DynamoRecord:extend{ name = "User", loose = true }
      local Users = UserTable:extend{ record_class = User }
      local t = manager(routes{ GetItem = { Item = { pk = S("a"), sk = S("b"), age = { N = "3" } } } }, Users)
      local r = t:get_record{ pk = "a", sk = "b" }
      assert.is_true(User.is_instance(r))
      assert.equal(3, r.age)
    end)
  end)

  describe("upsert_record", function()
    it("sends one UpdateItem: sorted SET, if_not_exists for dt_created, ALL_NEW; returns Attributes", function()
      local t, calls = manager(routes{ UpdateItem = { Attributes = { pk = S("my_pk"), sk = S("my_sk"), data = S("v") } } })
      local out = t:upsert_record{ pk_column = "my_pk", sk_column = "my_sk", zeta = 1, alpha = "a" }
      assert.same({ pk = "my_pk", sk = "my_sk", data = "v" }, out)
      local body = calls[1].body
      assert.equal("UpdateItem", calls[1].op)
      assert.equal("ALL_NEW", body.ReturnValues)
      assert.same({ pk = S("my_pk"), sk = S("my_sk") }, body.Key)
      local update = resolve(body, "UpdateExpression")
      assert.matches("dt_created = if_not_exists%(dt_created, \"" .. NOW:gsub("%p", "%%%0") .. "\"%)", update)
      -- present fields are SET in name order, keys are never SET
      local a = update:find("alpha = ", 1, true)
      local d = update:find("dt_modified = ", 1, true)
      local p = update:find("pk_column = ", 1, true)
      local z = update:find("zeta = 1", 1, true)
      assert.truthy(a and d and p and z)
      assert.is_true(a < d and d < p and p < z)
      assert.is_nil(update:find("pk = ", 1, true))
    end)

    it("keeps set_if_not_exists_keys, skips absent ones, removes remove_keys and never writes extra_data", function()
      local t, calls = manager(routes{ UpdateItem = { Attributes = {} } })
      t:upsert_record({ pk = "p", sk = "s", preserve = "p1", version = 2 }, {
        set_if_not_exists_keys = { "preserve", "absent" },
        remove_keys = { "old_field" },
        condition_expression = C("version", "<", "next_version"),
        extra_data = { next_version = 2 },
      })
      local body = calls[1].body
      local update = resolve(body, "UpdateExpression")
      assert.matches("preserve = if_not_exists(preserve, \"p1\")", update, 1, true)
      assert.matches("REMOVE old_field", update, 1, true)
      assert.is_nil(update:find("absent", 1, true))
      assert.is_nil(update:find("next_version", 1, true))
      assert.equal("version < 2", resolve(body, "ConditionExpression"))
      local written = 0
      for _, v in pairs(body.ExpressionAttributeValues) do
        if v.N == "2" then written = written + 1 end
      end
      assert.is_true(written >= 1)
    end)

    it("rejects remove_keys that are also fields or keys", function()
      local t, calls = manager(routes{ UpdateItem = {} })
      assert.has_error(function() t:upsert_record({ pk = "p", sk = "s", a = 1 }, { remove_keys = { "a" } }) end)
      assert.has_error(function() t:upsert_record({ pk = "p", sk = "s" }, { remove_keys = { "sk" } }) end)
      assert.equal(0, #calls)
    end)

    it("raises ConditionalCheckFailedException as a DynamoTableError", function()
      local t = manager(routes{ UpdateItem = function() return aws_error("ConditionalCheckFailedException") end })
      local ok, err = pcall(t.upsert_record, t, { pk = "p", sk = "s" },
        { condition_expression = C("pk", "attribute_not_exists") })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "ConditionalCheckFailedException"))
      assert.same({ pk = "p", sk = "s" }, err.data)
    end)

    it("writes dynamo.NULL as NULL", function()
      local t, calls = manager(routes{ UpdateItem = {} })
      t:upsert_record{ pk = "p", sk = "s", gone = dynamo.core.NULL }
      assert.matches("gone = NULL", resolve(calls[1].body, "UpdateExpression"), 1, true)
    end)
  end)

  describe("delete_record", function()
    it("sends DeleteItem ALL_OLD and returns the old item, or nil", function()
      local t, calls = manager(routes{ DeleteItem = { Attributes = { pk = S("a"), sk = S("b"), x = S("y") } } })
      assert.same({ pk = "a", sk = "b", x = "y" }, t:delete_record{ pk_column = "a", sk_column = "b" })
      assert.same({ TableName = "my_table_name", Key = { pk = S("a"), sk = S("b") }, ReturnValues = "ALL_OLD" },
        calls[1].body)
      local t2 = manager(routes{ DeleteItem = {} })
      assert.is_nil(t2:delete_record{ pk = "a", sk = "b" })
    end)

    it("lets the condition use any field of the record and of data (W11)", function()
      local t, calls = manager(routes{ DeleteItem = {} })
      t:delete_record({ pk = "a", sk = "b", owner = "me" }, {
        condition_expression = C("owner") & C("version", "=", "expected"), data = { expected = 4 } })
      assert.equal("owner = \"me\" AND version = 4", resolve(calls[1].body, "ConditionExpression"))
    end)
  end)

  describe("batch_get", function()
    it("returns every input record in input order, found ones merged, with found flags", function()
      local t, calls = manager(routes{ BatchGetItem = { Responses = { my_table_name = {
        { pk = S("b"), sk = S("2"), data = S("second") },
        { pk = S("a"), sk = S("1"), data = S("first") },
      } } } })
      local dt, found = t:batch_get({ { pk = "a", sk = "1", extra = "x" }, { pk = "c", sk = "3" },
                                      { pk = "b", sk = "2" } })
      assert.equal(3, #dt)
      assert.same({ pk = "a", sk = "1", extra = "x", data = "first" }, dt:get_record(1))
      assert.same({ pk = "c", sk = "3" }, dt:get_record(2))
      assert.same({ pk = "b", sk = "2", data = "second" }, dt:get_record(3))
      assert.same({ true, false, true }, found)
      assert.equal(1, #calls)
      assert.same({ my_table_name = { Keys = { { pk = S("a"), sk = S("1") }, { pk = S("c"), sk = S("3") },
                                               { pk = S("b"), sk = S("2") } } } }, calls[1].body.RequestItems)
    end)

    it("gives an empty DataTable for an empty input without a request", function()
      local t, calls = manager(routes{})
      local dt, found = t:batch_get(dynamo.DataTable())
      assert.equal(0, #dt)
      assert.same({}, found)
      assert.equal(0, #calls)
    end)

    it("reads a DataTable input, never sending its missing cells", function()
      local t, calls = manager(routes{ BatchGetItem = { Responses = {} } })
      local input = dynamo.DataTable():add_record({ pk = "a", sk = "1", name = "x" }, { pk = "b", sk = "2" })
      local dt = t:batch_get(input)
      assert.same({ pk = "b", sk = "2" }, dt:get_record(2))
      assert.equal(2, #calls[1].body.RequestItems.my_table_name.Keys)
    end)

    it("uses up to 100 keys per request and deduplicates keys (W9, W23)", function()
      local t, calls = manager(routes{ BatchGetItem = function(body)
        local items = {}
        for i, k in ipairs(body.RequestItems.my_table_name.Keys) do
          if i % 2 == 0 then items[#items + 1] = { pk = k.pk, sk = k.sk, v = S("found") } end
        end
        return 200, { Responses = { my_table_name = items } }
      end })
      local input = {}
      for i = 1, 250 do input[i] = { pk = "p", sk = string.format("%04d", i) } end
      input[251] = { pk = "p", sk = "0002", dup = true }
      local dt, found = t:batch_get(input, { consistent_read = true })
      assert.equal(251, #dt)
      assert.equal(3, #calls)
      local sizes = {}
      for i, c in ipairs(calls) do
        sizes[i] = #c.body.RequestItems.my_table_name.Keys
        assert.is_true(c.body.RequestItems.my_table_name.ConsistentRead)
      end
      table.sort(sizes)
      assert.same({ 50, 100, 100 }, sizes)
      assert.is_true(found[2])
      assert.is_true(found[251])
      assert.is_true(dt:get_record(251).dup)
      assert.equal("found", dt:get_record(251).v)
      assert.is_nil(dt:get_record(2).dup)
    end)

    it("retries UnprocessedKeys with backoff and finds what comes later (W1)", function()
      local slept = {}
      local t, calls = manager(routes{ BatchGetItem = function(_, n)
        if n == 1 then
          return 200, { Responses = { my_table_name = { { pk = S("a"), sk = S("1") } } },
                        UnprocessedKeys = { my_table_name = { Keys = { { pk = S("b"), sk = S("2") } } } } }
        end
        return 200, { Responses = { my_table_name = { { pk = S("b"), sk = S("2"), late = S("yes") } } },
                      UnprocessedKeys = {} }
      end }, nil, nil, { max_attempts = 2, seed = 7, sleep = function(ms) slept[#slept + 1] = ms end })
      local dt, found = t:batch_get({ { pk = "a", sk = "1" }, { pk = "b", sk = "2" } })
      assert.same({ true, true }, found)
      assert.equal("yes", dt:get_record(2).late)
      assert.equal(2, #calls)
      assert.same({ { pk = S("b"), sk = S("2") } }, calls[2].body.RequestItems.my_table_name.Keys)
      -- one backoff, through the client's sleep: full jitter under the 25 ms base
      assert.equal(1, #slept)
      assert.is_true(slept[1] >= 0 and slept[1] < 25)
    end)

    it("raises UnprocessedKeys listing the keys when retries run out", function()
      local t, calls = manager(routes{ BatchGetItem = function(body)
        return 200, { UnprocessedKeys = body.RequestItems }
      end }, nil, nil, { max_attempts = 4 })
      local ok, err = pcall(t.batch_get, t, { { pk = "a", sk = "1" }, { pk = "b", sk = "2" } })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "UnprocessedKeys"))
      -- max_attempts is per record, unprocessed answers included: 4 in all
      assert.equal(4, #calls)
      assert.equal("Unprocessed", err.cause.code)
      assert.matches("2 of 2 records not read", err.message)
      table.sort(err.unprocessed, function(x, y) return x.pk < y.pk end)
      assert.same({ { pk = "a", sk = "1" }, { pk = "b", sk = "2" } }, err.unprocessed)
    end)

    it("batch_get_records streams records with their found flag", function()
      local t, calls = manager(routes{ BatchGetItem = { Responses = { my_table_name = {
        { pk = S("a"), sk = S("1"), n = { N = "5" } } } } } })
      local seen = {}
      local iter = t:batch_get_records(coroutine.wrap(function()
        coroutine.yield{ pk_column = "a", sk_column = "1" }
        coroutine.yield{ pk_column = "z", sk_column = "9" }
      end))
      assert.equal(0, #calls)
      for record, found in iter do seen[#seen + 1] = { record, found } end
      assert.equal(2, #seen)
      assert.equal(5, seen[1][1].n)
      assert.is_true(seen[1][2])
      assert.same({ pk_column = "z", sk_column = "9", pk = "z", sk = "9" }, seen[2][1])
      assert.is_false(seen[2][2])
    end)
  end)

  describe("cache", function()
    it("cached_get_record answers the second call from the cache despite a DB change", function()
      local value = "first"
      local t, calls = manager(routes{ GetItem = function()
        return 200, { Item = { pk = S("a"), sk = S("1"), v = S(value) } }
      end, UpdateItem = { Attributes = {} } })
      assert.equal("first", t:cached_get_record{ pk = "a", sk = "1" }.v)
      value = "second"
      local again = t:cached_get_record{ pk = "a", sk = "1" }
      assert.equal("first", again.v)
      assert.equal(1, #calls)
      again.v = "changed by the caller"
      assert.equal("first", t:cached_get_record{ pk = "a", sk = "1" }.v)
      t:upsert_record{ pk = "a", sk = "1" }
      assert.equal("second", t:cached_get_record{ pk = "a", sk = "1" }.v)
    end)

    it("remembers a missing record as nil, and keys never collide", function()
      local t, calls = manager(routes{ GetItem = function(body)
        if body.Key.pk.S == "a\0" then return 200, { Item = { pk = body.Key.pk, sk = body.Key.sk } } end
        return 200, {}
      end })
      assert.is_nil(t:cached_get_record{ pk = "a", sk = "\0b" })
      assert.is_nil(t:cached_get_record{ pk = "a", sk = "\0b" })
      assert.same({ pk = "a\0", sk = "b" }, t:cached_get_record{ pk = "a\0", sk = "b" })
      assert.equal(2, #calls)
    end)

    it("cached_batch_get keeps input order, reads only misses, never returns stubs later", function()
      local t, calls = manager(routes{
        GetItem = { Item = { pk = S("a"), sk = S("1"), v = S("cached") } },
        BatchGetItem = { Responses = { my_table_name = { { pk = S("b"), sk = S("2"), v = S("fetched") } } } },
      })
      t:cached_get_record{ pk = "a", sk = "1" }
      local dt, found = t:cached_batch_get({ { pk = "c", sk = "3" }, { pk = "a", sk = "1" }, { pk = "b", sk = "2" } })
      assert.same({ false, true, true }, found)
      assert.same({ pk = "c", sk = "3" }, dt:get_record(1))
      assert.equal("cached", dt:get_record(2).v)
      assert.equal("fetched", dt:get_record(3).v)
      assert.equal(2, #calls)
      assert.equal(2, #calls[2].body.RequestItems.my_table_name.Keys)
      -- second call: no request at all, the missing one stays in place
      local dt2, found2 = t:cached_batch_get({ { pk = "c", sk = "3" }, { pk = "b", sk = "2" } })
      assert.equal(2, #calls)
      assert.same({ false, true }, found2)
      assert.same({ pk = "c", sk = "3" }, dt2:get_record(1))
      assert.is_nil(t:cached_get_record{ pk = "c", sk = "3" })
      assert.equal(2, #calls)
    end)

    it("batch writes and deletes invalidate the cached keys", function()
      local t, calls = manager(routes{
        GetItem = { Item = { pk = S("a"), sk = S("1") } },
        BatchWriteItem = { UnprocessedItems = {} },
        BatchGetItem = { Responses = {} },
      })
      t:cached_get_record{ pk = "a", sk = "1" }
      t:batch_delete_records{ { pk = "a", sk = "1" } }
      t:cached_get_record{ pk = "a", sk = "1" }
      local gets = 0
      for _, c in ipairs(calls) do if c.op == "GetItem" then gets = gets + 1 end end
      assert.equal(2, gets)
    end)
  end)

  describe("batch_upsert", function()
    it("merges with the stored item, keeps preserved keys and stamps dt fields (reference test)", function()
      local t, calls = manager(routes{
        BatchGetItem = { Responses = { my_table_name = {
          { pk = S("my_pk"), sk = S("my_sk"), data = S("value1"), preserve = S("p1"), kept = S("old") } } } },
        BatchWriteItem = { UnprocessedItems = {} },
      })
      local out = t:batch_upsert({ {
        pk = "my_pk", sk = "my_sk", data = "value2", preserve = "p2", preserve2 = "p3",
        gsi_pk = "gsi_pk", gsi_sk = "gsi_sk", lsi_pk = "lsi_pk",
      } }, { set_if_not_exists_keys = { "preserve", "preserve2" } })
      assert.equal("BatchGetItem", calls[1].op)
      assert.equal("BatchWriteItem", calls[2].op)
      local put = calls[2].body.RequestItems.my_table_name[1].PutRequest.Item
      assert.same({ pk = "my_pk", sk = "my_sk", data = "value2", preserve = "p1", preserve2 = "p3",
                    gsi_pk = "gsi_pk", gsi_sk = "gsi_sk", lsi_pk = "lsi_pk", kept = "old",
                    dt_created = NOW, dt_modified = NOW }, plain(put))
      assert.equal(1, #out)
      assert.equal("p1", out:get_record(1).preserve)
    end)

    it("writes plain records and merged ones in one request, and names a record that cannot be written", function()
      local t, calls = manager(routes{
        BatchGetItem = { Responses = { my_table_name = { { pk = S("b"), sk = S("2"), old = S("kept") } } } },
        BatchWriteItem = { UnprocessedItems = {} },
      })
      t:batch_upsert_records({ { pk = "a", sk = "1", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", v = 1 },
                               { pk = "b", sk = "2", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", v = 2 } })
      local puts = calls[2].body.RequestItems.my_table_name
      assert.equal(2, #puts)
      assert.same({ pk = "a", sk = "1", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", v = 1,
                    dt_created = NOW, dt_modified = NOW }, plain(puts[1].PutRequest.Item))
      assert.same({ pk = "b", sk = "2", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", v = 2, old = "kept",
                    dt_created = NOW, dt_modified = NOW }, plain(puts[2].PutRequest.Item))
      local before = #calls
      local ok, err = pcall(t.batch_upsert_records, t, {
        { pk = "c", sk = "1", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l" },
        { pk = "c", sk = "2", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", bad = 0 / 0 },
      }, { read_existing = false })
      assert.is_false(ok)
      assert.matches('record 2 {.*pk="c".*sk="2".*} cannot be written: record.bad: NaN cannot be stored in DynamoDB',
        err.message)
      assert.equal(before, #calls) -- nothing was sent
    end)

    it("keeps the stored dt_created", function()
      local t, calls = manager(routes{
        BatchGetItem = { Responses = { my_table_name = {
          { pk = S("a"), sk = S("1"), dt_created = S("2001-01-01T00:00:00.000Z") } } } },
        BatchWriteItem = {},
      })
      t:batch_upsert_records({ { pk = "a", sk = "1", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l",
                                 dt_created = "2010-01-01T00:00:00.000Z" } })
      local put = plain(calls[2].body.RequestItems.my_table_name[1].PutRequest.Item)
      assert.equal("2001-01-01T00:00:00.000Z", put.dt_created)
      assert.equal(NOW, put.dt_modified)
    end)

    it("raises for a missing or mistyped index attribute before writing", function()
      for _, bad in ipairs({ {}, { lsi_pk = 12 } }) do
        local t, calls = manager(routes{ BatchGetItem = { Responses = {} }, BatchWriteItem = {} })
        local record = { pk = "a", sk = "1", gsi_pk = "g", gsi_sk = "g" }
        for k, v in pairs(bad) do record[k] = v end
        local ok, err = pcall(t.batch_upsert, t, { record })
        assert.is_false(ok)
        assert.is_true(errors.is(err, "Validation"))
        assert.matches("lsi_pk", err.message, 1, true)
        for _, c in ipairs(calls) do assert.not_equal("BatchWriteItem", c.op) end
      end
    end)

    it("read_existing = false writes the records as given plus dt stamps, without a read", function()
      local t, calls = manager(routes{ BatchWriteItem = {} })
      t:batch_upsert_records({ { pk = "a", sk = "1", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", n = 1 } },
        { read_existing = false })
      assert.equal(1, #calls)
      assert.same({ pk = "a", sk = "1", gsi_pk = "g", gsi_sk = "g", lsi_pk = "l", n = 1,
                    dt_created = NOW, dt_modified = NOW },
        plain(calls[1].body.RequestItems.my_table_name[1].PutRequest.Item))
    end)

    it("writes 25 per request, the last duplicate wins, and missing cells are not written (W7, W9)", function()
      local Plain = DynamoTable:extend{ table = "plain" }
      local t, calls = manager(routes{ BatchWriteItem = {} }, Plain)
      local dt = dynamo.DataTable()
      for i = 1, 60 do dt:add_record{ pk = "p", sk = tostring(i), v = i } end
      dt:add_record{ pk = "p", sk = "1", only = "last" }
      t:batch_upsert_records(dt, { read_existing = false })
      local total, sizes = 0, {}
      local first
      for _, c in ipairs(calls) do
        local list = c.body.RequestItems.plain
        sizes[#sizes + 1] = #list
        total = total + #list
        for _, w in ipairs(list) do
          local item = plain(w.PutRequest.Item)
          if item.sk == "1" then first = item end
          if item.sk ~= "1" then assert.is_nil(item.only) end
          if item.sk == "1" then assert.is_nil(item.v) end
        end
      end
      assert.equal(60, total)
      table.sort(sizes)
      assert.same({ 10, 25, 25 }, sizes)
      assert.equal("last", first.only)
    end)

    it("retries UnprocessedItems and raises UnprocessedItems with the items when retries run out (W2)", function()
      local Plain = DynamoTable:extend{ table = "plain" }
      local t, calls = manager(routes{ BatchWriteItem = function(body, n)
        if n == 1 then return 200, { UnprocessedItems = { plain = { body.RequestItems.plain[2] } } } end
        return 200, { UnprocessedItems = {} }
      end }, Plain, nil, { max_attempts = 2 })
      t:batch_upsert_records({ { pk = "a", sk = "1" }, { pk = "b", sk = "2" } }, { read_existing = false })
      assert.equal(2, #calls)
      assert.equal("b", calls[2].body.RequestItems.plain[1].PutRequest.Item.pk.S)

      local t2, calls2 = manager(routes{ BatchWriteItem = function(body)
        return 200, { UnprocessedItems = { plain = { body.RequestItems.plain[1] } } }
      end }, Plain, nil, { max_attempts = 3 })
      local ok, err = pcall(t2.batch_upsert_records, t2, { { pk = "a", sk = "1", n = 7 }, { pk = "b", sk = "2" } },
        { read_existing = false })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "UnprocessedItems"))
      assert.equal(3, #calls2)
      assert.equal(1, #err.unprocessed)
      assert.equal(7, err.unprocessed[1].n)
    end)

    it("a failed request that cannot be retried raises with its items as unprocessed", function()
      local Plain = DynamoTable:extend{ table = "plain" }
      local t = manager(routes{ BatchWriteItem = function() return aws_error("ValidationException", "bad") end }, Plain)
      local ok, err = pcall(t.batch_upsert_records, t, { { pk = "a", sk = "1" } }, { read_existing = false })
      assert.is_false(ok)
      assert.equal("UnprocessedItems", err.code)
      assert.equal("ValidationException", err.cause.code)
      assert.matches("ValidationException: bad", err.message)
      assert.equal("a", err.unprocessed[1].pk)
    end)
  end)

  describe("batch_delete", function()
    it("sends DeleteRequests with the keys and returns the input records with keys", function()
      local t, calls = manager(routes{ BatchWriteItem = {} })
      local dt = t:batch_delete({ { pk_column = "a", sk_column = "1" }, { pk_column = "a", sk_column = "1" },
                                  { pk = "b", sk = "2" } })
      assert.equal(3, #dt)
      assert.same({ pk_column = "a", sk_column = "1", pk = "a", sk = "1" }, dt:get_record(1))
      assert.same({ my_table_name = { { DeleteRequest = { Key = { pk = S("a"), sk = S("1") } } },
                                      { DeleteRequest = { Key = { pk = S("b"), sk = S("2") } } } } },
        calls[1].body.RequestItems)
      local empty = t:batch_delete({})
      assert.equal(0, #empty)
      assert.equal(1, #calls)
    end)

    it("batch_delete_records takes an iterator and returns nothing", function()
      local t, calls = manager(routes{ BatchWriteItem = {} })
      local i = 0
      local out = t:batch_delete_records(function()
        i = i + 1
        if i <= 30 then return { pk = "p", sk = tostring(i) } end
      end)
      assert.is_nil(out)
      local total = 0
      for _, c in ipairs(calls) do total = total + #c.body.RequestItems.my_table_name end
      assert.equal(30, total)
      assert.equal(2, #calls)
    end)
  end)

  describe("query", function()
    it("sends the reference's Query for a sort key and a list filter", function()
      local t, calls = manager(routes{ Query = { Items = { { pk = S("pk_value"), sk = S("sk_value") } } } })
      local out = {}
      for r in t:query{ partition_key = "pk_value", sort_key = "sk_value",
                        filter_expression = C("key", "IN"), data = { key = { "key_value" } } } do
        out[#out + 1] = r
      end
      assert.same({ { pk = "pk_value", sk = "sk_value" } }, out)
      local body = calls[1].body
      assert.equal("pk = \"pk_value\" AND sk = \"sk_value\"", resolve(body, "KeyConditionExpression"))
      assert.equal("key IN (\"key_value\")", resolve(body, "FilterExpression"))
      assert.equal("my_table_name", body.TableName)
      assert.is_nil(body.Limit)
      assert.is_nil(body.IndexName)
    end)

    it("uses begins_with for sort_key_prefix, Limit for limit, IndexName for an index", function()
      local t, calls = manager(routes{ Query = { Items = { { pk = S("pk"), sk = S("x") }, { pk = S("pk"), sk = S("y") } } } })
      local n = 0
      for _ in t:query{ partition_key = "pk", sort_key_prefix = "sk_prefix", limit = 1 } do n = n + 1 end
      assert.equal(1, n)
      local body = calls[1].body
      assert.equal("pk = \"pk\" AND begins_with(sk, \"sk_prefix\")", resolve(body, "KeyConditionExpression"))
      assert.equal(1, body.Limit)
      t:query{ partition_key = "g", index = "gsi", scan_index_forward = false, consistent_read = true }()
      local b2 = calls[2].body
      assert.equal("gsi", b2.IndexName)
      assert.equal("gsi_pk = \"g\"", resolve(b2, "KeyConditionExpression"))
      assert.is_false(b2.ScanIndexForward)
      assert.is_true(b2.ConsistentRead)
    end)

    it("supports other sort key operators", function()
      local t, calls = manager(routes{ Query = { Items = {} } })
      t:query{ partition_key = "p", sort_key = "m", sort_key_operator = ">=" }()
      assert.equal("pk = \"p\" AND sk >= \"m\"", resolve(calls[1].body, "KeyConditionExpression"))
      t:query{ partition_key = "p", sort_key = { "a", "f" }, sort_key_operator = "BETWEEN" }()
      assert.equal("pk = \"p\" AND sk BETWEEN \"a\" AND \"f\"", resolve(calls[2].body, "KeyConditionExpression"))
      assert.has_error(function() t:query{ partition_key = "p", sort_key = "m", sort_key_operator = "<>" } end)
    end)

    it("raises for a nil partition_key at once, before any request", function()
      local t, calls = manager(routes{ Query = {} })
      local ok, err = pcall(t.query, t, { sort_key = "x" })
      assert.is_false(ok)
      assert.matches("partition_key should be set", err.message, 1, true)
      assert.equal(0, #calls)
    end)

    it("follows LastEvaluatedKey page by page, each query from its own position (W6)", function()
      local t, calls = manager(routes{ Query = function(body)
        local start = body.ExclusiveStartKey
        local pk = body.ExpressionAttributeValues[":aaa"] and body.ExpressionAttributeValues[":aaa"].S
        if not start then
          return 200, { Items = { { pk = S(pk), sk = S("1") } }, LastEvaluatedKey = { pk = S(pk), sk = S("1") } }
        end
        return 200, { Items = { { pk = S(pk), sk = S("2") } } }
      end })
      local first = t:query{ partition_key = "m1" }
      assert.equal("1", first().sk)
      assert.equal(1, #calls)
      local second = t:query{ partition_key = "m2" }
      assert.equal("1", second().sk)
      assert.is_nil(calls[2].body.ExclusiveStartKey)
      assert.equal("2", first().sk)
      assert.same({ pk = S("m1"), sk = S("1") }, calls[3].body.ExclusiveStartKey)
      assert.is_nil(first())
      assert.equal(3, #calls)
    end)
  end)

  describe("scan", function()
    it("reads items from each page as it goes, and raises InvalidResponse for a broken page", function()
      local t = manager(routes{ Scan = function(_, n)
        if n == 1 then
          return 200, { Items = { { pk = S("a"), sk = S("1") }, { pk = S("b"), sk = S("2") } },
                        LastEvaluatedKey = { pk = S("b"), sk = S("2") } }
        end
        return 200, '{"Items":[{"pk":{"S":"c"},"sk":{"S":"3"}},{"pk":'
      end })
      local it = t:scan()
      assert.equal("a", it().pk)
      assert.equal("b", it().pk)
      local ok, err = pcall(it) -- a broken page is an error, whatever came before the break
      assert.is_false(ok)
      assert.is_true(errors.is(err, "InvalidResponse"))
      assert.matches("^DynamoTable%(my_table_name%): Scan: the response is not valid JSON %(json: unexpected end", err.message)
    end)

    it("limit 1 gives exactly one record and sends Limit=1", function()
      local t, calls = manager(routes{ Scan = { Items = { { pk = S("a"), sk = S("1") }, { pk = S("b"), sk = S("2") } } } })
      local out = {}
      for r in t:scan{ filter_expression = C("test"), data = { test = "value" }, limit = 1, page_size = 1 } do
        out[#out + 1] = r
      end
      assert.equal(1, #out)
      local body = calls[1].body
      assert.equal(1, body.Limit)
      assert.equal("test = \"value\"", resolve(body, "FilterExpression"))
    end)

    it("limit 0 yields nothing and sends nothing", function()
      local t, calls = manager(routes{ Scan = { Items = { { pk = S("a"), sk = S("1") } } } })
      for _ in t:scan{ limit = 0 } do error("nothing expected") end
      for _ in t:query{ partition_key = "a", limit = 0 } do error("nothing expected") end
      assert.equal(0, #calls)
    end)

    it("counts returned records, not evaluated ones, with a filter", function()
      local t, calls = manager(routes{ Scan = function(body, n)
        if n < 3 then
          return 200, { Items = { { pk = S("x" .. n), sk = S("1") } }, LastEvaluatedKey = { pk = S("x" .. n), sk = S("1") } }
        end
        return 200, { Items = { { pk = S("y"), sk = S("1") }, { pk = S("z"), sk = S("1") } } }
      end })
      local n = 0
      for _ in t:scan{ filter_expression = C("a", "attribute_exists"), limit = 3 } do n = n + 1 end
      assert.equal(3, n)
      assert.equal(3, #calls)
      assert.is_nil(calls[1].body.Limit)
    end)

    it("has no dummy data, and passes index, consistent_read and projection (W26, W27)", function()
      local t, calls = manager(routes{ Scan = { Items = {} } })
      t:scan{ index = "gsi", consistent_read = true, projection = { "pk", "name" } }()
      local body = calls[1].body
      assert.equal("gsi", body.IndexName)
      assert.is_true(body.ConsistentRead)
      assert.equal("name, pk", resolve(body, "ProjectionExpression"))
      assert.is_nil(body.ExpressionAttributeValues)
      t:scan()()
      assert.same({ TableName = "my_table_name" }, calls[2].body)
    end)

    it("runs a parallel scan over segments", function()
      local t, calls = manager(routes{ Scan = function(body)
        return 200, { Items = { { pk = S("s" .. math.tointeger(body.Segment)), sk = S("1") } } }
      end })
      local seen = {}
      for r in t:scan{ segments = 3 } do seen[#seen + 1] = r.pk end
      table.sort(seen)
      assert.same({ "s0", "s1", "s2" }, seen)
      assert.equal(3, #calls)
      for _, c in ipairs(calls) do assert.equal(3, c.body.TotalSegments) end
    end)

    it("stops a parallel scan at its limit, counted over every segment", function()
      local t, calls = manager(routes{ Scan = function(body)
        local seg = math.tointeger(body.Segment)
        local items = {}
        for i = 1, body.Limit do items[i] = { pk = S("s" .. seg), sk = S(tostring(i)) } end
        return 200, { Items = items, LastEvaluatedKey = { pk = S("s" .. seg), sk = S("x") } }
      end })
      local n = 0
      for r in t:scan{ segments = 2, limit = 5 } do
        n = n + 1
        assert.is_string(r.pk)
      end
      assert.equal(5, n)
      -- each segment may ask for all 5; through this host transport (one
      -- request at a time) the first answer reaches the limit, so the second
      -- segment is never asked
      assert.equal(1, #calls)
      assert.equal(5, calls[1].body.Limit)
    end)
  end)

  describe("query_many", function()
    -- Partition p has `sizes[p]` items, served `per_page` at a time.
    local function partitions(sizes, per_page)
      return routes{ Query = function(body)
        local p = body.ExpressionAttributeValues[next(body.ExpressionAttributeValues)].S
        local from = body.ExclusiveStartKey and tonumber(body.ExclusiveStartKey.sk.S) or 0
        local size = sizes[p]
        local last = math.min(size, from + (body.Limit and math.min(body.Limit, per_page) or per_page))
        local items = {}
        for i = from + 1, last do items[#items + 1] = { pk = S(p), sk = S(tostring(i)) } end
        return 200, { Items = items, LastEvaluatedKey = last < size and { pk = S(p), sk = S(tostring(last)) } or nil }
      end }
    end

    it("runs queries a round at a time, each to its end, and tells which query a record is from", function()
      local t, calls = manager(partitions({ a = 5, b = 0, c = 2, d = 3 }, 2))
      local got = { {}, {}, {}, {} }
      local order = {}
      for r, i in t:query_many({ { partition_key = "a" }, { partition_key = "b" }, { partition_key = "c" },
                                 { partition_key = "d" } }, { concurrency = 2 }) do
        got[i][#got[i] + 1] = r.sk
        order[#order + 1] = r.pk
        assert.equal(({ "a", "b", "c", "d" })[i], r.pk)
      end
      assert.same({ { "1", "2", "3", "4", "5" }, {}, { "1", "2" }, { "1", "2", "3" } }, got)
      -- at most two pages out or waiting: a, b (empty, so it ends at once
      -- and c takes its place) and c; then a and d (c ended); then a and d
      local queried = {}
      for _, c in ipairs(calls) do
        queried[#queried + 1] = c.body.ExpressionAttributeValues[next(c.body.ExpressionAttributeValues)].S
      end
      assert.same({ "a", "b", "c", "a", "d", "a", "d" }, queried)
      assert.same({ "a", "a", "c", "c", "a", "a", "d", "d", "a", "d" }, order)
    end)

    it("honours each query's limit and sends nothing for limit 0", function()
      local t, calls = manager(partitions({ a = 9, b = 9, c = 9 }, 4))
      local count = { 0, 0, 0 }
      for _, i in t:query_many{ { partition_key = "a", limit = 3 }, { partition_key = "b", limit = 0 },
                                { partition_key = "c", limit = 6 } } do
        count[i] = count[i] + 1
      end
      assert.same({ 3, 0, 6 }, count)
      for _, c in ipairs(calls) do
        assert.not_equal("b", c.body.ExpressionAttributeValues[next(c.body.ExpressionAttributeValues)].S)
        assert.is_true(c.body.Limit <= 6)
      end
      assert.equal(3, calls[1].body.Limit)
    end)

    it("checks every query before sending and names the bad one", function()
      local t, calls = manager(partitions({ a = 1 }, 1))
      local ok, err = pcall(t.query_many, t, { { partition_key = "a" }, { index = "gsi" } })
      assert.is_false(ok)
      assert.equal("Validation", err.code)
      assert.matches("partition_key should be set", err.message, 1, true)
      assert.matches("(query 2)", err.message, 1, true)
      assert.has_error(function() t:query_many("a") end)
      assert.has_error(function() t:query_many({}, { concurrency = 0 }) end)
      assert.equal(0, #calls)
      local n = 0
      for _ in t:query_many({}) do n = n + 1 end
      assert.equal(0, n)
    end)

    it("raises a failed page's error", function()
      local t = manager(routes{ Query = function() return aws_error("ResourceNotFoundException") end })
      local ok, err = pcall(function()
        for _ in t:query_many{ { partition_key = "a" } } do end
      end)
      assert.is_false(ok)
      assert.equal("ResourceNotFoundException", err.code)
    end)
  end)

  describe("clear_table", function()
    local function deleted_keys(calls)
      local out = {}
      for _, c in ipairs(calls) do
        if c.op == "BatchWriteItem" then
          for _, w in ipairs(c.body.RequestItems.my_table_name) do out[#out + 1] = plain(w.DeleteRequest.Key) end
        end
      end
      return out
    end

    it("queries a partition for its keys and deletes them", function()
      local t, calls = manager(routes{
        Query = { Items = { { pk = S("my_pk"), sk = S("sk") } } },
        BatchWriteItem = {},
      })
      assert.equal(1, t:clear_table{ partition_key = "my_pk" })
      local q = calls[1].body
      assert.equal("Query", calls[1].op)
      assert.equal("pk = \"my_pk\"", resolve(q, "KeyConditionExpression"))
      assert.equal("pk, sk", resolve(q, "ProjectionExpression"))
      assert.same({ { pk = "my_pk", sk = "sk" } }, deleted_keys(calls))
    end)

    it("scans with prefix filters when no partition key is given", function()
      local cases = {
        { { partition_key_prefix = "prefix" }, "begins_with(pk, \"prefix\")" },
        { {}, nil },
        { { sort_key = "my_sk" }, "sk = \"my_sk\"" },
        { { partition_key_prefix = "my_pk", sort_key_prefix = "my_sk" },
          "begins_with(pk, \"my_pk\") AND begins_with(sk, \"my_sk\")" },
      }
      for _, case in ipairs(cases) do
        local t, calls = manager(routes{ Scan = { Items = { { pk = S("a"), sk = S("b") } } }, BatchWriteItem = {} })
        t:clear_table(case[1])
        assert.equal("Scan", calls[1].op)
        assert.equal(case[2], resolve(calls[1].body, "FilterExpression"))
        assert.equal("pk, sk", resolve(calls[1].body, "ProjectionExpression"))
        assert.same({ { pk = "a", sk = "b" } }, deleted_keys(calls))
      end
    end)

    it("honours filter_expression, limit and index without a partition key (W3)", function()
      local t, calls = manager(routes{
        Scan = { Items = { { pk = S("a"), sk = S("1") }, { pk = S("b"), sk = S("2") }, { pk = S("c"), sk = S("3") } } },
        BatchWriteItem = {},
      })
      t:clear_table{ filter_expression = C("status"), data = { status = "old" }, limit = 2, index = "gsi",
                     partition_key_prefix = "a" }
      local body = calls[1].body
      assert.equal("begins_with(gsi_pk, \"a\") AND status = \"old\"", resolve(body, "FilterExpression"))
      assert.equal("gsi", body.IndexName)
      assert.same({ { pk = "a", sk = "1" }, { pk = "b", sk = "2" } }, deleted_keys(calls))
    end)

    it("clear_records deletes only the sort_key_prefix items and refuses without a prefix (W4)", function()
      local Owned = UserTable:extend{ sort_key_prefix = "prefix_" }
      local t, calls = manager(routes{ Scan = { Items = { { pk = S("a"), sk = S("prefix_1") } } }, BatchWriteItem = {} },
        Owned)
      t:clear_records()
      assert.equal("begins_with(sk, \"prefix_\")", resolve(calls[1].body, "FilterExpression"))
      assert.equal(2, #calls)
      local t2, calls2 = manager(routes{ Scan = { Items = {} } })
      local ok, err = pcall(t2.clear_records, t2)
      assert.is_false(ok)
      assert.matches("sort_key_prefix", err.message, 1, true)
      assert.equal(0, #calls2)
    end)
  end)
end)
