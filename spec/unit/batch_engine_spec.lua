-- The core's batch engine through its binding (dynamo.Batch, core.batch_put_items,
-- core.batch_add_keys, core.batch_items), driven by a recording fake transport
-- through the client's host loop: request shapes, the identity of keys between
-- Lua values and the server's JSON, and the account of what was not done.
local helpers = require("spec.helpers")
local cjson = require("cjson")

describe("dynamo.core batch engine", function()
  local dynamo, core, errors

  before_each(function()
    dynamo = require("dynamo")
    core = dynamo.core
    errors = require("dynamo.errors")
  end)

  -- A client whose requests go to answer(op, body, n) -> status, JSON text.
  local function client_with(answer, opts)
    local seen = {}
    local o = {
      endpoint = "http://127.0.0.1:1", region = "us-east-1", max_attempts = 2, seed = 3,
      credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
      transport = function(request)
        local op = request.headers["x-amz-target"]:match("%.(%w+)$")
        seen[#seen + 1] = { op = op, body = request.body }
        local status, text = answer(op, request.body, #seen)
        return status, { ["content-type"] = "application/x-amz-json-1.0" }, text
      end,
      sleep = function() end,
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    return dynamo.client(o), seen
  end

  it("writes tables encoded in C and JSON text as given, with a suffix, 25 per request", function()
    local client, seen = client_with(function() return 200, "{}" end)
    local b = core.batch_new(client.handle, { kind = "write", table = "t\"x", pk = "pk" })
    local items, ids = {}, {}
    for i = 1, 30 do
      items[i] = i == 2 and '{"pk":{"S":"k2"},"raw":{"BOOL":true}}' or { pk = "k" .. i, n = i }
      ids[i] = core.key_id("k" .. i)
    end
    assert.is_nil(core.batch_put_items(b, items, ids, 1, 30, ',"dt":{"S":"now"}}'))
    assert.equal(30, b:slots())
    client:run_op(b)
    assert.is_true(b:status())
    assert.equal(2, #seen)
    local first = cjson.decode(seen[1].body)
    local list = first.RequestItems['t"x']
    assert.equal(25, #list)
    assert.same({ pk = { S = "k1" }, n = { N = "1" }, dt = { S = "now" } }, list[1].PutRequest.Item)
    assert.same({ pk = { S = "k2" }, raw = { BOOL = true } }, list[2].PutRequest.Item) -- text: no suffix
    assert.equal(5, #cjson.decode(seen[2].body).RequestItems['t"x'])
    assert.same({ requests = 2, failed_requests = 0, unprocessed = 0, retried_entries = 0 }, b:stats())
    b:free()
    assert.has_error(function() b:slots() end, "attempt to use a freed batch")
  end)

  it("refuses an item over 400 KB by position and size, and raises on a value that cannot be written", function()
    local client = client_with(function() return 200, "{}" end)
    local b = core.batch_new(client.handle, { kind = "write", table = "t", pk = "pk" })
    local big = { pk = "a", v = ("x"):rep(409600) }
    local k, size = core.batch_put_items(b, { { pk = "z" }, big }, { core.key_id("z"), core.key_id("a") }, 1, 2)
    assert.equal(2, k)
    assert.equal(409600 + 2 + 1 + 1, size)
    assert.equal(1, b:slots())
    assert.has_error(function()
      core.batch_put_items(b, { { pk = "n", bad = 0 / 0 } }, { core.key_id("n") }, 1, 1)
    end)
    local ok, too = b:put(core.key_id("q"), '{"pk":{"S":"q"},"v":{"S":"' .. ("y"):rep(409600) .. '"}}')
    assert.is_false(ok)
    assert.equal(409600 + 2 + 1 + 1, too)
    local g = core.batch_new(client.handle, { kind = "get", table = "t", pk = "pk" })
    assert.has_error(function() g:put(core.key_id("q"), '{"pk":{"S":"q"}}') end)
    assert.has_error(function() core.batch_new(client.handle, { kind = "get", table = "t", pk = "pk", per_request = 101 }) end)
    assert.has_error(function() core.batch_new(client.handle, { kind = "nope", table = "t", pk = "pk" }) end)
  end)

  it("matches the server's items to keys by DynamoDB's identity: escapes, number forms, binaries", function()
    -- the server writes strings with escapes and numbers in other forms than the client does
    local client, seen = client_with(function(op, body)
      return 200, '{"Responses":{"t":['
        .. '{"pk":{"S":"caf\\u00e9"},"sk":{"N":"1.50"},"v":{"S":"one"}},'
        .. '{"sk":{"N":"2E+1"},"pk":{"B":"AAE="},"v":{"S":"two"}}'
        .. ']},"UnprocessedKeys":{}}'
    end)
    local b = core.batch_new(client.handle, { kind = "get", table = "t", pk = "pk", sk = "sk", consistent_read = true })
    local pv = { "café", dynamo.binary("\0\1"), "nope", "café" }
    local sv = { 1.5, 20, 1, dynamo.number("1.5") }
    local ids = {}
    for i = 1, 4 do ids[i] = core.key_id(pv[i], sv[i]) end
    core.batch_add_keys(b, "pk", pv, "sk", sv, ids, 1, 4)
    assert.equal(4, b:slots())
    client:run_op(b)
    local body = cjson.decode(seen[1].body)
    assert.equal(3, #body.RequestItems.t.Keys) -- slots 1 and 4 are one key
    assert.is_true(body.RequestItems.t.ConsistentRead)
    local recs = { { mine = 1 }, { mine = 2 }, { mine = 3 }, { mine = 4, v = "own" } }
    local out, flags = {}, {}
    core.batch_items(b, recs, out, flags, 1, 4)
    assert.same({ true, true, false, true }, flags)
    assert.same({ pk = "café", sk = 1.5, v = "one", mine = 1 }, out[1])
    assert.equal("two", out[2].v)
    assert.equal(2, out[2].mine)
    assert.is_nil(out[3])
    assert.equal("one", out[4].v) -- the item's own value wins over the record's
    assert.not_equal(out[1], out[4]) -- each slot its own table
  end)

  it("re-sends what comes back unprocessed and accounts for what never got through", function()
    local client, seen = client_with(function(op, body, n)
      local req = cjson.decode(body)
      if n == 1 then -- the first request: its last two entries come back
        local list = req.RequestItems.t
        return 200, cjson.encode({ UnprocessedItems = { t = { list[#list - 1], list[#list] } } })
      end
      if body:find('"k4"', 1, true) then
        return 500, '{"__type":"com.amazon.coral.service#InternalServerError","message":"boom"}'
      end
      return 200, '{"UnprocessedItems":{}}'
    end, { max_attempts = 3 })
    local b = core.batch_new(client.handle, { kind = "write", table = "t", pk = "pk", per_request = 2 })
    local items, ids = {}, {}
    for i = 1, 6 do items[i], ids[i] = { pk = "k" .. i }, core.key_id("k" .. i) end
    core.batch_put_items(b, items, ids, 1, 6)
    client:run_op(b)
    local ok, info = b:status()
    assert.is_false(ok)
    assert.equal("InternalServerError", info.code)
    local slots, uncertain = b:not_done()
    -- k3 and k4 failed together 3 times; then nothing new went out: k5 and k6 never left
    assert.same({ 3, 4, 5, 6 }, slots)
    assert.is_true(uncertain[4]) -- a 500: the write may have happened
    assert.is_nil(uncertain[5])
    local slot = b:slot(4)
    assert.is_false(slot.done)
    assert.equal(3, slot.attempts)
    assert.equal("InternalServerError", slot.cause.code)
    assert.is_true(b:slot(1).done)
    local st = b:stats()
    assert.equal(2, st.unprocessed)
    assert.equal(3, st.failed_requests)
    assert.equal(1 + 3 + 1, #seen) -- k1,k2 twice; k3,k4 three times
    assert.equal("InternalServerError", b:slot(6).cause.code) -- never sent: the batch's cause
  end)

  it("a host loop drives it through next/feed, and a call belongs to its batch", function()
    local client = client_with(function() return 200, '{"UnprocessedItems":{}}' end)
    local b = core.batch_new(client.handle, { kind = "write", table = "t", pk = "pk" })
    core.batch_add_keys(b, "pk", { "a" }, nil, nil, { core.key_id("a") }, 1, 1)
    local kind, call = b:next()
    assert.equal("call", kind)
    assert.equal("idle", (b:next()))
    local other = core.batch_new(client.handle, { kind = "write", table = "t", pk = "pk" })
    assert.has_error(function() other:feed(call) end)
    assert.has_error(function() b:feed(call) end) -- not finished yet
    local step, request = call:next(core.now_ms())
    assert.equal("send", step)
    assert.matches('"DeleteRequest":{"Key":{"pk":{"S":"a"}}}', request.body, 1, true)
    call:feed(200, {}, '{"UnprocessedItems":{}}')
    assert.equal("done", (call:next(core.now_ms())))
    b:feed(call)
    assert.has_error(function() call:next(core.now_ms()) end, "attempt to use a closed call")
    assert.equal("done", (b:next()))
    assert.is_true(b:status())
  end)

  it("a batch that is freed closes the calls it handed out", function()
    local client = client_with(function() return 200, "{}" end)
    local b = core.batch_new(client.handle, { kind = "get", table = "t", pk = "pk" })
    core.batch_add_keys(b, "pk", { "a" }, nil, nil, { core.key_id("a") }, 1, 1)
    local _, call = b:next()
    b:free()
    assert.has_error(function() call:next(core.now_ms()) end, "attempt to use a closed call")
    collectgarbage()
    collectgarbage()
  end)

  it("the table manager's batch errors carry the account", function()
    local client = client_with(function()
      return 400, '{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"no table"}'
    end)
    local T = dynamo.DynamoTable:extend{ table = "gone", sort_key_name = false }
    local t = T{ client = client }
    local records = {}
    for i = 1, 60 do records[i] = { pk = "r" .. i } end
    local ok, err = pcall(t.batch_upsert_records, t, records, { read_existing = false })
    assert.is_false(ok)
    assert.is_true(errors.is(err, "UnprocessedItems"))
    assert.equal(60, #err.unprocessed)
    assert.equal(records[1], err.unprocessed[1]) -- the records as given
    assert.same({}, err.uncertain)
    assert.equal("ResourceNotFoundException", err.cause.code)
    assert.matches("60 of 60 records not written %(ResourceNotFoundException: no table%)", err.message)
    assert.is_false(err.retryable)
    local ok2, err2 = pcall(function() for _ in t:batch_get_records(records) do end end)
    assert.is_false(ok2)
    assert.equal("UnprocessedKeys", err2.code)
    assert.equal(60, #err2.unprocessed)
  end)
end)
