-- The batch engine (core/include/dynamo/batch.h) and its account of what was
-- not done (lua/dynamo/batch.lua), proved against a real server behind the
-- fault proxy (spec/support/fault_proxy.js): nothing lost, duplicated or
-- changed when retries suffice; when they do not, `err.unprocessed` is
-- exactly what is missing (up to `err.uncertain`, whose answers were lost),
-- `err.cause` says why. What was really written is always read straight from
-- the server, past the proxy.
--
-- BATCH_FAULTS_N changes the size of the big run (default 20000);
-- BATCH_FAULTS_VERBOSE=1 prints each test's phases and seconds on stderr.
local helpers = require("spec.helpers")

describe("batch engine under faults", function()
  local dynamo, core, errors
  local direct, proxy
  local tables = {} -- {client, name} to delete at the end
  local N = tonumber(os.getenv("BATCH_FAULTS_N") or "") or 20000
  local verbose = os.getenv("BATCH_FAULTS_VERBOSE") == "1"
  local fmt = string.format

  local function note(...)
    if verbose then io.stderr:write(fmt(...), "\n") end
  end

  local Table -- the manager class: pk/sk, keys held by the records

  local function new_table(client, name)
    return Table{ client = client, table = name }
  end

  -- a fresh table on `client` (the direct one by default); returns its name
  local function fresh_table(prefix, client)
    client = client or direct
    local name = helpers.create_table(client, { prefix = prefix })
    tables[#tables + 1] = { client = client, name = name }
    return name
  end

  local function proxied_client(opts)
    local o = { endpoint = proxy.endpoint, concurrency = 8, seed = 7 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return helpers.client(o)
  end

  ---------------------------------------------------------------------------
  -- records of every value type, derived from i alone

  local WORDS = { "naïve", "Grüße", "日本語", "emoji 🎉", "עברית", "ελληνικά", "plain", "" }

  local function key_of(i) return "p" .. (i % 211), fmt("r%07d", i) end
  local function index_of(sk) return tonumber(tostring(sk):match("^r(%d+)$")) end

  local function record(i)
    local set, binary, number, NULL = dynamo.set, dynamo.binary, dynamo.number, dynamo.NULL
    local pk, sk = key_of(i)
    local r = {
      pk = pk, sk = sk,
      s = WORDS[i % #WORDS + 1] .. " ✓ " .. i,
      empty = "",
      int = i * 7919 - 500000,
      big_int = math.maxinteger - i,
      f = i / 7,
      tiny = (i + 1) * 1e-9,
      n38 = number(fmt("12345678901234567890123456789%09d", i)),               -- 38 digits
      d38 = number(fmt("-1234567890123456789.012345678901234%04d", i % 10000)), -- 38 digits, a fraction
      b = binary(string.char(i % 256, 0, 255, (i * 7) % 256) .. i),
      flag = i % 2 == 0,
      l = { i, "x" .. i, { nested = i % 3 == 0 }, NULL, { 1.5, { "deep" } } },
      m = { a = { b = { c = i } }, name = "n" .. i, empty = {}, list = dynamo.list{} },
      ss = set{ "a" .. (i % 5), "b" .. (i % 7), "ü" },
      ns = set{ i, i + 0.5, -1, number("0.000000000000000000000000000000001") },
      bs = set{ binary("\0" .. i), binary("\255") },
      pad = string.rep("z", i % 200),
    }
    if i % 10 == 0 then r.note = NULL end
    return r
  end

  local function records(from, to)
    local out = {}
    for i = from, to do out[#out + 1] = record(i) end
    return out
  end

  -- The canonical text of a record: encode_item sorts map members; set
  -- elements, whose order DynamoDB does not keep, are sorted here; the stamps
  -- the manager adds are left out.
  local function canon_value(v)
    if type(v) ~= "table" then return v end
    if dynamo.types.is_set(v) then
      local elems = {}
      for e in v:values() do elems[#elems + 1] = { core.encode_item{ e = e }, e } end
      table.sort(elems, function(a, b) return a[1] < b[1] end)
      local out = {}
      for k, e in ipairs(elems) do out[k] = e[2] end
      return dynamo.set(out)
    end
    local out = {}
    for k, x in pairs(v) do out[k] = canon_value(x) end
    return setmetatable(out, getmetatable(v)) -- a list or map tag stays
  end
  local function canon(r)
    local c = {}
    for k, v in pairs(r) do
      if k ~= "dt_created" and k ~= "dt_modified" then c[k] = canon_value(v) end
    end
    return core.encode_item(c)
  end

  -- index -> true for every item of the table, read directly; raises on a duplicate
  local function present_set(name)
    local seen, n = {}, 0
    for r in new_table(direct, name):scan{ consistent_read = true, segments = 4 } do
      local i = assert(index_of(r.sk), "an item of no record: " .. tostring(r.sk))
      assert(not seen[i], "the scan gave " .. tostring(r.sk) .. " twice")
      seen[i], n = true, n + 1
    end
    return seen, n
  end

  -- Checks the account of a failed batch over `input` (an array of records):
  -- every listed record is an input record as given, once; listed means
  -- "not done", so `want_done(i)` (the record's effect is there) must be
  -- false for a listed record and true for an unlisted one, except that a
  -- record in err.uncertain may be either. Returns listed, uncertain counts.
  local function check_account(err, input, want_done)
    assert.is_true(errors.is(err), "not a DynamoTableError: " .. tostring(err))
    assert.is_table(err.unprocessed)
    assert.is_table(err.uncertain)
    local pos = {}
    for k, r in ipairs(input) do pos[r] = k end
    local listed, unsure = {}, {}
    for _, r in ipairs(err.unprocessed) do
      local k = pos[r]
      assert.is_truthy(k, "err.unprocessed holds a record that is not an input record as given")
      assert.is_nil(listed[k], "err.unprocessed lists " .. tostring(r.sk) .. " twice")
      listed[k] = true
    end
    for _, r in ipairs(err.uncertain) do
      local k = pos[r]
      assert.is_truthy(k, "err.uncertain holds a record that is not an input record as given")
      assert.is_true(listed[k] == true, "err.uncertain holds " .. tostring(r.sk) .. ", which is not in err.unprocessed")
      assert.is_nil(unsure[k], "err.uncertain lists " .. tostring(r.sk) .. " twice")
      unsure[k] = true
    end
    local n_listed, n_unsure, wrong = 0, 0, {}
    for k, r in ipairs(input) do
      local done = want_done(index_of(r.sk))
      if listed[k] then n_listed = n_listed + 1 end
      if unsure[k] then
        n_unsure = n_unsure + 1
      elseif listed[k] and done then
        wrong[#wrong + 1] = r.sk .. " listed (and certain) but done"
      elseif not listed[k] and not done then
        wrong[#wrong + 1] = r.sk .. " not listed but not done"
      end
    end
    assert.is_true(#wrong == 0, fmt("%d records misaccounted, e.g. %s", #wrong, tostring(wrong[1])))
    return n_listed, n_unsure
  end

  local KNOWN_CAUSES = {
    InternalFailure = true, ServiceUnavailable = true, ProvisionedThroughputExceededException = true,
    ThrottlingException = true, Transport = true, Timeout = true, Checksum = true, InvalidResponse = true,
    Unprocessed = true,
  }
  local function check_cause(err, code)
    local cause = err.cause
    assert.is_true(errors.is(cause), "err.cause is not a DynamoTableError: " .. tostring(cause))
    assert.is_string(cause.code)
    if code then
      assert.equal(code, cause.code)
    else
      assert.is_true(KNOWN_CAUSES[cause.code] == true, "unexpected cause code " .. tostring(cause.code))
    end
    assert.is_true(#tostring(cause.message) > 0)
    -- the error's message names the cause: its code and its message
    assert.is_truthy(err.message:find(cause.code, 1, true), err.message)
    assert.is_truthy(err.message:find(tostring(cause.message), 1, true), err.message)
  end

  local function timed(fn)
    local t0 = core.monotonic_ms()
    local a, b = fn()
    return (core.monotonic_ms() - t0) / 1000, a, b
  end

  -- a local server of its own (not the shared one): { pid, endpoint }
  local function start_server()
    local out = os.tmpname()
    local cmd = fmt("%snode %s --port 0 --watch-pid %d > %s 2>&1 & echo $!", helpers.plain_env,
      helpers.shell_quote(helpers.root .. "/scripts/server/start.js"), core.getpid(), helpers.shell_quote(out))
    local p = assert(io.popen(cmd))
    local pid = tonumber(p:read("l"))
    p:close()
    local port, text
    for _ = 1, 200 do
      text = helpers.read_file(out) or ""
      port = text:match("listening (%d+)")
      if port then break end
      os.execute("sleep 0.05")
    end
    os.remove(out)
    if not port then
      if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
      error("could not start a second dynalite: " .. tostring(text))
    end
    return { pid = pid, endpoint = "http://127.0.0.1:" .. port }
  end

  -- a loopback port nobody listens on (bound, then closed, by node)
  local function dead_port()
    local p = assert(io.popen(helpers.plain_env .. "node -e \"const s=require('net').createServer();"
      .. "s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})\""))
    local port = tonumber(p:read("l"))
    p:close()
    return assert(port, "no free port")
  end

  setup(function()
    dynamo = require("dynamo")
    core = dynamo.core
    errors = dynamo.errors
    Table = dynamo.DynamoTable:extend{ partition_key_name = "pk", sort_key_name = "sk" }
    direct = helpers.client()
    proxy = helpers.fault_proxy{ rate = 0 }
  end)

  teardown(function()
    for _, t in ipairs(tables) do pcall(t.client.call, t.client, "DeleteTable", { TableName = t.name }) end
    if proxy then proxy.stop() end
  end)

  before_each(function()
    proxy.configure{ rate = 0, delay_ms = 0, faults = "all", seed = 1 }
  end)

  it(fmt("writes, reads back and deletes %d records through 20%% faults of every kind: nothing lost, "
    .. "duplicated or changed", N), function()
    local name = fresh_table("bf_big")
    local client = proxied_client{ max_attempts = 10 }
    local t = new_table(client, name)
    local input = records(0, N - 1)
    proxy.configure{ rate = 0.2, faults = "all", seed = 11 }
    proxy.reset()

    local secs = timed(function() t:batch_upsert_records(input, { read_existing = false }) end)
    note("  big: upsert %.2f s", secs)

    local keys = {}
    for i = 0, N - 1 do
      local pk, sk = key_of(i)
      keys[i + 1] = { pk = pk, sk = sk }
    end
    local n, changed = 0, {}
    secs = timed(function()
      for r, found in t:batch_get_records(keys) do
        local i = n
        n = n + 1
        assert.is_true(found, "not found after the upsert: " .. tostring(r.sk))
        assert.equal(i, index_of(r.sk)) -- input order
        assert.is_string(r.dt_created)
        assert.is_string(r.dt_modified)
        if canon(r) ~= canon(input[i + 1]) then changed[#changed + 1] = r.sk end
      end
    end)
    note("  big: get+compare %.2f s", secs)
    assert.equal(N, n)
    assert.is_true(#changed == 0, #changed .. " records read back changed, e.g. " .. tostring(changed[1]))

    local half = {}
    for i = 0, N - 1, 2 do half[#half + 1] = keys[i + 1] end
    secs = timed(function() t:batch_delete_records(half) end)
    note("  big: delete half %.2f s", secs)

    local s = proxy.stats()
    proxy.configure{ rate = 0 }
    -- the proxy really faulted every kind along the way
    for _, kind in ipairs{ "500", "503", "throttle", "drop_before", "drop_after", "half_body", "bad_crc", "partial" } do
      assert.is_true(s.by_kind[kind] > 0, "no " .. kind .. " fault was injected")
    end
    note("  big: %d proxy requests, %d faulted", s.requests, s.faulted)

    local seen, count
    secs = timed(function()
      seen, count = {}, 0
      for r in new_table(direct, name):scan{ consistent_read = true, segments = 4 } do
        count = count + 1
        local i = index_of(r.sk)
        assert.is_truthy(i, "an item of no record: " .. tostring(r.sk))
        assert.is_nil(seen[i], "duplicate " .. tostring(r.sk))
        seen[i] = true
        assert.equal(1, i % 2, "a deleted record is still there: " .. tostring(r.sk))
        if canon(r) ~= canon(input[i + 1]) then changed[#changed + 1] = r.sk end
      end
    end)
    note("  big: direct scan %.2f s", secs)
    assert.is_true(#changed == 0, #changed .. " records changed in the table, e.g. " .. tostring(changed[1]))
    for i = 1, N - 1, 2 do assert.is_true(seen[i] == true, "lost: " .. fmt("r%07d", i)) end
    assert.equal(N // 2, count)
    client:close()
  end)

  describe("when retries run out (max_attempts = 2, 60% faults)", function()
    local M = 2000

    it("batch_upsert_records lists exactly the records absent afterwards, up to err.uncertain", function()
      local name = fresh_table("bf_exhaust_put")
      local client = proxied_client{ max_attempts = 2 }
      local input = records(0, M - 1)
      proxy.configure{ rate = 0.6, faults = "all", seed = 21 }
      local secs, ok, err = timed(function()
        return pcall(new_table(client, name).batch_upsert_records, new_table(client, name), input,
          { read_existing = false })
      end)
      proxy.configure{ rate = 0 }
      assert.is_false(ok, "the batch finished in spite of 60% faults and 2 attempts")
      assert.equal("UnprocessedItems", err.code)
      check_cause(err)
      local present = present_set(name)
      local listed, unsure = check_account(err, input, function(i) return present[i] == true end)
      note("  exhaust put: %.2f s, cause %s, %d listed, %d uncertain", secs, tostring(err.cause), listed, unsure)
      assert.is_truthy(err.message:find(fmt("%d of %d records not written", listed, M), 1, true), err.message)
      client:close()
    end)

    it("batch_get_records yields what it read, then raises listing the rest: together the input, once each",
      function()
        local name = fresh_table("bf_exhaust_get")
        -- the even records exist, the odd ones do not
        local input = records(0, M - 1)
        local evens = {}
        for k = 1, M, 2 do evens[#evens + 1] = input[k] end
        new_table(direct, name):batch_upsert_records(evens, { read_existing = false })
        local client = proxied_client{ max_attempts = 2 }
        local t = new_table(client, name)
        proxy.configure{ rate = 0.6, faults = "all", seed = 22 }
        local yielded, n_yielded, bad = {}, 0, {}
        local secs, ok, err = timed(function()
          return pcall(function()
            for r, found in t:batch_get_records(input) do
              local i = index_of(r.sk)
              assert(i and i >= 0 and i < M, "a record of no input: " .. tostring(r.sk))
              if yielded[i] then bad[#bad + 1] = "yielded twice: " .. r.sk end
              yielded[i] = true
              n_yielded = n_yielded + 1
              if found ~= (i % 2 == 0) then bad[#bad + 1] = "found is wrong for " .. r.sk end
              if found and canon(r) ~= canon(input[i + 1]) then bad[#bad + 1] = "changed: " .. r.sk end
            end
          end)
        end)
        proxy.configure{ rate = 0 }
        assert.is_false(ok, "the batch finished in spite of 60% faults and 2 attempts")
        assert.is_true(#bad == 0, bad[1])
        assert.equal("UnprocessedKeys", err.code)
        check_cause(err)
        assert.same({}, err.uncertain) -- a read changes nothing
        -- listed = not yielded: the yielded records and the listed ones are the input, each once
        local listed = check_account(err, input, function(i) return yielded[i] == true end)
        assert.equal(M, listed + n_yielded)
        note("  exhaust get: %.2f s, cause %s, %d yielded, %d listed", secs, tostring(err.cause), n_yielded, listed)
        client:close()
      end)

    it("batch_delete_records lists exactly the records still present afterwards, up to err.uncertain", function()
      local name = fresh_table("bf_exhaust_del")
      local input = records(0, M - 1)
      new_table(direct, name):batch_upsert_records(input, { read_existing = false })
      local client = proxied_client{ max_attempts = 2 }
      local t = new_table(client, name)
      proxy.configure{ rate = 0.6, faults = "all", seed = 23 }
      local secs, ok, err = timed(function() return pcall(t.batch_delete_records, t, input) end)
      proxy.configure{ rate = 0 }
      assert.is_false(ok, "the batch finished in spite of 60% faults and 2 attempts")
      assert.equal("UnprocessedItems", err.code)
      check_cause(err)
      local present = present_set(name)
      -- a delete is done when its item is gone
      local listed, unsure = check_account(err, input, function(i) return not present[i] end)
      note("  exhaust delete: %.2f s, cause %s, %d listed, %d uncertain", secs, tostring(err.cause), listed, unsure)
      assert.is_truthy(err.message:find(fmt("%d of %d records not deleted", listed, M), 1, true), err.message)
      client:close()
    end)
  end)

  it("a dead server: Transport as the cause, quickly, every record listed", function()
    local endpoint = "http://127.0.0.1:" .. dead_port()
    local client = helpers.client{ endpoint = endpoint, concurrency = 8, seed = 7 }
    local t = new_table(client, "nobody_listens")
    local input = records(0, 499)
    local secs, ok, err = timed(function()
      return pcall(t.batch_upsert_records, t, input, { read_existing = false })
    end)
    note("  dead server: %.2f s, %s", secs, tostring(err))
    assert.is_false(ok)
    assert.equal("UnprocessedItems", err.code)
    check_cause(err, "Transport")
    assert.is_true(err.cause.retryable)
    assert.is_truthy(err.message:find("Transport", 1, true), err.message)
    assert.is_truthy(err.message:find("500 of 500 records not written", 1, true), err.message)
    check_account(err, input, function() return false end)
    assert.equal(500, #err.unprocessed)
    assert.is_true(secs < 3, fmt("took %.2f s", secs))
    client:close()
  end)

  it("a stalled server: Timeout as the cause within max_attempts x timeout_ms (+50%, +1 s), every record listed",
    function()
      local srv = start_server()
      local stopped = false
      finally(function()
        if srv.pid then
          if stopped then os.execute("kill -CONT " .. srv.pid .. " 2>/dev/null") end
          os.execute("kill " .. srv.pid .. " 2>/dev/null")
        end
      end)
      local admin = helpers.client{ endpoint = srv.endpoint }
      local name = helpers.create_table(admin, { prefix = "bf_stalled" })
      admin:close()
      local TIMEOUT, ATTEMPTS = 1000, 3
      local client = helpers.client{ endpoint = srv.endpoint, concurrency = 8, seed = 7, timeout_ms = TIMEOUT,
                                     max_attempts = ATTEMPTS }
      local t = new_table(client, name)
      local input = records(0, 1999)
      assert.is_true(os.execute("kill -STOP " .. srv.pid) == true)
      stopped = true
      local secs, ok, err = timed(function()
        return pcall(t.batch_upsert_records, t, input, { read_existing = false })
      end)
      client:close()
      assert.is_true(os.execute("kill -CONT " .. srv.pid) == true)
      stopped = false
      note("  stalled server: %.2f s, %s", secs, tostring(err))
      assert.is_false(ok)
      assert.equal("UnprocessedItems", err.code)
      check_cause(err, "Timeout")
      local bound = 1.5 * ATTEMPTS * TIMEOUT / 1000 + 1
      assert.is_true(secs < bound, fmt("took %.2f s, bound %.2f s", secs, bound))
      assert.is_true(secs >= ATTEMPTS * TIMEOUT / 1000 * 0.9, fmt("gave up after %.2f s", secs))
      -- the server resumed: it may have taken the first requests' writes; nothing else
      local resumed = helpers.client{ endpoint = srv.endpoint }
      local present = {}
      for r in new_table(resumed, name):scan{ consistent_read = true } do present[index_of(r.sk)] = true end
      resumed:close()
      local listed, unsure = check_account(err, input, function(i) return present[i] == true end)
      assert.equal(#input, listed)
      -- only what was in flight can be uncertain: at most concurrency x 25
      assert.is_true(unsure <= 8 * 25, unsure .. " uncertain")
      note("  stalled server: %d listed, %d uncertain", listed, unsure)
    end)

  it("a ValidationException about one record stops that record only", function()
    local name = fresh_table("bf_validation")
    local client = proxied_client{ max_attempts = 4 }
    local t = new_table(client, name)
    local input = records(0, 499)
    -- the client accepts it; the server refuses a sort key over 1024 bytes
    input[250].sk = "r" .. string.rep("9", 1100)
    local ok, err = pcall(t.batch_upsert_records, t, input, { read_existing = false })
    assert.is_false(ok)
    assert.equal("UnprocessedItems", err.code)
    check_cause(err, "ValidationException")
    assert.equal(1, #err.unprocessed)
    assert.is_true(rawequal(input[250], err.unprocessed[1]))
    assert.same({}, err.uncertain)
    assert.is_truthy(err.message:find("1 of 500 records not written", 1, true), err.message)
    local present, n = present_set(name)
    assert.equal(499, n)
    for k, r in ipairs(input) do
      if k ~= 250 then assert.is_true(present[index_of(r.sk)] == true, "not written: " .. r.sk) end
    end
    client:close()
  end)
end)
