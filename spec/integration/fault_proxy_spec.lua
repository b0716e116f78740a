-- The fault proxy (spec/support/fault_proxy.js) does what it says, seen
-- through the project's own client, with dynalite read directly to tell what
-- was really written.
local helpers = require("spec.helpers")

describe("fault proxy", function()
  local dynamo, core, direct, proxy, client, table_name

  local function put(c, sk, extra)
    local item = { pk = "p", sk = sk }
    for k, v in pairs(extra or {}) do item[k] = v end
    return c:call("PutItem", { TableName = table_name, Item = dynamo.marshal(item) })
  end

  local function stored(sk)
    local out = direct:call("GetItem", { TableName = table_name, ConsistentRead = true,
                                         Key = dynamo.marshal{ pk = "p", sk = sk } })
    return out.Item and dynamo.unmarshal(out.Item) or nil
  end

  -- fails one call at rate 1 with only `kind` enabled; returns the error and
  -- the proxy requests it took
  local function fault_once(kind, fn)
    proxy.configure{ rate = 1, faults = kind }
    local before = proxy.stats().requests
    local ok, err = pcall(fn)
    proxy.configure{ rate = 0 }
    assert.is_false(ok, kind .. " did not fail")
    assert.is_true(dynamo.errors.is(err), tostring(err))
    return err, proxy.stats().requests - before
  end

  setup(function()
    dynamo = require("dynamo")
    core = dynamo.core
    direct = helpers.client()
    table_name = helpers.create_table(direct, { prefix = "fault_proxy" })
    proxy = helpers.fault_proxy{ rate = 0 }
    client = helpers.client{ endpoint = proxy.endpoint, max_attempts = 1 }
  end)

  teardown(function()
    if client then client:close() end
    if proxy then proxy.stop() end
    if direct then pcall(direct.call, direct, "DeleteTable", { TableName = table_name }) end
  end)

  before_each(function()
    proxy.configure{ rate = 0, delay_ms = 0, faults = "all", seed = 1 }
  end)

  it("passes everything through unchanged at rate 0", function()
    proxy.reset()
    local item = { s = "héllo ✓", n = dynamo.number("12345678901234567890123456789012345678"),
                   b = dynamo.binary("\0\1\255"), l = { 1, "two", { three = 3 } }, ss = dynamo.set{ "a", "b" } }
    put(client, "same", item)
    local writes = {}
    for i = 1, 25 do writes[i] = { PutRequest = { Item = dynamo.marshal{ pk = "p", sk = ("rate0-%02d"):format(i) } } } end
    local w = client:call("BatchWriteItem", { RequestItems = { [table_name] = writes } })
    assert.same({}, w.UnprocessedItems)
    local keys = {}
    for i = 1, 25 do keys[i] = dynamo.marshal{ pk = "p", sk = ("rate0-%02d"):format(i) } end
    local g = client:call("BatchGetItem", { RequestItems = { [table_name] = { Keys = keys } } })
    assert.equal(25, #g.Responses[table_name])
    local via = client:call("GetItem", { TableName = table_name, Key = dynamo.marshal{ pk = "p", sk = "same" } })
    assert.equal(core.encode_item(item), core.encode_item((function()
      local x = dynamo.unmarshal(via.Item); x.pk = nil; x.sk = nil; return x end)()))
    local s = proxy.stats()
    assert.equal(4, s.requests)
    assert.equal(4, s.passed)
    assert.equal(0, s.faulted)

    -- byte for byte: the same GetItem read through the proxy and directly
    -- gives the same body, and the upstream's own request id and checksum
    local body = core.json_encode{ TableName = table_name, ConsistentRead = true,
                                   Key = dynamo.marshal{ pk = "p", sk = "same" } }
    local function raw(base)
      local hdr, out = os.tmpname(), os.tmpname()
      local cmd = (helpers.plain_env .. "curl -s -S -D %s -o %s -X POST -H 'content-type: application/x-amz-json-1.0' "
        .. "-H 'x-amz-target: DynamoDB_20120810.GetItem' -H 'x-amz-date: 20240101T000000Z' "
        .. "-H 'authorization: AWS4-HMAC-SHA256 Credential=spec/20240101/us-east-1/dynamodb/aws4_request, "
        .. "SignedHeaders=host;x-amz-date, Signature=00' --data-binary %s %s"):format(
        helpers.shell_quote(hdr), helpers.shell_quote(out), helpers.shell_quote(body), helpers.shell_quote(base .. "/"))
      assert.is_true(os.execute(cmd) == true)
      local h, b = helpers.read_file(hdr), helpers.read_file(out)
      os.remove(hdr); os.remove(out)
      return h, b
    end
    local h1, b1 = raw(proxy.endpoint)
    local _, b2 = raw(proxy.upstream)
    assert.equal(b2, b1)
    assert.equal(tostring(core.crc32(b1)), h1:match("[Xx]%-[Aa]mz%-[Cc]rc32: (%d+)"))
    local rid = h1:match("x%-amzn%-RequestId: (%S+)")
    assert.is_truthy(rid)
    assert.is_falsy(rid:match("^FAULTPROXY"))
  end)

  it("keeps up with many requests in flight on keep-alive connections", function()
    local c = helpers.client{ endpoint = proxy.endpoint, concurrency = 32 }
    local requests = {}
    local body = core.json_encode{ TableName = table_name, Key = dynamo.marshal{ pk = "p", sk = "same" } }
    for i = 1, 256 do requests[i] = { "GetItem", body } end
    local out = c:send_many(requests)
    for i = 1, #requests do assert.is_false(dynamo.errors.is(out[i]), tostring(out[i])) end
    local s = c:stats()
    assert.equal(256, s.requests)
    assert.is_true(s.connections <= 32, "connections " .. s.connections)
    c:close()
  end)

  it("500 answers InternalFailure without forwarding", function()
    local err, n = fault_once("500", function() put(client, "f500") end)
    assert.equal("InternalFailure", err.code)
    assert.equal(500, err.status)
    assert.is_true(err.retryable)
    assert.equal(1, n)
    assert.is_nil(stored("f500"))
  end)

  it("503 answers ServiceUnavailable without forwarding", function()
    local err = fault_once("503", function() put(client, "f503") end)
    assert.equal("ServiceUnavailable", err.code)
    assert.equal(503, err.status)
    assert.is_true(err.retryable)
    assert.is_nil(stored("f503"))
  end)

  it("throttle answers 400 ProvisionedThroughputExceededException, sometimes ThrottlingException", function()
    local seen = {}
    proxy.configure{ rate = 1, faults = "throttle", seed = 5 }
    for i = 1, 24 do
      local ok, err = pcall(put, client, "throttle" .. i)
      assert.is_false(ok)
      assert.equal(400, err.status)
      assert.is_true(err.retryable)
      seen[err.code] = (seen[err.code] or 0) + 1
    end
    proxy.configure{ rate = 0 }
    assert.is_true(seen.ProvisionedThroughputExceededException > seen.ThrottlingException)
    assert.is_true(seen.ThrottlingException >= 1)
    assert.equal(24, seen.ProvisionedThroughputExceededException + seen.ThrottlingException)
    assert.is_nil(stored("throttle1"))
  end)

  it("drop_before closes the connection: Transport, and nothing was written", function()
    client:call("ListTables", {}) -- a reused connection, as in real runs
    local err, n = fault_once("drop_before", function() put(client, "drop_before") end)
    assert.equal("Transport", err.code)
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    -- libcurl resends once by itself when a reused connection answers nothing
    assert.is_true(n == 1 or n == 2, "proxy requests " .. n)
    assert.is_nil(stored("drop_before"))
  end)

  it("drop_after loses the answer of a write that happened", function()
    local err = fault_once("drop_after", function() put(client, "drop_after", { v = 7 }) end)
    assert.equal("Transport", err.code)
    local item = stored("drop_after")
    assert.is_truthy(item, "drop_after did not reach the server")
    assert.equal(7, item.v)
  end)

  it("half_body sends the headers and half the body: Transport", function()
    put(client, "half", { pad = string.rep("x", 5000) })
    local err = fault_once("half_body", function()
      client:call("GetItem", { TableName = table_name, Key = dynamo.marshal{ pk = "p", sk = "half" } })
    end)
    assert.equal("Transport", err.code)
    assert.matches("remaining", err.message, 1, true)
  end)

  it("bad_crc answers the real body with a wrong x-amz-crc32: Checksum", function()
    local err = fault_once("bad_crc", function() put(client, "bad_crc", { v = 1 }) end)
    assert.equal("Checksum", err.code)
    assert.is_true(err.retryable)
    assert.matches("x-amz-crc32 mismatch", err.message, 1, true)
    assert.equal(1, stored("bad_crc").v) -- forwarded: the write happened
  end)

  it("partial writes part of a BatchWriteItem and reports exactly the rest unprocessed", function()
    for seed = 1, 4 do
      proxy.configure{ rate = 1, faults = "partial", seed = seed }
      local writes, prefix = {}, "partial" .. seed .. "-"
      for i = 1, 20 do
        writes[i] = { PutRequest = { Item = dynamo.marshal{ pk = "p", sk = prefix .. i, i = i } } }
      end
      -- five deletes of items that exist, among the puts
      for i = 1, 5 do put(direct, prefix .. "del" .. i) end
      for i = 1, 5 do writes[20 + i] = { DeleteRequest = { Key = dynamo.marshal{ pk = "p", sk = prefix .. "del" .. i } } } end
      local out = client:call("BatchWriteItem", { RequestItems = { [table_name] = writes } })
      local un = out.UnprocessedItems[table_name]
      assert.is_truthy(un)
      assert.is_true(#un >= 1 and #un <= 24, "unprocessed " .. #un)
      local left = {}
      for _, w in ipairs(un) do
        local key = w.PutRequest and w.PutRequest.Item or w.DeleteRequest.Key
        left[key.sk.S] = w.PutRequest and "put" or "delete"
        if w.PutRequest then assert.equal(core.json_encode(writes[tonumber(key.i.N)].PutRequest), core.json_encode(w.PutRequest)) end
      end
      for i = 1, 20 do
        local sk = prefix .. i
        if left[sk] then assert.is_nil(stored(sk), sk) else assert.is_truthy(stored(sk), sk) end
      end
      for i = 1, 5 do
        local sk = prefix .. "del" .. i
        if left[sk] then assert.is_truthy(stored(sk), sk) else assert.is_nil(stored(sk), sk) end
      end
    end
  end)

  it("partial reads part of a BatchGetItem and returns the rest as UnprocessedKeys with the table's options", function()
    local writes = {}
    for i = 1, 25 do writes[i] = { PutRequest = { Item = dynamo.marshal{ pk = "p", sk = "get" .. i, v = i, w = "x" } } } end
    direct:call("BatchWriteItem", { RequestItems = { [table_name] = writes } })
    for seed = 1, 4 do
      proxy.configure{ rate = 1, faults = "partial", seed = seed }
      local keys = {}
      for i = 1, 25 do keys[i] = dynamo.marshal{ pk = "p", sk = "get" .. i } end
      local out = client:call("BatchGetItem", { RequestItems = { [table_name] = {
        Keys = keys, ConsistentRead = true, ProjectionExpression = "sk, v" } } })
      local un = out.UnprocessedKeys[table_name]
      assert.is_truthy(un)
      assert.is_true(un.ConsistentRead)
      assert.equal("sk, v", un.ProjectionExpression)
      local seen = {}
      for _, k in ipairs(un.Keys) do seen[k.sk.S] = "unprocessed" end
      for _, item in ipairs(out.Responses[table_name]) do
        assert.is_nil(seen[item.sk.S])
        assert.is_nil(item.w) -- the projection reached the server
        seen[item.sk.S] = "found"
      end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.equal(25, n)
      assert.is_true(#un.Keys >= 1 and #un.Keys <= 24)
    end
  end)

  it("partial passes other requests and single-entry batches unfaulted", function()
    proxy.reset()
    proxy.configure{ rate = 1, faults = "partial" }
    put(client, "partial-single-put")
    local out = client:call("BatchWriteItem", { RequestItems = { [table_name] = {
      { PutRequest = { Item = dynamo.marshal{ pk = "p", sk = "partial-single" } } } } } })
    assert.same({}, out.UnprocessedItems)
    local s = proxy.stats()
    assert.equal(2, s.partial_passed)
    assert.equal(0, s.faulted)
    assert.is_truthy(stored("partial-single"))
  end)

  it("delay_ms adds at least that latency to every request", function()
    proxy.configure{ delay_ms = 120 }
    local t0 = core.monotonic_ms()
    for _ = 1, 3 do client:call("ListTables", {}) end
    local took = core.monotonic_ms() - t0
    assert.is_true(took >= 360, "took " .. took .. " ms")
    assert.is_true(took < 2000, "took " .. took .. " ms")
  end)

  it("gives the same fault sequence for the same seed", function()
    local function run(seed)
      proxy.reset()
      proxy.configure{ seed = seed, rate = 0.5, faults = "500,503,throttle,bad_crc,partial" }
      local codes = {}
      for i = 1, 40 do
        local ok, err = pcall(put, client, "seed" .. i)
        codes[i] = ok and "ok" or err.code
      end
      local log = proxy.stats(true).log
      proxy.configure{ rate = 0 }
      return table.concat(codes, " "), table.concat(log, " ")
    end
    local a, la = run(11)
    local b, lb = run(11)
    local c, lc = run(12)
    assert.equal(a, b)
    assert.equal(la, lb)
    assert.are_not.equal(la, lc)
    assert.are_not.equal(a, c)
    assert.matches("ok", a)
    assert.matches("InternalFailure", a)
  end)

  it("counts faults per kind and rejects a bad config", function()
    proxy.reset()
    proxy.configure{ rate = 1, faults = { "500", "503" }, seed = 3 }
    for i = 1, 10 do pcall(put, client, "count" .. i) end
    local s = proxy.stats()
    assert.equal(10, s.requests)
    assert.equal(10, s.faulted)
    assert.equal(10, s.by_kind["500"] + s.by_kind["503"])
    assert.equal("500,503", s.config.faults)
    assert.has_error(function() proxy.configure{ faults = "nonsense" } end)
    assert.has_error(function() proxy.configure{ rate = 2 } end)
  end)
end)
