-- dynamo.host and the host contract of dynamo.client: construction, the
-- request table, timeouts, stats, and many calls in flight on a cooperative
-- scheduler (spec/support/coro_host.lua) whose transport answers from a
-- script. No server.
local helpers = require("spec.helpers")
local coro_host = require("spec.support.coro_host")

local ENDPOINT = "http://127.0.0.1:8000"
local CREDS = { access_key_id = "AKIDSPEC", secret_access_key = "very-secret-key" }

local function ok_response(body)
  return { 200, { ["content-type"] = "application/x-amz-json-1.0" }, body or "{}" }
end

local function error_response(status, aws_type, message)
  return { status, {}, string.format('{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"%s"}',
    aws_type, message) }
end

describe("dynamo.client host options", function()
  local dynamo

  setup(function() dynamo = require("dynamo") end)

  local function transport() return 200, {}, "{}" end
  local function noop() end

  local function client(opts)
    local o = { endpoint = ENDPOINT, region = "us-east-1", credentials = CREDS }
    for k, v in pairs(opts) do o[k] = v end
    return dynamo.client(o)
  end

  it("refuses a transport without a sleep, since the default sleep would block the event loop", function()
    local ok, err = pcall(client, { transport = transport })
    assert.is_false(ok)
    assert.matches("'transport' needs 'sleep", err)
    assert.matches("blocks", err)
  end)

  it("refuses spawn without join and join without spawn", function()
    local ok, err = pcall(client, { transport = transport, sleep = noop, spawn = noop })
    assert.is_false(ok)
    assert.matches("'spawn' and 'join' go together", err)
    ok, err = pcall(client, { transport = transport, sleep = noop, join = noop })
    assert.is_false(ok)
    assert.matches("'spawn' and 'join' go together", err)
  end)

  it("refuses spawn and join without a transport, and host options that are not functions", function()
    local ok, err = pcall(client, { spawn = noop, join = noop })
    assert.is_false(ok)
    assert.matches("need a 'transport'", err)
    ok, err = pcall(client, { transport = transport, sleep = 5 })
    assert.is_false(ok)
    assert.matches("'sleep' must be a function", err)
    ok, err = pcall(client, { transport = "curl", sleep = noop })
    assert.is_false(ok)
    assert.matches("'transport' must be a function", err)
  end)

  it("runs one request at a time without spawn, whatever the concurrency", function()
    local c = client{ transport = transport, sleep = noop, concurrency = 16 }
    assert.equal(1, c.host.concurrency)
    assert.equal(16, c.concurrency)
    local s = coro_host.new()
    local threaded = client{ transport = transport, sleep = noop, concurrency = 16,
                             spawn = s:spawner(), join = s:joiner() }
    assert.equal(16, threaded.host.concurrency)
  end)
end)

describe("dynamo.client through a host transport", function()
  local dynamo, core

  setup(function()
    dynamo = require("dynamo")
    core = require("dynamo.core")
  end)

  local function client_with(responses, opts)
    local fake = helpers.fake_transport(responses)
    local sleeps = {}
    local o = { endpoint = ENDPOINT, region = "us-east-1", transport = fake.fn, credentials = CREDS,
                sleep = function(ms) sleeps[#sleeps + 1] = ms end, seed = 7 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return dynamo.client(o), fake, sleeps
  end

  it("gives the host the client's timeouts in every request", function()
    local client, fake = client_with({ ok_response() }, { timeout_ms = 1234, connect_timeout_ms = 567 })
    client:call("ListTables", {})
    client:send_many({ { "ListTables", "{}" }, { "DescribeLimits" } })
    assert.equal(3, #fake.requests)
    for _, req in ipairs(fake.requests) do
      assert.equal(1234, req.timeout_ms)
      assert.equal(567, req.connect_timeout_ms)
      assert.equal("POST", req.method)
      assert.equal("string", type(req.body))
      assert.equal("table", type(req.headers))
    end
  end)

  it("maps nil, \"timeout\" to a Timeout error, retried up to max_attempts with the host's sleep", function()
    local client, fake, sleeps = client_with({ function() return nil, "timeout" end }, { max_attempts = 3 })
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.equal("Timeout", err.code)
    assert.is_true(err.retryable)
    assert.equal(3, err.attempts)
    assert.equal(3, #fake.requests)
    assert.equal(2, #sleeps)
  end)

  it("takes any error starting with \"timeout\" as a timeout, any other as Transport", function()
    local client = client_with({ function() return nil, "timeout (read)" end }, { max_attempts = 1 })
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.equal("Timeout", err.code)
    assert.matches("timeout %(read%)", err.message)
    client = client_with({ function() return nil, "connection refused" end }, { max_attempts = 2 })
    ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.equal("Transport", err.code)
    assert.matches("connection refused", err.message)
    assert.equal(2, err.attempts)
    client = client_with({ function() return nil end }, { max_attempts = 1 })
    ok, err = pcall(client.call, client, "ListTables", {})
    assert.equal("Transport", err.code)
  end)

  it("puts a timeout in its slot in send_many, the other results kept", function()
    local n = 0
    local client = client_with({ function()
      n = n + 1
      if n == 2 then return nil, "timeout" end
      return 200, {}, '{"n":' .. n .. "}"
    end }, { max_attempts = 1 })
    local out = client:send_many({ { "ListTables" }, { "ListTables" }, { "ListTables" } })
    assert.equal(1, out[1].n)
    assert.is_true(dynamo.errors.is(out[2], "Timeout"))
    assert.equal(3, out[3].n)
  end)

  it("raises a clear error when the transport breaks the contract (a bug, not a failure)", function()
    local client = client_with({ function() return "200", {}, "{}" end })
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.matches("the transport returned status 200", tostring(err))
    client = client_with({ function() return 200, "content-type: x", "{}" end })
    ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.matches("headers of type string", tostring(err))
  end)

  it("counts host requests and retries in stats", function()
    local client = client_with({
      error_response(400, "ThrottlingException", "slow down"),
      ok_response('{"TableNames":[]}'),
    })
    client:call("ListTables", {})
    local s = client:stats()
    assert.equal(2, s.requests)
    assert.equal(1, s.retries)
    assert.equal(0, s.connections)
    client:send_many({ { "ListTables" }, { "ListTables" }, { "ListTables" } })
    s = client:stats()
    assert.equal(5, s.requests)
    assert.equal(1, s.retries)
  end)

  it("never calls the blocking sleep when the host gives one", function()
    local blocking = core.sleep_ms
    local blocked = 0
    core.sleep_ms = function(...) blocked = blocked + 1; return blocking(...) end
    local ok, err = pcall(function()
      -- one call, retried twice
      local client, _, sleeps = client_with({
        { 503, {}, "{}" }, error_response(400, "ThrottlingException", "slow down"), ok_response(),
      }, { max_attempts = 3 })
      client:call("ListTables", {})
      assert.equal(2, #sleeps)
      -- many calls in flight, each retried once
      local s = coro_host.new()
      local host_sleeps, failed = 0, {}
      local threaded = dynamo.client{
        endpoint = ENDPOINT, region = "us-east-1", credentials = CREDS, concurrency = 4,
        transport = function(req)
          s:sleep(1)
          if not failed[req.body] then failed[req.body] = true; return 500, {}, "{}" end
          return 200, {}, "{}"
        end,
        sleep = function(ms) host_sleeps = host_sleeps + 1; s:sleep(ms) end,
        spawn = s:spawner(), join = s:joiner(),
      }
      local out = s:run(function()
        local reqs = {}
        for i = 1, 12 do reqs[i] = { "GetItem", '{"i":' .. i .. "}" } end
        return threaded:send_many(reqs)
      end)
      for i = 1, 12 do assert.same({}, out[i]) end
      assert.equal(12, host_sleeps)
      -- the table manager waits with the client's sleep too
      local Table = dynamo.DynamoTable:extend{ table = "t", partition_key_name = "pk", sort_key_name = false }
      assert.equal(threaded.sleep, Table{ client = threaded }.sleep)
    end)
    core.sleep_ms = blocking
    assert(ok, err)
    assert.equal(0, blocked)
  end)

  it("runs an op through run_op: op:run with libcurl, next and feed with a host", function()
    local curl = dynamo.client{ endpoint = ENDPOINT, region = "us-east-1", credentials = CREDS }
    local ran = 0
    local op = { run = function() ran = ran + 1 end }
    assert.equal(op, curl:run_op(op))
    assert.equal(1, ran)
    local client, fake = client_with({ ok_response('{"ok":true}') })
    local calls = { client.handle:prepare("ListTables", "{}"), client.handle:prepare("ListTables", "{}") }
    local got = {}
    local host_op = require("dynamo.host").list_op(calls, function(i, call) got[i] = call:result(true) end)
    host_op.run = function() error("op:run is the libcurl path") end
    assert.equal(host_op, client:run_op(host_op))
    assert.equal(2, #fake.requests)
    assert.is_true(got[1].ok and got[2].ok)
  end)
end)

describe("dynamo.host.run", function()
  local dynamo, host

  setup(function()
    dynamo = require("dynamo")
    host = require("dynamo.host")
  end)

  -- A client on scheduler `s` whose transport takes `delay(i)` ms (a timer:
  -- the thread yields) and answers {"i": i} for request body {"i": i}.
  -- `probe.max` is the most requests in flight at once.
  local function threaded_client(s, opts)
    opts = opts or {}
    local probe = { now = 0, max = 0, requests = {} }
    local o = {
      endpoint = ENDPOINT, region = "us-east-1", credentials = CREDS, seed = 3,
      transport = function(req)
        probe.now = probe.now + 1
        if probe.now > probe.max then probe.max = probe.now end
        probe.requests[#probe.requests + 1] = req
        local i = tonumber(req.body:match('"i":(%d+)'))
        s:sleep(opts.delay and opts.delay(i) or 2)
        probe.now = probe.now - 1
        if opts.answer then return opts.answer(i, req) end
        return 200, {}, req.body
      end,
      sleep = function(ms) s:sleep(ms) end,
    }
    if not opts.sequential then o.spawn, o.join = s:spawner(), s:joiner() end
    for k, v in pairs(opts.client or {}) do o[k] = v end
    return dynamo.client(o), probe
  end

  local function requests(n, op)
    local reqs = {}
    for i = 1, n do reqs[i] = { op or "GetItem", '{"i":' .. i .. "}" } end
    return reqs
  end

  for _, eager in ipairs{ false, true } do
    local mode = eager and "an eager spawn (ngx.thread.spawn)" or "a deferred spawn (cqueues)"
    it("keeps concurrency requests in flight and returns results in input order, with " .. mode, function()
      local s = coro_host.new{ eager = eager }
      -- answers come back out of order: later requests are quicker
      local client, probe = threaded_client(s, { client = { concurrency = 5 }, delay = function(i) return 1 + (40 - i) % 7 end })
      local out = s:run(function() return client:send_many(requests(40)) end)
      assert.equal(5, probe.max)
      assert.equal(40, #probe.requests)
      for i = 1, 40 do assert.equal(i, out[i].i) end
      assert.equal(0, probe.now)
    end)
  end

  it("sends one at a time without spawn and join", function()
    local s = coro_host.new()
    local client, probe = threaded_client(s, { sequential = true, client = { concurrency = 8 } })
    local out = s:run(function() return client:send_many(requests(6)) end)
    assert.equal(1, probe.max)
    for i = 1, 6 do assert.equal(i, out[i].i) end
  end)

  it("gives pages in input order through send_pages", function()
    local s = coro_host.new()
    local client, probe = threaded_client(s, { client = { concurrency = 3 }, answer = function(i)
      return 200, {}, string.format('{"Items":[{"v":{"N":"%d"}},{"v":{"N":"%d"}}],"Count":2}', i, i * 10)
    end })
    local pages = s:run(function() return client:send_pages(requests(7, "Query")) end)
    assert.equal(3, probe.max)
    for i = 1, 7 do
      assert.equal(i, pages[i]:next().v)
      assert.equal(i * 10, pages[i]:next().v)
      assert.is_nil(pages[i]:next())
      assert.equal(2, pages[i]:result().Count)
    end
  end)

  it("puts failures in their slots and counts retries done under the host's sleep", function()
    local s = coro_host.new()
    local seen = {}
    local client, probe = threaded_client(s, { client = { concurrency = 4, max_attempts = 2 }, answer = function(i, req)
      if i % 5 == 0 then
        local r = error_response(400, "ValidationException", "bad " .. i)
        return r[1], r[2], r[3]
      end
      if not seen[i] then seen[i] = true; return 500, {}, "{}" end
      return 200, {}, req.body
    end })
    local out = s:run(function() return client:send_many(requests(20)) end)
    for i = 1, 20 do
      if i % 5 == 0 then
        assert.is_true(dynamo.errors.is(out[i], "ValidationException"))
        assert.equal("bad " .. i, out[i].message)
      else
        assert.equal(i, out[i].i)
      end
    end
    assert.equal(4, probe.max)
    local st = client:stats()
    assert.equal(36, st.requests)   -- 16 twice, 4 once
    assert.equal(16, st.retries)
  end)

  -- An op over prepared calls with hooks, to drive host.run directly.
  local function hooked_op(client, n, hooks)
    local calls = {}
    for i = 1, n do calls[i] = client.handle:prepare("GetItem", '{"i":' .. i .. "}") end
    local done = {}
    local op = host.list_op(calls, function(i, call) done[i] = call:result(true) end)
    local inner_next, inner_feed = op.next, op.feed
    op.next = function(self) return (hooks.next or inner_next)(self, inner_next) end
    op.feed = function(self, call) return (hooks.feed or inner_feed)(self, call, inner_feed) end
    return op, done
  end

  it("raises a worker's error after the other workers finish, and aborts the op", function()
    local s = coro_host.new()
    local client, probe = threaded_client(s, { client = { concurrency = 4 }, delay = function(i) return i end })
    local fed, aborted = 0, nil
    local op = hooked_op(client, 30, {
      feed = function(self, call, inner)
        fed = fed + 1
        if fed == 3 then error({ marker = "op bug" }) end
        return inner(self, call)
      end,
    })
    op.abort = function(_, message) aborted = { message = message, in_flight = probe.now } end
    local ok, err = pcall(s.run, s, function() return host.run(op, client.host) end)
    assert.is_false(ok)
    assert.same({ marker = "op bug" }, err)          -- raised again as it was
    assert.is_not_nil(aborted)
    assert.equal(0, aborted.in_flight)               -- the others had ended
    assert.is_true(#probe.requests < 30)             -- nothing new started after the error
  end)

  it("sleeps through the host when the op says wait, one sleeper for workers that would wake later", function()
    local s = coro_host.new()
    local client, probe = threaded_client(s, { client = { concurrency = 4 } })
    local sleeps, woke = {}, 0
    local h = setmetatable({
      sleep = function(ms) sleeps[#sleeps + 1] = ms; s:sleep(ms); woke = woke + 1 end,
    }, { __index = client.host })
    local given = 0
    -- four calls at once, then nothing until a sleeper has waited 20 ms
    local op, done = hooked_op(client, 10, {
      next = function(self, inner)
        if given >= 4 and woke == 0 then return "wait", 20 end
        local kind, call = inner(self)
        if kind == "call" then given = given + 1 end
        return kind, call
      end,
    })
    local t0 = coro_host.now_ms()
    s:run(function() host.run(op, h) end)
    assert.is_true(coro_host.now_ms() - t0 >= 20)
    -- the four workers all heard "wait": the first slept, the others ended
    assert.same({ 20 }, sleeps)
    assert.equal(4, probe.max)
    for i = 1, 10 do assert.equal(i, done[i].i) end
  end)

  for _, eager in ipairs{ false, true } do
    it("joins every thread from the thread that spawned it and keeps few threads over many rounds of waits"
       .. (eager and " (eager spawn)" or ""), function()
      local s = coro_host.new{ eager = eager }
      local client, probe = threaded_client(s, { client = { concurrency = 4 } })
      local woke = 0
      local h = setmetatable({ sleep = function(ms) s:sleep(ms); woke = woke + 1 end }, { __index = client.host })
      -- rounds of four calls, each followed by a wait until a sleeper has woken
      local given = 0
      local op, done = hooked_op(client, 40, {
        next = function(self, inner)
          if given >= 4 * (woke + 1) then return "wait", 1 end
          local kind, call = inner(self)
          if kind == "call" then given = given + 1 end
          return kind, call
        end,
      })
      s:run(function() host.run(op, h) end)
      for i = 1, 40 do assert.equal(i, done[i].i) end
      assert.equal(4, probe.max)
      assert.is_true(woke >= 9)
      assert.equal(0, s.stats.unjoined)
      -- the shallowest worker stays on across each wait: no chain of threads
      -- waiting for their children grows round after round
      assert.is_true(s.stats.max_alive <= 5, "threads alive at once: " .. s.stats.max_alive)
      assert.is_true(s.stats.max_zombies <= 4, "ended threads not joined: " .. s.stats.max_zombies)
    end)
  end

  it("raises instead of hanging when the op is idle with nothing in flight", function()
    local s = coro_host.new()
    local client = threaded_client(s)
    local op = hooked_op(client, 2, { next = function() return "idle" end })
    local ok, err = pcall(s.run, s, function() host.run(op, client.host) end)
    assert.is_false(ok)
    assert.matches("no call in flight", err)
    local sequential = threaded_client(s, { sequential = true })
    op = hooked_op(sequential, 2, { next = function() return "idle" end })
    ok, err = pcall(host.run, op, sequential.host)
    assert.is_false(ok)
    assert.matches("no call in flight", err)
  end)

  it("runs an empty op to its end at once", function()
    local client = threaded_client(coro_host.new(), { sequential = true })
    assert.same({}, client:send_many({}))
  end)
end)
