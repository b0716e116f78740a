-- dynamo.core client: the sans-IO call API driven by a fake transport (exact
-- attempts, waits, headers), client lifetime, and the libcurl driver against
-- a local dynalite server.
local core = require("dynamo.core")
local helpers = require("spec.helpers")

local T0 = 1704164645000 -- 2024-01-02T03:04:05Z
local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local TOKEN = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN"

-- CRC-32 (IEEE) of a string, to fabricate x-amz-crc32 headers.
local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = CRC_TABLE[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return (c ~ 0xFFFFFFFF) & 0xFFFFFFFF
end

local function new_client(opts)
  local o = { endpoint = "http://127.0.0.1:8000", region = "us-east-1",
              access_key = "AKIDEXAMPLE", secret_key = SECRET, seed = 1 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return core.client_new(o)
end

local function ok_response(body)
  return { 200, { ["x-amz-crc32"] = tostring(crc32(body)), ["x-amzn-RequestId"] = "RID" }, body }
end

-- Drives `call` with scripted responses (the last one repeats): a table
-- { status, headers, body } or "transport" / "timeout". Returns the log
-- { requests = {...}, waits = {...} } and call:result()'s values.
local function drive(call, responses, random01)
  local now, log, n = T0, { requests = {}, waits = {} }, 0
  while true do
    local kind, arg = call:next(now, random01)
    if kind == "send" then
      n = n + 1
      log.requests[n] = arg
      local r = responses[math.min(n, #responses)]
      if r == "transport" or r == "timeout" then
        call:fail(r, r == "transport" and "connection refused" or "no answer")
      else
        call:feed(r[1], r[2], r[3])
      end
    elseif kind == "wait" then
      log.waits[#log.waits + 1] = arg
      now = now + arg
    else
      assert.equal("done", kind)
      return log, call:result()
    end
  end
end

describe("dynamo.core client, sans-IO", function()
  it("yields a signed POST with the DynamoDB headers", function()
    local c = new_client()
    local call = c:prepare("GetItem", '{"TableName":"users"}')
    local kind, req = call:next(T0, 0.5)
    assert.equal("send", kind)
    assert.equal("POST", req.method)
    assert.equal("http://127.0.0.1:8000/", req.url)
    assert.equal('{"TableName":"users"}', req.body)
    local h = req.headers
    assert.equal("127.0.0.1:8000", h.host)
    assert.equal("application/x-amz-json-1.0", h["content-type"])
    assert.equal("DynamoDB_20120810.GetItem", h["x-amz-target"])
    assert.equal("20240102T030405Z", h["x-amz-date"])
    assert.equal("identity", h["accept-encoding"])
    assert.is_nil(h["x-amz-security-token"])
    assert.matches("^AWS4%-HMAC%-SHA256 Credential=AKIDEXAMPLE/20240102/us%-east%-1/dynamodb/aws4_request, "
      .. "SignedHeaders=content%-type;host;x%-amz%-date;x%-amz%-target, Signature=%x+$", h.authorization)
    assert.equal(64, #h.authorization:match("Signature=(%x+)$"))
    local count = 0
    for _ in pairs(h) do count = count + 1 end
    assert.equal(6, count)
    c:close()
  end)

  it("adds and signs x-amz-security-token when a session token is set", function()
    local c = new_client{ session_token = TOKEN }
    local _, req = c:prepare("ListTables"):next(T0 + 999.9) -- fractional host clocks are fine
    assert.equal(TOKEN, req.headers["x-amz-security-token"])
    assert.equal("20240102T030405Z", req.headers["x-amz-date"])
    assert.equal("{}", req.body) -- no body means an empty JSON object
    assert.matches("SignedHeaders=content%-type;host;x%-amz%-date;x%-amz%-security%-token;x%-amz%-target,",
      req.headers.authorization)
    c:close()
  end)

  it("returns the body after one attempt on success", function()
    local c = new_client()
    local log, body = drive(c:prepare("GetItem", "{}"), { ok_response('{"Item":{}}') }, 0.5)
    assert.equal('{"Item":{}}', body)
    assert.equal(1, #log.requests)
    assert.same({}, log.waits)
  end)

  it("decodes the body on request, and reports a body that is not JSON as InvalidResponse", function()
    local c = new_client()
    local call = c:prepare("GetItem", "{}")
    drive(call, { ok_response('{"Item":{"n":{"N":"1.50"},"s":{"SS":["b","a"]}}}') }, 0.5)
    local plain = call:result(false)
    assert.equal("1.50", plain.Item.n.N)
    local native = call:result(true)
    assert.equal(1.5, native.Item.n)
    assert.equal("set", core.type_of(native.Item.s) == "SS" and "set" or "?")
    local bad = c:prepare("GetItem", "{}")
    drive(bad, { ok_response('{"Item":') }, 0.5)
    assert.equal('{"Item":', bad:result())
    local body, msg, info = bad:result(true)
    assert.is_nil(body)
    assert.matches("^InvalidResponse: the response is not valid JSON %(json: unexpected end of input at byte 9%)$", msg)
    assert.equal("InvalidResponse", info.code)
    assert.equal(200, info.status)
    assert.equal("RID", info.request_id)
    assert.is_false(info.retryable)
    assert.equal("client", info.retry_class)
    assert.equal(1, info.attempts)
  end)

  it("retries a 500 and signs the retry afresh", function()
    local c = new_client()
    local log, body = drive(c:prepare("PutItem", "{}"),
      { { 500, {}, '{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}' }, ok_response("{}") }, 0.5)
    assert.equal("{}", body)
    assert.equal(2, #log.requests)
    assert.same({ 12 }, log.waits) -- 0.5 * 25 ms
    assert.equal("20240102T030405Z", log.requests[2].headers["x-amz-date"])
  end)

  it("backs off 500, 1000, 2000 ms on three throttles with random01 = 0.5", function()
    local c = new_client()
    local throttled = { 400, { ["x-amzn-RequestId"] = "R1" },
      '{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}' }
    local log, body = drive(c:prepare("Query", "{}"), { throttled, throttled, throttled, ok_response('{"Count":0}') },
      0.5)
    assert.equal('{"Count":0}', body)
    assert.equal(4, #log.requests)
    assert.same({ 500, 1000, 2000 }, log.waits)
  end)

  it("honours x-amz-retry-after within [delay, delay + 5 s]", function()
    local c = new_client{ max_attempts = 3 }
    local log = drive(c:prepare("Query", "{}"), {
      { 400, { ["x-amzn-errortype"] = "ThrottlingException", ["x-amz-retry-after"] = "3000" }, "" },
      { 400, { ["x-amzn-errortype"] = "ThrottlingException", ["x-amz-retry-after"] = 99999 }, "" },
      ok_response("{}"),
    }, 0.5)
    assert.same({ 3000, 6000 }, log.waits)
  end)

  it("reports a client error at once with code, message and request id", function()
    local c = new_client()
    local doc = '{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException",'
      .. '"message":"One or more parameter values were invalid"}'
    local log, body, msg, info = drive(c:prepare("PutItem", "{}"), { { 400, { ["x-amzn-RequestId"] = "REQ-9" }, doc } })
    assert.is_nil(body)
    assert.equal(1, #log.requests)
    assert.equal("ValidationException: One or more parameter values were invalid", msg)
    assert.same({ code = "ValidationException", status = 400, message = "One or more parameter values were invalid",
                  request_id = "REQ-9", retry_class = "client", retryable = false, attempts = 1 }, info)
  end)

  it("reads the code from x-amzn-errortype and the message from Message", function()
    local c = new_client()
    local _, _, msg, info = drive(c:prepare("TransactWriteItems", "{}"), { { 400,
      { ["X-Amzn-ErrorType"] = "TransactionCanceledException:http://internal.amazon.com/" },
      '{"Message":"Transaction cancelled"}' } })
    assert.equal("TransactionCanceledException: Transaction cancelled", msg)
    assert.equal("TransactionCanceledException", info.code)
  end)

  it("gives up after max_attempts and says how many were made", function()
    local c = new_client{ max_attempts = 3 }
    local log, body, msg, info = drive(c:prepare("Scan", "{}"), { { 503, {}, "Service Unavailable" } }, 0.5)
    assert.is_nil(body)
    assert.equal(3, #log.requests)
    assert.same({ 12, 25 }, log.waits)
    assert.equal("Http: unexpected http status 503", msg)
    assert.same({ code = "Http", status = 503, message = "unexpected http status 503", retry_class = "transient",
                  retryable = true, attempts = 3 }, info)
  end)

  it("maps transport failures and timeouts to Transport and Timeout", function()
    local c = new_client{ max_attempts = 2 }
    local log, _, msg, info = drive(c:prepare("GetItem", "{}"), { "transport" }, 0.0)
    assert.equal(2, #log.requests)
    assert.same({ 0 }, log.waits) -- random01 = 0: a wait of 0 ms, still announced
    assert.equal("Transport: connection refused", msg)
    assert.is_nil(info.status)
    assert.equal("transient", info.retry_class)
    assert.is_true(info.retryable)
    local _, _, msg2, info2 = drive(c:prepare("GetItem", "{}"), { "timeout" }, 0.0)
    assert.equal("Timeout: no answer", msg2)
    assert.equal(2, info2.attempts)
  end)

  it("retries a checksum mismatch and reports Checksum when it persists", function()
    local c = new_client{ max_attempts = 2 }
    local body = '{"Item":{"pk":{"S":"a"}}}'
    local bad = { 200, { ["x-amz-crc32"] = tostring(crc32(body) ~ 1) }, body }
    local log, out = drive(c:prepare("GetItem", "{}"), { bad, { 200, { ["x-amz-crc32"] = crc32(body) }, body } }, 0.5)
    assert.equal(body, out)
    assert.equal(2, #log.requests)
    local _, none, msg, info = drive(c:prepare("GetItem", "{}"), { bad }, 0.5)
    assert.is_nil(none)
    assert.matches("^Checksum: x%-amz%-crc32 mismatch", msg)
    assert.equal(200, info.status)
    assert.equal(2, info.attempts)
  end)

  it("never puts the secret key or session token in an error", function()
    local c = new_client{ session_token = TOKEN, max_attempts = 1 }
    local echo = '{"__type":"x#UnrecognizedClientException","message":"key ' .. SECRET .. ' token ' .. TOKEN .. '"}'
    local _, _, msg, info = drive(c:prepare("GetItem", "{}"), { { 400, {}, echo } })
    assert.equal("UnrecognizedClientException: key *** token ***", msg)
    for _, v in pairs(info) do
      assert.is_nil(tostring(v):find(SECRET, 1, true))
      assert.is_nil(tostring(v):find(TOKEN, 1, true))
    end
    local call = c:prepare("GetItem", "{}")
    call:next(T0)
    call:fail("transport", "proxy echoed " .. SECRET)
    local _, msg2 = call:result()
    assert.equal("Transport: proxy echoed ***", msg2)
    assert.is_nil(tostring(c):find(SECRET, 1, true))
  end)

  it("draws the same waits from the same seed", function()
    local function waits(seed)
      local c = new_client{ seed = seed, max_attempts = 4 }
      local log = drive(c:prepare("Query", "{}"), { { 400, { ["x-amzn-errortype"] = "ThrottlingException" }, "" } })
      c:close()
      return log.waits
    end
    local a, b = waits(7), waits(7)
    assert.same(a, b)
    assert.equal(3, #a)
    for i, w in ipairs(a) do
      assert.is_true(w >= 0 and w < 1000 * 2 ^ (i - 1))
    end
    assert.are_not.same(a, waits(8))
  end)

  it("applies client retry settings", function()
    local c = new_client{ throttle_base_ms = 10, retry_base_ms = 4, retry_cap_ms = 30, max_attempts = 5 }
    local log = drive(c:prepare("Query", "{}"), { { 400, { ["x-amzn-errortype"] = "ThrottlingException" }, "" } }, 0.5)
    assert.same({ 5, 10, 15, 15 }, log.waits) -- 0.5 * min(30, 10 * 2^(n-1))
    log = drive(c:prepare("Query", "{}"), { { 500, {}, "" } }, 0.5)
    assert.same({ 2, 4, 8, 15 }, log.waits)
  end)

  it("sends after a wait without comparing clocks (the driver did the waiting)", function()
    local c = new_client()
    local call = c:prepare("Query", "{}")
    call:next(T0, 0.5)
    call:feed(400, { ["x-amzn-errortype"] = "ThrottlingException" }, "")
    assert.same({ "wait", 500 }, { call:next(T0, 0.5) })
    local kind, req = call:next(T0 - 3600 * 1000) -- even if the wall clock jumped back an hour
    assert.equal("send", kind)
    assert.equal("20240102T020405Z", req.headers["x-amz-date"])
  end)

  it("uses new credentials from the next request on", function()
    local c = new_client()
    c:set_credentials("AKIDNEW", "newsecret", TOKEN)
    local _, req = c:prepare("ListTables", "{}"):next(T0)
    assert.matches("Credential=AKIDNEW/", req.headers.authorization)
    assert.equal(TOKEN, req.headers["x-amz-security-token"])
    c:set_credentials("AKIDNEW2", "s")
    _, req = c:prepare("ListTables", "{}"):next(T0)
    assert.is_nil(req.headers["x-amz-security-token"])
    assert.has_error(function() c:set_credentials("AK ID", "s") end)
  end)

  it("raises on misuse", function()
    local c = new_client()
    local call = c:prepare("GetItem", "{}")
    assert.has_error(function() call:feed(200, {}, "{}") end, "call:feed: no request is outstanding")
    assert.has_error(function() call:result() end, "call:result: the call is not finished")
    assert.has_error(function() call:next(0 / 0) end)
    assert.has_error(function() call:next("soon") end)
    assert.has_error(function() call:next(T0, 1.0) end)
    assert.has_error(function() call:next(T0, -0.1) end)
    assert.equal("send", (call:next(T0)))
    assert.has_error(function() call:next(T0) end, "call:next: a response is outstanding (call feed or fail first)")
    assert.has_error(function() call:fail("dns", "x") end)
    call:feed(200, nil, "{}")
    assert.equal("done", call:next(T0))
    assert.equal("{}", call:result())
    assert.same({}, call:result(false))
    assert.has_error(function() call:result("plain") end)
    assert.has_error(function() c:prepare("Get Item", "{}") end)
    assert.has_error(function() c:prepare(nil, "{}") end)
    assert.has_error(function() c:call_many{ { "GetItem", 5 } } end)
  end)

  it("validates client_new options", function()
    assert.has_error(function() core.client_new{ region = "us-east-1" } end)
    assert.has_error(function() core.client_new{ endpoint = "http://127.0.0.1:8000" } end)
    assert.has_error(function() core.client_new{ endpoint = "127.0.0.1:8000", region = "us-east-1" } end,
      "bad field 'endpoint' to 'client_new' (http:// or https:// URL expected)")
    assert.has_error(function() new_client{ max_attempts = 0 } end)
    assert.has_error(function() new_client{ concurrency = 1.5 } end)
    assert.has_error(function() new_client{ timeout_ms = "fast" } end)
    assert.has_error(function() new_client{ access_key = "AK/ID" } end)
    local c = new_client{ max_attempts = 1, concurrency = 1 }
    assert.same({ requests = 0, connections = 0, retries = 0, waits = 0 }, c:stats())
  end)
end)

describe("dynamo.core client lifetime", function()
  it("closes idempotently and refuses use after close", function()
    local c = new_client()
    local call = c:prepare("GetItem", "{}")
    c:close()
    c:close()
    assert.equal("dynamo.Client (closed)", tostring(c))
    for _, f in ipairs{
      function() c:call("ListTables", "{}") end,
      function() c:call_many{} end,
      function() c:prepare("ListTables", "{}") end,
      function() c:stats() end,
      function() c:set_credentials("a", "b") end,
      function() call:next(T0) end,
    } do
      assert.has_error(f, "attempt to use a closed client")
    end
    call = nil
    collectgarbage()
    collectgarbage()
  end)

  it("closes through a to-be-closed variable", function()
    local outer
    do
      local c <close> = new_client()
      outer = c
      assert.truthy(tostring(c):match("^dynamo%.Client %(http://127%.0%.0%.1:8000/%)$"))
    end
    assert.has_error(function() outer:stats() end, "attempt to use a closed client")
  end)

  it("keeps a finished call's result after its client is gone", function()
    local c = new_client()
    local call = c:prepare("GetItem", "{}")
    call:next(T0)
    call:feed(200, {}, '{"Item":{}}')
    c:close()
    assert.equal('{"Item":{}}', call:result())
    c, call = nil, nil
    for _ = 1, 3 do collectgarbage() end
  end)

  it("is rejected where another userdata is expected", function()
    local c = new_client()
    assert.has_error(function() c.stats(io.stdout) end)
    assert.has_error(function() c:prepare("GetItem").next(c, T0) end)
  end)
end)

describe("dynamo.core client against dynalite #integration", function()
  local endpoint, stop

  setup(function()
    endpoint, stop = helpers.start_dynalite()
  end)

  teardown(function()
    if stop then stop() end
  end)

  local function live_client(opts)
    local o = { endpoint = endpoint, region = "us-east-1", access_key = "spec", secret_key = "spec-secret" }
    for k, v in pairs(opts or {}) do o[k] = v end
    return core.client_new(o)
  end

  it("lists tables", function()
    local c = live_client()
    local body = assert(c:call("ListTables", "{}"))
    assert.matches('"TableNames":%[', body)
    c:close()
  end)

  it("makes 50 sequential calls over one connection", function()
    local c = live_client()
    for _ = 1, 50 do assert(c:call("ListTables", "{}")) end
    local s = c:stats()
    assert.is_true(s.waits >= 1 and s.waits <= 150, "waits " .. tostring(s.waits)) -- about one per answer
    s.waits = nil
    assert.same({ requests = 50, connections = 1, retries = 0 }, s)
    c:close()
  end)

  it("surfaces a server error with its AWS code", function()
    local c = live_client()
    local body, msg, info = c:call("DescribeTable", '{"TableName":"no_such_table_here"}')
    assert.is_nil(body)
    assert.matches("^ResourceNotFoundException: ", msg)
    assert.equal("ResourceNotFoundException", info.code)
    assert.equal(400, info.status)
    assert.equal("client", info.retry_class)
    assert.is_false(info.retryable)
    assert.equal(1, info.attempts)
    c:close()
  end)

  it("runs many calls at once and keeps input order", function()
    local c = live_client{ concurrency = 4 }
    local requests = {}
    for i = 1, 12 do
      requests[i] = i % 4 == 0 and { "DescribeTable", '{"TableName":"missing_' .. i .. '"}' } or { "ListTables", "{}" }
    end
    local results = c:call_many(requests)
    assert.equal(12, #results)
    for i, r in ipairs(results) do
      if i % 4 == 0 then
        assert.is_true(r.error)
        assert.equal("ResourceNotFoundException", r.code)
        assert.matches("missing_" .. i, r.message)
      else
        assert.matches('"TableNames"', r)
      end
    end
    local s = c:stats()
    assert.equal(12, s.requests)
    assert.is_true(s.connections >= 1 and s.connections <= 4)
    assert.same({}, c:call_many{})
    c:close()
  end)

  it("decodes responses in C when asked, and marks failed slots", function()
    local c = live_client{ concurrency = 2 }
    local tables = assert(c:call("ListTables", "{}", false))
    assert.equal("table", type(tables.TableNames))
    local results, failed = c:call_many({ { "ListTables", "{}" }, { "DescribeTable", '{"TableName":"missing_x"}' } }, true)
    assert.equal("table", type(results[1].TableNames))
    assert.same({ [2] = true }, failed)
    assert.equal("ResourceNotFoundException", results[2].code)
    local page = assert(c:call("ListTables", "{}", "page"))
    assert.is_nil(page:next()) -- no Items member
    assert.equal("table", type(page:result().TableNames))
    local ok_only, none = c:call_many({ { "ListTables", "{}" } }, false)
    assert.equal("table", type(ok_only[1].TableNames))
    assert.is_nil(none)
    assert.has_error(function() c:call_many({}, "yes") end)
    c:close()
  end)

  it("fails with Transport after max_attempts on a closed port", function()
    -- a port that was just free: node binds port 0, prints it, and closes it
    local p = assert(io.popen([[node -e "const s=require('net').createServer();]]
      .. [[s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"]]))
    local port = tonumber(p:read("l"))
    p:close()
    assert.is_number(port)
    local c = core.client_new{ endpoint = "http://127.0.0.1:" .. port, region = "us-east-1", access_key = "spec",
                               secret_key = "spec-secret", max_attempts = 3, retry_base_ms = 1 }
    local body, msg, info = c:call("ListTables", "{}")
    assert.is_nil(body)
    assert.matches("^Transport: ", msg)
    assert.equal("Transport", info.code)
    assert.is_nil(info.status)
    assert.equal(3, info.attempts)
    assert.equal("transient", info.retry_class)
    assert.is_true(info.retryable)
    assert.is_nil(msg:find("spec-secret", 1, true))
    local s = c:stats()
    assert.equal(3, s.requests)
    assert.equal(2, s.retries)
    c:close()
  end)
end)
