-- One spec per weak point of the reference (reference section 13, issue 4)
-- that the table manager fixes, each proven against dynalite.
local helpers = require("spec.helpers")
local cjson = require("cjson")

describe("DynamoTable fixes the reference's weak points (dynalite)", function()
  local dynamo, DynamoTable, DynamoTableIndex, C, errors
  local client, Table, t, table_name

  local function all(iter)
    local out = {}
    for r in iter do out[#out + 1] = r end
    return out
  end

  local function requests() return client:stats().requests end

  local function stored(pk, sk)
    local out = client:call("GetItem", { TableName = table_name, Key = { pk = { S = pk }, sk = { S = sk } },
                                         ConsistentRead = true })
    return out.Item
  end

  setup(function()
    dynamo = require("dynamo")
    DynamoTable = require("dynamo.DynamoTable")
    DynamoTableIndex = require("dynamo.DynamoTableIndex")
    C = dynamo.ConditionExpression
    errors = require("dynamo.errors")
    client = helpers.client()
    Table = DynamoTable:extend{
      global_secondary_indexes = { DynamoTableIndex("by_kind", "kind", "sk") },
    }
    table_name = helpers.table_name("weak")
    t = Table{ client = client, table = table_name }
    t:create_table()
    t:wait_until_exists()
  end)

  teardown(function()
    if t then pcall(t.delete_table, t) end
  end)

  before_each(function()
    t:clear_table()
    t:invalidate_cache()
  end)

  -- A host transport in front of dynalite that answers the first `rounds`
  -- batch requests with only half of the work done and the rest returned as
  -- UnprocessedItems / UnprocessedKeys, the way DynamoDB does under throttling.
  local function throttling_client(rounds, opts)
    local real = helpers.client()
    local state = { left = rounds, partial = 0 }
    local function target(request)
      for k, v in pairs(request.headers) do
        if type(k) == "string" and k:lower() == "x-amz-target" then return (v:match("%.(%w+)$")) end
      end
    end
    local function forward(op, body)
      local out = real.handle:call(op, body)
      assert(out, "forwarded request failed")
      return out
    end
    local transport = function(request)
      local op = target(request)
      if (op == "BatchWriteItem" or op == "BatchGetItem") and state.left > 0 then
        state.left = state.left - 1
        local req = cjson.decode(request.body)
        local name, entry = next(req.RequestItems)
        local list = op == "BatchGetItem" and entry.Keys or entry
        if #list > 1 then
          state.partial = state.partial + 1
          local half = #list // 2
          local sent, kept = {}, {}
          for i, v in ipairs(list) do
            if i <= half then sent[#sent + 1] = v else kept[#kept + 1] = v end
          end
          local resp
          if op == "BatchGetItem" then
            entry.Keys = sent
            resp = cjson.decode(forward(op, cjson.encode(req)))
            local rest = { Keys = kept, ConsistentRead = entry.ConsistentRead }
            resp.UnprocessedKeys = { [name] = rest }
          else
            req.RequestItems[name] = sent
            resp = cjson.decode(forward(op, cjson.encode(req)))
            resp.UnprocessedItems = { [name] = kept }
          end
          return 200, {}, cjson.encode(resp)
        end
      end
      return 200, {}, forward(op, request.body)
    end
    opts = opts or {}
    return dynamo.client{ endpoint = real.endpoint, region = "us-east-1", transport = transport,
                          credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
                          sleep = opts.sleep or dynamo.core.sleep_ms, max_attempts = opts.max_attempts }, state
  end

  it("W1/W2: retries unprocessed batch items and keys until nothing is lost", function()
    local sleeps = {}
    local slow, state = throttling_client(6, { sleep = function(ms) sleeps[#sleeps + 1] = ms end })
    local m = Table{ client = slow, table = table_name }
    local records = {}
    for i = 1, 60 do records[i] = { pk = "u", sk = string.format("%03d", i), kind = "k", n = i } end
    m:batch_upsert_records(records, { read_existing = false })
    assert.is_true(state.partial > 0)
    assert.is_true(#sleeps > 0)
    assert.equal(60, #all(t:query{ partition_key = "u", consistent_read = true }))
    state.left = 3
    local dt, found = m:batch_get(records)
    assert.equal(60, #dt)
    for i = 1, 60 do
      assert.is_true(found[i])
      assert.equal(i, dt:get_record(i).n)
    end
  end)

  it("W1/W2: raises with the unprocessed records when retries run out", function()
    -- every request answers half its items unprocessed; each record has 2 attempts
    local slow = throttling_client(1000, { max_attempts = 2 })
    local m = Table{ client = slow, table = table_name }
    local records = {}
    for i = 1, 8 do records[i] = { pk = "x", sk = tostring(i), kind = "k" } end
    local ok, err = pcall(m.batch_upsert_records, m, records, { read_existing = false })
    assert.is_false(ok)
    assert.is_true(errors.is(err, "UnprocessedItems"))
    local written = #all(t:query{ partition_key = "x", consistent_read = true })
    assert.equal(8, written + #err.unprocessed)
    assert.equal(2, #err.unprocessed)
    assert.equal("Unprocessed", err.cause.code)
    for _, r in ipairs(err.unprocessed) do assert.is_nil(stored("x", r.sk)) end
  end)

  it("batch_get returns every input record in input order and tells found from not found", function()
    t:batch_upsert_records({ { pk = "g", sk = "2", kind = "k", v = "two" }, { pk = "g", sk = "4", kind = "k", v = "four" } })
    local input = {}
    for i = 5, 1, -1 do input[#input + 1] = { pk = "g", sk = tostring(i), mine = i } end
    local dt, found = t:batch_get(input)
    assert.same({ false, true, false, true, false }, found)
    assert.same({ pk = "g", sk = "5", mine = 5 }, dt:get_record(1))
    assert.equal("four", dt:get_record(2).v)
    assert.equal(4, dt:get_record(2).mine)
    assert.equal("two", dt:get_record(4).v)
  end)

  it("W3: clear_table with a filter and no partition key deletes only matching items, honouring limit and index",
    function()
      local records = {}
      for i = 1, 10 do
        records[i] = { pk = "c" .. i, sk = "s", kind = i <= 6 and "old" or "new", n = i }
      end
      t:batch_upsert_records(records)
      t:clear_table{ filter_expression = C("n", "<=", "max"), data = { max = 3 } }
      assert.equal(7, #all(t:scan()))
      assert.equal(2, t:clear_table{ index = "by_kind", filter_expression = C("kind"), data = { kind = "old" },
                                     limit = 2 })
      assert.equal(5, #all(t:scan()))
      local left = {}
      for r in t:scan() do left[#left + 1] = r.kind end
      table.sort(left)
      assert.same({ "new", "new", "new", "new", "old" }, left)
    end)

  it("W4: clear_records deletes only what the manager owns", function()
    local Owned = Table:extend{ sort_key_prefix = "mine#" }
    local owned = Owned{ client = client, table = table_name }
    t:batch_upsert_records({ { pk = "p", sk = "mine#1", kind = "k" }, { pk = "p", sk = "mine#2", kind = "k" },
                             { pk = "p", sk = "other#1", kind = "k" } })
    owned:clear_records()
    local left = all(t:scan())
    assert.equal(1, #left)
    assert.equal("other#1", left[1].sk)
    assert.has_error(function() t:clear_records() end)
    assert.equal(1, #all(t:scan()))
  end)

  it("W8/W26: get_record finds key-only items; consistent_read works on get, batch get, query and scan", function()
    client:call("PutItem", { TableName = table_name, Item = { pk = { S = "ko" }, sk = { S = "1" } } })
    assert.same({ pk = "ko", sk = "1" }, t:get_record({ pk = "ko", sk = "1" }, { consistent_read = true }))
    assert.same({ pk = "ko", sk = "1" }, t:get_record({ pk = "ko", sk = "1" }))
    local _, found = t:batch_get({ { pk = "ko", sk = "1" } }, { consistent_read = true })
    assert.same({ true }, found)
    assert.equal(1, #all(t:query{ partition_key = "ko", consistent_read = true }))
    assert.equal(1, #all(t:scan{ consistent_read = true }))
  end)

  it("W24: query and scan stream page by page and limit counts returned records", function()
    local records = {}
    for i = 1, 300 do records[i] = { pk = "s", sk = string.format("%04d", i), kind = "k", even = i % 2 == 0 } end
    t:batch_upsert_records(records, { read_existing = false })
    local before = requests()
    local iter = t:query{ partition_key = "s", page_size = 50 }
    assert.equal(before, requests())
    for _ = 1, 50 do iter() end
    assert.equal(before + 1, requests())
    iter()
    assert.equal(before + 2, requests())
    local rest = 0
    for _ in iter do rest = rest + 1 end
    assert.equal(249, rest)
    -- with a filter, limit counts matches, not evaluated items
    local evens = all(t:scan{ filter_expression = C("even"), data = { even = true }, limit = 120, page_size = 100 })
    assert.equal(120, #evens)
    for _, r in ipairs(evens) do assert.is_true(r.even) end
    -- limit = 0 yields nothing and sends nothing
    before = requests()
    assert.equal(0, #all(t:scan{ limit = 0 }))
    assert.equal(0, #all(t:query{ partition_key = "s", limit = 0 }))
    assert.equal(before, requests())
  end)

  it("W24: memory stays flat while streaming a large scan", function()
    local records = {}
    for i = 1, 3000 do records[i] = { pk = "m" .. (i % 30), sk = tostring(i), kind = "k", pad = string.rep("x", 200) } end
    t:batch_upsert_records(records, { read_existing = false })
    records = nil
    collectgarbage()
    local base = collectgarbage("count")
    local peak, n = 0, 0
    for _ in t:scan{ page_size = 100 } do
      n = n + 1
      if n % 100 == 0 then
        collectgarbage()
        peak = math.max(peak, collectgarbage("count") - base)
      end
    end
    assert.equal(3000, n)
    -- the whole result is about 3000 * 250 bytes; one page is a thirtieth of it
    assert.is_true(peak < 300, "peak growth " .. peak .. " KB")
  end)

  it("W6: each query starts from its own position", function()
    local records = {}
    for i = 1, 30 do records[i] = { pk = "q" .. (i % 2), sk = string.format("%02d", i), kind = "k" } end
    t:batch_upsert_records(records, { read_existing = false })
    local a = t:query{ partition_key = "q0", page_size = 4 }
    local b = t:query{ partition_key = "q1", page_size = 4 }
    local seen_a, seen_b = {}, {}
    for _ = 1, 15 do
      local ra, rb = a(), b()
      if ra then seen_a[#seen_a + 1] = ra.sk end
      if rb then seen_b[#seen_b + 1] = rb.sk end
    end
    assert.equal(15, #seen_a)
    assert.equal(15, #seen_b)
    assert.equal("02", seen_a[1])
    assert.equal("01", seen_b[1])
    assert.equal("30", seen_a[15])
  end)

  it("W9/W23: duplicate keys in one batch do not fail, and batch gets use 100 keys per request", function()
    t:batch_upsert_records({ { pk = "d", sk = "1", kind = "k", v = "first" }, { pk = "d", sk = "1", kind = "k", v = "last" } })
    assert.equal("last", stored("d", "1").v.S)
    local dt, found = t:batch_get({ { pk = "d", sk = "1" }, { pk = "d", sk = "1", extra = true } })
    assert.same({ true, true }, found)
    assert.equal("last", dt:get_record(2).v)
    t:batch_delete_records({ { pk = "d", sk = "1" }, { pk = "d", sk = "1" } })
    assert.is_nil(stored("d", "1"))
    local keys = {}
    for i = 1, 250 do keys[i] = { pk = "none", sk = tostring(i) } end
    local before = requests()
    t:batch_get(keys)
    assert.equal(before + 3, requests())
  end)

  it("W7/W14: missing DataTable cells are not written as NULL, dynamo.core.NULL writes NULL, remove_keys removes", function()
    local dt = dynamo.DataTable()
    dt:add_record({ pk = "n", sk = "1", kind = "k", a = 1 }, { pk = "n", sk = "2", kind = "k", b = 2 })
    t:batch_upsert(dt)
    local one, two = stored("n", "1"), stored("n", "2")
    assert.is_nil(one.b)
    assert.is_nil(two.a)
    t:upsert_record{ pk = "n", sk = "1", kind = "k", z = dynamo.core.NULL }
    assert.is_true(stored("n", "1").z.NULL)
    t:upsert_record({ pk = "n", sk = "1", kind = "k" }, { remove_keys = { "a", "z" } })
    local after = stored("n", "1")
    assert.is_nil(after.a)
    assert.is_nil(after.z)
    assert.equal("k", after.kind.S)
  end)

  it("W10/W11: extra_data is not written; delete_record conditions can use any data", function()
    t:upsert_record({ pk = "e", sk = "1", kind = "k", version = 1 },
      { condition_expression = C("version", "attribute_not_exists"), extra_data = { secret = "not stored" } })
    assert.is_nil(stored("e", "1").secret)
    local ok, err = pcall(t.delete_record, t, { pk = "e", sk = "1" },
      { condition_expression = C("version", "=", "expected"), data = { expected = 2 } })
    assert.is_false(ok)
    assert.equal("ConditionalCheckFailedException", err.code)
    assert.is_not_nil(stored("e", "1"))
    local old = t:delete_record({ pk = "e", sk = "1", kind = "k" },
      { condition_expression = C("version", "=", "expected") & C("kind"), data = { expected = 1 } })
    assert.equal(1, old.version)
    assert.is_nil(stored("e", "1"))
  end)

  it("W25: the cache is exact, keeps input order, follows the manager's writes and never returns stubs", function()
    t:batch_upsert_records({ { pk = "a", sk = "\0b", kind = "k", v = 1 }, { pk = "a\0", sk = "b", kind = "k", v = 2 } })
    assert.equal(1, t:cached_get_record{ pk = "a", sk = "\0b" }.v)
    assert.equal(2, t:cached_get_record{ pk = "a\0", sk = "b" }.v)
    assert.is_nil(t:cached_get_record{ pk = "a", sk = "missing" })
    local dt, found = t:cached_batch_get({ { pk = "a", sk = "missing" }, { pk = "a\0", sk = "b" }, { pk = "z", sk = "z" } })
    assert.same({ false, true, false }, found)
    assert.equal("missing", dt:get_record(1).sk)
    assert.equal(2, dt:get_record(2).v)
    assert.is_nil(t:cached_get_record{ pk = "z", sk = "z" })
    t:upsert_record{ pk = "a\0", sk = "b", kind = "k", v = 3 }
    assert.equal(3, t:cached_get_record{ pk = "a\0", sk = "b" }.v)
    t:upsert_record{ pk = "z", sk = "z", kind = "k", v = 4 }
    assert.equal(4, t:cached_get_record{ pk = "z", sk = "z" }.v)
    t:delete_record{ pk = "z", sk = "z" }
    assert.is_nil(t:cached_get_record{ pk = "z", sk = "z" })
  end)

  it("conditional failures raise DynamoTableError with code ConditionalCheckFailedException", function()
    t:upsert_record{ pk = "cc", sk = "1", kind = "k" }
    local ok, err = pcall(t.upsert_record, t, { pk = "cc", sk = "1", kind = "k" },
      { condition_expression = C("pk", "attribute_not_exists") })
    assert.is_false(ok)
    assert.is_true(errors.is(err, "ConditionalCheckFailedException"))
    assert.matches("ConditionalCheckFailedException", tostring(err), 1, true)
  end)
end)
