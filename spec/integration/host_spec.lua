-- The host driver against dynalite with a transport that really yields: a
-- cooperative scheduler on non-blocking LuaSocket sockets
-- (spec/support/coro_host.lua) stands in for the host's event loop.
local helpers = require("spec.helpers")
local coro_host = require("spec.support.coro_host")
local socket = require("socket")

describe("dynamo.host against dynalite", function()
  local dynamo, core, plain, table_name

  setup(function()
    dynamo = require("dynamo")
    core = require("dynamo.core")
    plain = helpers.client()
    table_name = helpers.create_table(plain, { prefix = "host" })
  end)

  teardown(function()
    if plain then pcall(plain.call, plain, "DeleteTable", { TableName = table_name }) end
  end)

  -- A client on scheduler s; probe.max is the most requests in flight at once,
  -- probe.sleeps the host sleeps. `wrap(transport)` may change the transport.
  local function host_client(s, opts, wrap)
    local probe = { now = 0, max = 0, requests = 0, sleeps = {} }
    local transport = s:http_transport(function(event)
      if event == "start" then
        probe.now = probe.now + 1
        probe.requests = probe.requests + 1
        if probe.now > probe.max then probe.max = probe.now end
      else
        probe.now = probe.now - 1
      end
    end)
    local o = {
      endpoint = helpers.endpoint(), region = "us-east-1",
      credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
      transport = wrap and wrap(transport) or transport,
      sleep = function(ms) probe.sleeps[#probe.sleeps + 1] = ms; s:sleep(ms) end,
      spawn = s:spawner(), join = s:joiner(),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    return dynamo.client(o), probe
  end

  local function put_request(sk, n)
    return { "PutItem", core.json_encode{ TableName = table_name,
      Item = dynamo.marshal{ pk = "many", sk = sk, n = n } } }
  end

  local function get_request(sk)
    return { "GetItem", core.json_encode{ TableName = table_name, Key = dynamo.marshal{ pk = "many", sk = sk },
      ConsistentRead = true } }
  end

  it("sends 40 PutItem and 40 GetItem with concurrency requests in flight, results in input order", function()
    local s = coro_host.new()
    local client, probe = host_client(s, { concurrency = 8 })
    s:run(function()
      local puts = {}
      for i = 1, 40 do puts[i] = put_request(("%03d"):format(i), i * 3) end
      local out = client:send_many(puts)
      assert.equal(40, #out)
      for i = 1, 40 do assert.is_false(dynamo.errors.is(out[i]), tostring(out[i])) end
      assert.equal(8, probe.max)
      probe.max = 0
      -- gets, one of them on a missing table: a failure in its slot
      local gets = {}
      for i = 1, 40 do gets[i] = get_request(("%03d"):format(41 - i)) end
      gets[17] = { "GetItem", core.json_encode{ TableName = "no_such_table_host", Key = dynamo.marshal{ pk = "x", sk = "y" } } }
      local items = client:send_many(gets, true)
      assert.equal(8, probe.max)
      for i = 1, 40 do
        if i == 17 then
          assert.is_true(dynamo.errors.is(items[i], "ResourceNotFoundException"))
        else
          assert.equal(("%03d"):format(41 - i), items[i].Item.sk)
          assert.equal((41 - i) * 3, items[i].Item.n)
        end
      end
    end)
    assert.equal(80, probe.requests)
    assert.equal(0, probe.now)
    local st = client:stats()
    assert.equal(80, st.requests)
    assert.equal(0, st.retries)
    assert.is_true(s.stats.connections <= 8)   -- keep-alive: one connection per light thread at most
    s:close()
  end)

  it("reads Query pages of many partitions together through send_pages", function()
    local s = coro_host.new()
    local client, probe = host_client(s, { concurrency = 4 })
    s:run(function()
      local puts = {}
      for p = 1, 6 do
        for j = 1, 3 do
          puts[#puts + 1] = { "PutItem", core.json_encode{ TableName = table_name,
            Item = dynamo.marshal{ pk = "part" .. p, sk = ("%02d"):format(j), p = p } } }
        end
      end
      client:send_many(puts)
      local queries = {}
      for p = 1, 6 do
        queries[p] = { "Query", core.json_encode{ TableName = table_name, KeyConditionExpression = "pk = :p",
          ExpressionAttributeValues = dynamo.marshal{ [":p"] = "part" .. p }, ConsistentRead = true } }
      end
      probe.max = 0
      local pages = client:send_pages(queries)
      assert.equal(4, probe.max)
      for p = 1, 6 do
        local seen = {}
        for item in function() return pages[p]:next() end do seen[#seen + 1] = item.sk .. "/" .. item.p end
        assert.same({ "01/" .. p, "02/" .. p, "03/" .. p }, seen)
        assert.equal(3, pages[p]:result().Count)
      end
    end)
    s:close()
  end)

  it("maps a transport timeout to Timeout, retried after the host's sleep, never the blocking one", function()
    -- a server that takes connections (the kernel's backlog) and never answers
    local silent = assert(socket.bind("127.0.0.1", 0))
    local _, port = silent:getsockname()
    local blocking = core.sleep_ms
    local blocked = 0
    core.sleep_ms = function(...) blocked = blocked + 1; return blocking(...) end
    local ok, err = pcall(function()
      local s = coro_host.new()
      local client, probe = host_client(s, { endpoint = "http://127.0.0.1:" .. port, timeout_ms = 150,
                                             max_attempts = 2, concurrency = 3 })
      local t0 = coro_host.now_ms()
      local out = s:run(function()
        return client:send_many({ { "ListTables", "{}" }, { "ListTables", "{}" }, { "ListTables", "{}" } })
      end)
      local took = coro_host.now_ms() - t0
      for i = 1, 3 do
        assert.is_true(dynamo.errors.is(out[i], "Timeout"), tostring(out[i]))
        assert.is_true(out[i].retryable)
        assert.equal(2, out[i].attempts)
      end
      assert.equal(3, probe.max)                 -- the three timed out together
      assert.equal(6, probe.requests)
      assert.equal(3, #probe.sleeps)             -- one backoff per request, through the host
      assert.is_true(took >= 300 and took < 1500, "took " .. took .. " ms")
      local st = client:stats()
      assert.equal(6, st.requests)
      assert.equal(3, st.retries)
      s:close()
    end)
    core.sleep_ms = blocking
    silent:close()
    assert(ok, err)
    assert.equal(0, blocked)
  end)

  it("retries 5xx answers with the host's sleep while other requests go on", function()
    local s = coro_host.new()
    local failed = {}
    local client, probe = host_client(s, { concurrency = 6 }, function(transport)
      return function(request)
        if not failed[request.body] then
          failed[request.body] = true
          s:sleep(1)
          return 503, {}, '{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailable","message":"busy"}'
        end
        return transport(request)
      end
    end)
    s:run(function()
      local reqs = {}
      for i = 1, 24 do reqs[i] = put_request(("r%02d"):format(i), i) end
      local out = client:send_many(reqs)
      for i = 1, 24 do assert.is_false(dynamo.errors.is(out[i]), tostring(out[i])) end
      local gets = {}
      for i = 1, 24 do gets[i] = get_request(("r%02d"):format(i)) end
      failed = setmetatable({}, { __index = function() return true end })   -- no more failures
      local items = client:send_many(gets, true)
      for i = 1, 24 do assert.equal(i, items[i].Item.n) end
    end)
    assert.equal(24, #probe.sleeps)
    assert.equal(24, client:stats().retries)
    assert.equal(72, client:stats().requests)
    assert.equal(6, probe.max)
    s:close()
  end)

  it("runs the table manager's batches and queries through the host", function()
    local s = coro_host.new()
    local client, probe = host_client(s, { concurrency = 8 })
    local Table = dynamo.DynamoTable:extend{ table = table_name, partition_key_name = "pk", sort_key_name = "sk" }
    function Table:get_partition_key(r) return r.project end
    function Table:get_sort_key(r) return r.name end
    s:run(function()
      local t = Table{ client = client }
      local records = {}
      for i = 1, 300 do records[i] = { project = "tm" .. (i % 5), name = ("n%03d"):format(i), i = i } end
      t:batch_upsert_records(records, { read_existing = false })
      assert.is_true(probe.max > 1)
      local n = 0
      for record, found in t:batch_get_records(records) do
        n = n + 1
        assert.is_true(found)
        assert.equal(n, record.i)
      end
      assert.equal(300, n)
      local counts = {}
      local queries = {}
      for p = 0, 4 do queries[p + 1] = { partition_key = "tm" .. p } end
      for record, i in t:query_many(queries) do
        counts[i] = (counts[i] or 0) + 1
        assert.equal("tm" .. (i - 1), record.project)
      end
      assert.same({ 60, 60, 60, 60, 60 }, counts)
    end)
    s:close()
  end)

  it("batches retry through the host's sleep behind faults, many in flight, never the blocking sleep", function()
    local proxy = helpers.fault_proxy{ rate = 0.3, faults = "partial,500,throttle", seed = 9 }
    local s = coro_host.new()
    local client, probe = host_client(s, { concurrency = 6, max_attempts = 12, endpoint = proxy.endpoint })
    local Table = dynamo.DynamoTable:extend{ table = table_name, partition_key_name = "pk", sort_key_name = "sk" }
    local blocking = 0
    local real_sleep = core.sleep_ms
    core.sleep_ms = function(ms) blocking = blocking + 1; return real_sleep(ms) end
    local ok, err = pcall(s.run, s, function()
      local t = Table{ client = client }
      local records = {}
      for i = 1, 400 do records[i] = { pk = "faulty", sk = ("f%04d"):format(i), i = i } end
      local phases = {}
      local function phase(name, fn)
        probe.max = 0
        fn()
        phases[name] = probe.max
      end
      phase("upsert", function() t:batch_upsert_records(records, { read_existing = false }) end)
      phase("get", function()
        local n = 0
        for record, found in t:batch_get_records(records) do
          n = n + 1
          assert.is_true(found)
          assert.equal(n, record.i)
        end
        assert.equal(400, n)
      end)
      local half = {}
      for i = 1, 400, 2 do half[#half + 1] = records[i] end
      phase("delete", function() t:batch_delete_records(half) end)
      phase("scan", function()
        local left = {}
        for record in t:scan{ segments = 4, consistent_read = true } do
          if record.pk == "faulty" then left[#left + 1] = record.i end
        end
        table.sort(left)
        assert.equal(200, #left)
        for k, i in ipairs(left) do assert.equal(2 * k, i) end
      end)
      for name, max in pairs(phases) do assert.is_true(max > 1, name .. " had one request in flight at most") end
    end)
    core.sleep_ms = real_sleep
    s:close()
    local stats = proxy.stats()
    proxy.stop()
    assert(ok, err)
    assert.equal(0, blocking)
    assert.is_true(#probe.sleeps > 0) -- the retries waited through the host
    assert.is_true(stats.faulted > 0)
  end)
end)

