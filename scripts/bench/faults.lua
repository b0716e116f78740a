-- The table manager's batch engine under injected faults (see scripts/bench/faults,
-- which starts the local server and the fault proxy and runs this).
--
--   lua5.4 scripts/bench/faults.lua DIRECT_ENDPOINT PROXY_ENDPOINT [N] [N_EXHAUST]
--
-- Part 1, N records (default 100000) of varied values through the proxy at a
-- 20% fault rate (FAULT_RATE), every kind, with a client of max_attempts = 10
-- (FAULT_MAX_ATTEMPTS; attempts per record, failed requests and unprocessed
-- answers alike): batch_upsert_records (read_existing = false),
-- batch_get_records compared value for value with what was written,
-- batch_delete_records of the even half, then a scan straight from the
-- server (no proxy) that must hold exactly the odd half, unchanged, once each.
-- Part 2, N_EXHAUST records (default 5000, given as an iterator) with
-- max_attempts = 2 (FAULT_MAX_ATTEMPTS_EXHAUST) and a 60% fault rate
-- (FAULT_RATE_EXHAUST), until an entry runs out of attempts and the batch
-- stops: what the error lists in err.unprocessed against what is really
-- absent afterwards. PASS when the two are the same set, allowing only the
-- records in err.uncertain (answers lost) to be present though listed, and
-- every listed record is one the batch took from the input, once.
-- Exit status 0 when both parts pass.
local root = arg[0]:match("^(.*)/scripts/bench/[^/]+$") or "."
local helpers = dofile(root .. "/spec/helpers.lua")
local dynamo = require("dynamo")
local core = dynamo.core

local direct_endpoint = assert(arg[1], "usage: faults.lua DIRECT_ENDPOINT PROXY_ENDPOINT [N] [N_EXHAUST]")
local proxy_endpoint = assert(arg[2], "usage: faults.lua DIRECT_ENDPOINT PROXY_ENDPOINT [N] [N_EXHAUST]")
local N = tonumber(arg[3]) or 100000
local N2 = tonumber(arg[4]) or 5000
local RATE = tonumber(os.getenv("FAULT_RATE") or "") or 0.2
local SEED = tonumber(os.getenv("FAULT_SEED") or "") or 1

local fmt = string.format
local proxy = helpers.attach_fault_proxy(proxy_endpoint)
local KINDS = { "500", "503", "throttle", "drop_before", "drop_after", "half_body", "bad_crc", "partial" }

local function client_for(endpoint, opts)
  local o = { endpoint = endpoint, region = "us-east-1",
              credentials = { access_key_id = "bench", secret_access_key = "bench" } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return dynamo.client(o)
end

local BenchTable = dynamo.DynamoTable:extend{ partition_key_name = "pk", sort_key_name = "sk" }
local function new_table(client, name, opts)
  local o = { client = client, table = name, wait_delay_ms = 20 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return BenchTable(o)
end

---------------------------------------------------------------------------
-- the records: every value type, sizes that vary, derived from i alone

local set, binary, number, NULL = dynamo.set, dynamo.binary, dynamo.number, dynamo.NULL
local WORDS = { "naïve", "Grüße", "日本語", "emoji 🎉", "עברית", "ελληνικά", "plain", "" }

local function key_of(i) return "p" .. (i % 997), fmt("r%08d", i) end

local function record(i)
  local pk, sk = key_of(i)
  local r = {
    pk = pk, sk = sk,
    s = WORDS[i % #WORDS + 1] .. " ✓ " .. i,
    empty = "",
    int = i * 7919 - 500000,
    big_int = math.maxinteger - i,
    f = i / 7,
    tiny = (i + 1) * 1e-9,
    big = number(fmt("1234567890123456789012345678%09d.5", i)),
    neg_big = number(fmt("-9%d.000000000000000000000001", i)),
    b = binary(string.char(i % 256, 0, 255, (i * 7) % 256) .. fmt("%d", i)),
    flag = i % 2 == 0,
    l = { i, "x" .. i, { nested = i % 3 == 0 }, NULL, { 1.5, { "deep" } } },
    m = { a = { b = { c = i } }, name = "n" .. i, empty = {}, list = dynamo.list{} },
    ss = set{ "a" .. (i % 5), "b" .. (i % 7), "ü" },
    ns = set{ i, i + 0.5, -1, number("0.000000000000000000000000000000001") },
    bs = set{ binary("\0" .. i), binary("\255") },
    pad = string.rep("z", i % 300),
  }
  if i % 10 == 0 then r.note = NULL end
  return r
end

-- A canonical text of a record: core.encode_item sorts map keys; set
-- elements, whose order DynamoDB does not keep, are sorted here first. The
-- dt_created / dt_modified stamps the manager adds are left out.
local is_set = dynamo.types.is_set
local function canon_value(v)
  if type(v) ~= "table" then return v end
  if is_set(v) then
    local elems = {}
    for e in v:values() do elems[#elems + 1] = { core.encode_item{ e = e }, e } end
    table.sort(elems, function(a, b) return a[1] < b[1] end)
    local out = {}
    for k, e in ipairs(elems) do out[k] = e[2] end
    return set(out)
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

local function range_iter(from, to, step, fn)
  local i = from - step
  return function()
    i = i + step
    if i <= to then return fn(i) end
  end
end

local function index_of(sk) return tonumber(sk:match("^r(%d+)$")) end

---------------------------------------------------------------------------
-- reporting

local function per_kind(s0, s1)
  local out = { requests = s1.requests - s0.requests, faulted = s1.faulted - s0.faulted, by_kind = {},
                partial_removed = s1.partial_removed - s0.partial_removed,
                upstream_errors = s1.upstream_errors - s0.upstream_errors }
  for _, k in ipairs(KINDS) do out.by_kind[k] = s1.by_kind[k] - s0.by_kind[k] end
  return out
end

local rows = {}
local function phase(name, client, fn)
  collectgarbage()
  local s0, c0 = proxy.stats(), client and client:stats()
  local t0 = core.monotonic_ms()
  local ok, detail = pcall(fn)
  local secs = (core.monotonic_ms() - t0) / 1000
  local d = per_kind(s0, proxy.stats())
  local c1 = client and client:stats()
  rows[#rows + 1] = { name = name, secs = secs, d = d, ok = ok, detail = detail,
                      client_requests = c1 and (c1.requests - c0.requests) or 0,
                      connections = c1 and (c1.connections - c0.connections) or 0 }
  io.stderr:write(fmt("  %-14s %7.2f s %s\n", name, secs, ok and tostring(detail or "") or ("ERROR " .. tostring(detail))))
  if not ok then error(detail, 0) end
  return detail
end

local function print_rows()
  -- the batch engine retries an entry in a new request (its calls try once), so
  -- client:stats() counts batch retries as requests, not as retries
  local head = fmt("%-14s %8s %9s %8s %8s %7s", "phase", "seconds", "client rq", "conns", "proxy rq", "faults")
  for _, k in ipairs(KINDS) do head = head .. fmt(" %11s", k) end
  print(head)
  for _, r in ipairs(rows) do
    local line = fmt("%-14s %8.2f %9d %8d %8d %7d", r.name, r.secs, r.client_requests, r.connections, r.d.requests,
      r.d.faulted)
    for _, k in ipairs(KINDS) do line = line .. fmt(" %11d", r.d.by_kind[k]) end
    print(line)
  end
end

---------------------------------------------------------------------------
-- part 1

local direct = client_for(direct_endpoint)
local ATTEMPTS = tonumber(os.getenv("FAULT_MAX_ATTEMPTS") or "") or 10
local faulty = client_for(proxy_endpoint, { max_attempts = ATTEMPTS }) -- concurrency 8 (the default)
local name1 = "bench_faults_" .. core.getpid()
local admin = new_table(direct, name1)
admin:create_table()
admin:wait_until_exists()
local t1 = new_table(faulty, name1)

proxy.configure{ rate = RATE, faults = "all", seed = SEED, delay_ms = 0 }
proxy.reset()
print(fmt("part 1: %d records through the fault proxy, rate %.2f, every fault kind, seed %d, max_attempts %d",
  N, RATE, SEED, ATTEMPTS))
io.stdout:flush()

local problems = {}
local function problem(text)
  if #problems < 20 then problems[#problems + 1] = text end
  problems.count = (problems.count or 0) + 1
end

phase("upsert", faulty, function()
  t1:batch_upsert_records(range_iter(0, N - 1, 1, record), { read_existing = false })
  return N .. " records"
end)

phase("get+compare", faulty, function()
  local n, found_n = 0, 0
  for r, found in t1:batch_get_records(range_iter(0, N - 1, 1, function(i)
    local pk, sk = key_of(i); return { pk = pk, sk = sk } end)) do
    local i = n
    n = n + 1
    if not found then
      problem("missing after upsert: " .. r.sk)
    else
      found_n = found_n + 1
      if index_of(r.sk) ~= i then problem("out of order: " .. r.sk .. " at " .. i) end
      if type(r.dt_created) ~= "string" or type(r.dt_modified) ~= "string" then problem("no stamps: " .. r.sk) end
      if canon(r) ~= canon(record(i)) then problem("changed: " .. r.sk) end
    end
  end
  if n ~= N then problem(fmt("batch_get_records gave %d records for %d", n, N)) end
  return fmt("%d found of %d", found_n, N)
end)

phase("delete half", faulty, function()
  t1:batch_delete_records(range_iter(0, N - 1, 2, function(i)
    local pk, sk = key_of(i); return { pk = pk, sk = sk } end))
  return fmt("%d deleted", (N + 1) // 2)
end)

proxy.configure{ rate = 0 }
phase("scan (direct)", direct, function()
  local seen, count = {}, 0
  for r in admin:scan{ consistent_read = true, segments = 4 } do
    count = count + 1
    local i = index_of(r.sk)
    if not i or i < 0 or i >= N then
      problem("unknown item " .. tostring(r.sk))
    elseif seen[i] then
      problem("duplicate " .. r.sk)
    else
      seen[i] = true
      if i % 2 == 0 then problem("deleted item still there: " .. r.sk) end
      if canon(r) ~= canon(record(i)) then problem("changed: " .. r.sk) end
    end
  end
  local want = N // 2
  for i = 1, N - 1, 2 do if not seen[i] then problem("lost: " .. fmt("r%08d", i)) end end
  if count ~= want then problem(fmt("scan found %d items, want %d", count, want)) end
  return fmt("%d items", count)
end)

admin:delete_table()
print_rows()
local total = proxy.stats()
print(fmt("proxy totals: %d requests, %d faulted (%.1f%%), %d partial entries withheld, %d partial picks passed, "
  .. "%d upstream errors", total.requests, total.faulted, 100 * total.faulted / math.max(total.requests, 1),
  total.partial_removed, total.partial_passed, total.upstream_errors))
local pass1 = (problems.count or 0) == 0
for _, p in ipairs(problems) do print("  problem: " .. p) end
if problems.count and problems.count > #problems then print(fmt("  ... %d problems in all", problems.count)) end
print("part 1: " .. (pass1 and "PASS" or "FAIL"))
io.stdout:flush()

---------------------------------------------------------------------------
-- part 2: retries run out

local RATE2 = tonumber(os.getenv("FAULT_RATE_EXHAUST") or "") or 0.6
local ATTEMPTS2 = tonumber(os.getenv("FAULT_MAX_ATTEMPTS_EXHAUST") or "") or 2
local name2 = "bench_faults_exhaust_" .. core.getpid()
local admin2 = new_table(direct, name2)
admin2:create_table()
admin2:wait_until_exists()
local weak = client_for(proxy_endpoint, { max_attempts = ATTEMPTS2 })
local t2 = new_table(weak, name2)
rows = {}
proxy.configure{ rate = RATE2, faults = "all", seed = SEED + 1 }
print()
print(fmt("part 2: %d records (an iterator), max_attempts %d, rate %.2f, every fault kind, seed %d",
  N2, ATTEMPTS2, RATE2, SEED + 1))
local err
-- the records the batch took from the iterator, by index, as given
local given, taken = {}, 0
phase("upsert", weak, function()
  local ok, e = pcall(t2.batch_upsert_records, t2, range_iter(0, N2 - 1, 1, function(i)
    local r = record(i)
    given[r] = i
    taken = taken + 1
    return r
  end), { read_existing = false })
  err = not ok and e or nil
  return ok and "no error" or "raised"
end)
proxy.configure{ rate = 0 }
print_rows()

local present, present_n = {}, 0
for r in admin2:scan{ consistent_read = true } do
  local i = index_of(r.sk)
  if i and not present[i] then present[i] = true; present_n = present_n + 1 end
end
local pass2
if err == nil then
  pass2 = present_n == N2
  print(fmt("no error: %d present of %d", present_n, N2))
elseif not dynamo.errors.is(err) or type(err.unprocessed) ~= "table" or type(err.uncertain) ~= "table" then
  pass2 = false
  print("error without an account: " .. tostring(err))
else
  local listed, unsure = {}, {}
  local listed_n, unsure_n, foreign, twice = 0, 0, 0, 0
  for _, r in ipairs(err.unprocessed) do
    local i = given[r]
    if i == nil then foreign = foreign + 1
    elseif listed[i] then twice = twice + 1
    else listed[i] = true; listed_n = listed_n + 1 end
  end
  for _, r in ipairs(err.uncertain) do
    local i = given[r]
    if i == nil or not listed[i] then foreign = foreign + 1
    elseif not unsure[i] then unsure[i] = true; unsure_n = unsure_n + 1 end
  end
  local absent_n, listed_absent, listed_present, unsure_present, certain_present, absent_unlisted = 0, 0, 0, 0, 0, 0
  local unread_present = 0
  for i = 0, N2 - 1 do
    if i >= taken then
      -- never taken from the iterator: the caller still holds these
      if present[i] then unread_present = unread_present + 1 end
    else
      if not present[i] then absent_n = absent_n + 1 end
      if listed[i] then
        if present[i] then
          listed_present = listed_present + 1
          if unsure[i] then unsure_present = unsure_present + 1 else certain_present = certain_present + 1 end
        else
          listed_absent = listed_absent + 1
        end
      elseif not present[i] then
        absent_unlisted = absent_unlisted + 1
      end
    end
  end
  local d = rows[1].d.by_kind
  print("error: " .. tostring(err))
  print(fmt("  code %s; cause: %s (code %s, retryable %s)", tostring(err.code), tostring(err.cause),
    tostring(err.cause and err.cause.code), tostring(err.cause and err.cause.retryable)))
  print(fmt("  records taken from the input:      %d of %d (the iterator is not read past the failed window)",
    taken, N2))
  print(fmt("  listed in err.unprocessed:         %d", listed_n))
  print(fmt("  absent afterwards (of those taken): %d", absent_n))
  print(fmt("  listed in err.uncertain:           %d  (answers lost: drop_after %d, half_body %d, bad_crc %d, "
    .. "500 %d, 503 %d, drop_before %d faults)", unsure_n, d.drop_after, d.half_body, d.bad_crc, d["500"], d["503"],
    d.drop_before))
  print(fmt("  listed and absent:                 %d", listed_absent))
  print(fmt("  listed and present, uncertain:     %d  (allowed: their write may have happened)", unsure_present))
  print(fmt("  listed and present, certain:       %d", certain_present))
  print(fmt("  absent but not listed:             %d", absent_unlisted))
  print(fmt("  not taken but present:             %d", unread_present))
  print(fmt("  listed twice / not an input record: %d / %d", twice, foreign))
  pass2 = certain_present == 0 and absent_unlisted == 0 and unread_present == 0 and twice == 0 and foreign == 0
    and listed_n == listed_absent + listed_present and dynamo.errors.is(err.cause)
end
print("part 2: " .. (pass2 and "PASS" or "FAIL") .. " (listed == absent, allowing uncertain)")
admin2:delete_table()
os.exit((pass1 and pass2) and 0 or 1)
