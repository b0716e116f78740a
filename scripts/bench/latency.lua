-- Batch writes and reads behind a fixed network latency (see scripts/bench/latency,
-- which starts the local server and the fault proxy with --delay-ms and runs this).
--
--   lua5.4 scripts/bench/latency.lua DIRECT_ENDPOINT PROXY_ENDPOINT [N] [DELAY_MS]
--
-- For client concurrency 1, 8 and 32 (BENCH_CONCURRENCY="1 8 32"), on a fresh
-- table each: batch_upsert_records (read_existing = false) of N records
-- (default 20000), then batch_get_records of their keys, through the proxy.
-- Per phase: wall seconds, HTTP requests (client:stats()), the server's CPU
-- seconds (/proc/SERVER_PID/stat when SERVER_PID is set; the proxy's from
-- PROXY_PID likewise, to show it is not the bottleneck) and the floor the
-- phase cannot beat, max(server CPU, requests x delay / concurrency), with
-- the ratio wall / floor.
local root = arg[0]:match("^(.*)/scripts/bench/[^/]+$") or "."
local helpers = dofile(root .. "/spec/helpers.lua")
local dynamo = require("dynamo")
local core = dynamo.core

local usage = "usage: latency.lua DIRECT_ENDPOINT PROXY_ENDPOINT [N] [DELAY_MS]"
local direct_endpoint = assert(arg[1], usage)
local proxy_endpoint = assert(arg[2], usage)
local N = tonumber(arg[3]) or 20000
local DELAY = tonumber(arg[4]) or 20
local levels = {}
for c in (os.getenv("BENCH_CONCURRENCY") or "1 8 32"):gmatch("%d+") do levels[#levels + 1] = tonumber(c) end
local fmt = string.format
local proxy = helpers.attach_fault_proxy(proxy_endpoint)
proxy.configure{ rate = 0, delay_ms = DELAY }

local server_pid = tonumber(os.getenv("SERVER_PID") or "")
local proxy_pid = tonumber(os.getenv("PROXY_PID") or "")
local function cpu_of(pid)
  if not pid then return nil end
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local fields = {}
  for w in text:match("%)%s+(.*)$"):gmatch("%S+") do fields[#fields + 1] = w end
  -- after the command: state is field 1, utime field 12, stime field 13 (clock ticks, 100 per second)
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end
local function server_cpu() return cpu_of(server_pid) end
local function proxy_cpu() return cpu_of(proxy_pid) end

local function client_for(endpoint, concurrency)
  return dynamo.client{ endpoint = endpoint, region = "us-east-1", concurrency = concurrency,
                        credentials = { access_key_id = "bench", secret_access_key = "bench" } }
end

local BenchTable = dynamo.DynamoTable:extend{ partition_key_name = "pk", sort_key_name = "sk" }
local set, NULL = dynamo.set, dynamo.NULL
local NOTE = string.rep("n", 40)
local function item(i)
  return {
    pk = "user#" .. (i % 100), sk = fmt("item#%08d", i),
    name = "name-" .. i, email = "user" .. i .. "@example.com", age = i % 97, score = (i % 1000) + 0.25,
    active = i % 2 == 0, tags = set{ "t" .. (i % 7), "t" .. (i % 11), "all" },
    address = { city = "City " .. (i % 50), zip = fmt("%05d", i % 99999), geo = { i % 90, i % 180 } },
    history = { i, i + 1, i + 2 }, note = i % 5 == 0 and NULL or NOTE,
  }
end
local function iter(fn)
  local i = -1
  return function()
    i = i + 1
    if i < N then return fn(i) end
  end
end

local direct = client_for(direct_endpoint, 8)
-- the concurrency at which the host transport is compared with libcurl
local HOST_CONCURRENCY = tonumber(os.getenv("BENCH_HOST_CONCURRENCY") or "") or 8
local rows = {}
local function phase(name, c, client, fn)
  collectgarbage()
  local r0, p0, s0, x0 = client:stats().requests, proxy.stats().requests, server_cpu(), proxy_cpu()
  local t0 = core.monotonic_ms()
  local detail = fn()
  local wall = (core.monotonic_ms() - t0) / 1000
  local requests = client:stats().requests - r0
  local srv = s0 and (server_cpu() - s0)
  local pxy = x0 and (proxy_cpu() - x0)
  local floor = math.max(srv or 0, requests * DELAY / 1000 / c)
  rows[#rows + 1] = { name = name, c = c, wall = wall, requests = requests, proxy = proxy.stats().requests - p0,
                      srv = srv, pxy = pxy, floor = floor, detail = detail }
  io.stderr:write(fmt("  concurrency %2d %-12s %7.2f s %5d requests %s\n", c, name, wall, requests, detail or ""))
end

for _, c in ipairs(levels) do
  local name = fmt("bench_latency_%d_%d", core.getpid(), c)
  local admin = BenchTable{ client = direct, table = name, wait_delay_ms = 20 }
  admin:create_table()
  admin:wait_until_exists()
  local client = client_for(proxy_endpoint, c)
  local t = BenchTable{ client = client, table = name }
  phase("batch_write", c, client, function()
    t:batch_upsert_records(iter(item), { read_existing = false })
  end)
  phase("batch_get", c, client, function()
    local found = 0
    for _, f in t:batch_get_records(iter(function(i) return { pk = "user#" .. (i % 100), sk = fmt("item#%08d", i) } end)) do
      if f then found = found + 1 end
    end
    if found ~= N then error(fmt("batch_get found %d of %d", found, N)) end
    return fmt("(%d found)", found)
  end)
  if c == HOST_CONCURRENCY then
    -- the same link through a host transport that yields (the specs' LuaSocket
    -- scheduler, spec/support/coro_host.lua) against libcurl: batch reads and
    -- query_many over the 100 partitions, at the same concurrency
    local coro_host = dofile(root .. "/spec/support/coro_host.lua")
    local queries = {}
    for p = 0, 99 do queries[p + 1] = { partition_key = "user#" .. p } end
    local function reads(cl)
      local tt = BenchTable{ client = cl, table = name }
      return function()
        local found = 0
        for _, f in tt:batch_get_records(iter(function(i) return { pk = "user#" .. (i % 100), sk = fmt("item#%08d", i) } end)) do
          if f then found = found + 1 end
        end
        if found ~= N then error(fmt("batch_get found %d of %d", found, N)) end
      end, function()
        local got = 0
        for _ in tt:query_many(queries, { concurrency = c }) do got = got + 1 end
        if got ~= N then error(fmt("query_many gave %d of %d", got, N)) end
      end
    end
    local get_curl, query_curl = reads(client)
    phase("query_many", c, client, query_curl)
    local s = coro_host.new()
    local hclient = dynamo.client{ endpoint = proxy_endpoint, region = "us-east-1", concurrency = c,
      credentials = { access_key_id = "bench", secret_access_key = "bench" }, transport = s:http_transport(),
      sleep = function(ms) s:sleep(ms) end, spawn = s:spawner(), join = s:joiner() }
    local get_host, query_host = reads(hclient)
    local function in_host(fn) return function() s:run(fn) end end
    phase("host get", c, hclient, in_host(get_host))
    phase("host query", c, hclient, in_host(query_host))
    s:close()
  end
  client:close()
  admin:delete_table()
end

print(fmt("%d records, %d ms added per request by the proxy, no faults", N, DELAY))
print(fmt("%-11s %11s %8s %9s %9s %13s %12s %9s %10s", "phase", "concurrency", "wall s", "requests", "proxy rq",
  "server cpu s", "proxy cpu s", "floor s", "wall/floor"))
for _, r in ipairs(rows) do
  print(fmt("%-11s %11d %8.2f %9d %9d %13s %12s %9.2f %10.2f", r.name, r.c, r.wall, r.requests, r.proxy,
    r.srv and fmt("%.2f", r.srv) or "-", r.pxy and fmt("%.2f", r.pxy) or "-", r.floor, r.wall / r.floor))
end
local by = {}
for _, r in ipairs(rows) do by[r.name .. "@" .. r.c] = r end
local hc = HOST_CONCURRENCY
if by["host get@" .. hc] and by["batch_get@" .. hc] then
  print(fmt("host transport against libcurl at concurrency %d: batch_get %.2fx, query_many %.2fx (wall time)", hc,
    by["host get@" .. hc].wall / by["batch_get@" .. hc].wall, by["host query@" .. hc].wall / by["query_many@" .. hc].wall))
end

