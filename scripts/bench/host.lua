-- The host driver's concurrency: send_many of N PutItem, then N GetItem,
-- through a yielding transport (the spec scheduler on non-blocking LuaSocket
-- sockets, spec/support/coro_host.lua) at each concurrency given, and the same
-- through libcurl for comparison. One line per run:
--   driver concurrency op wall_ms client_cpu_ms max_in_flight
--
--   lua5.4 scripts/bench/host.lua ENDPOINT [N] [CONCURRENCY...]
-- from the repository root, with LUA_PATH reaching lua/ and ./ (for spec/support) and
-- LUA_CPATH the build (see the README's Benchmarks section). BENCH_RTT_MS=n
-- adds n ms of simulated network latency to each host request (a cooperative
-- sleep before it is sent), as a remote endpoint has; the curl runs have none.
local dynamo = require("dynamo")
local core = require("dynamo.core")
local coro_host = require("spec.support.coro_host")

local endpoint = arg[1] or "http://127.0.0.1:8000"
local N = tonumber(arg[2]) or 200
local levels = {}
for i = 3, #arg do levels[#levels + 1] = tonumber(arg[i]) end
if #levels == 0 then levels = { 1, 8 } end

local rtt_ms = tonumber(os.getenv("BENCH_RTT_MS") or "") or 0

local creds = { access_key_id = "bench", secret_access_key = "bench" }
local admin = dynamo.client{ endpoint = endpoint, region = "us-east-1", credentials = creds }
local table_name = "bench_host_" .. core.getpid()
admin:call("CreateTable", {
  TableName = table_name, BillingMode = "PAY_PER_REQUEST",
  AttributeDefinitions = { { AttributeName = "pk", AttributeType = "S" } },
  KeySchema = { { AttributeName = "pk", KeyType = "HASH" } },
})
repeat core.sleep_ms(20) until admin:call("DescribeTable", { TableName = table_name }).Table.TableStatus == "ACTIVE"

local function requests(op)
  local out = {}
  for i = 1, N do
    local key = dynamo.marshal{ pk = ("k%05d"):format(i) }
    if op == "PutItem" then
      local item = dynamo.marshal{ pk = ("k%05d"):format(i), n = i, text = ("x"):rep(200) }
      out[i] = { op, core.json_encode{ TableName = table_name, Item = item } }
    else
      out[i] = { op, core.json_encode{ TableName = table_name, Key = key } }
    end
  end
  return out
end

local function check(out)
  for i = 1, N do
    if dynamo.errors.is(out[i]) then error("request " .. i .. " failed: " .. tostring(out[i])) end
  end
end

local function measure(driver, concurrency, send)
  for _, op in ipairs{ "PutItem", "GetItem" } do
    local reqs = requests(op)
    local t0, c0 = core.monotonic_ms(), core.cpu_seconds()
    local max = send(reqs)
    print(("%-5s %3d %-8s %8.1f %8.1f %3s"):format(driver, concurrency, op, core.monotonic_ms() - t0,
      (core.cpu_seconds() - c0) * 1000, tostring(max or "-")))
  end
end

for _, c in ipairs(levels) do
  local s = coro_host.new()
  local now, max = 0, 0
  local client = dynamo.client{
    endpoint = endpoint, region = "us-east-1", credentials = creds, concurrency = c,
    transport = s:http_transport(function(event)
      now = now + (event == "start" and 1 or -1)
      if now > max then max = now end
      if event == "start" and rtt_ms > 0 then s:sleep(rtt_ms) end
    end),
    sleep = s:sleeper(), spawn = s:spawner(), join = s:joiner(),
  }
  measure("host", c, function(reqs)
    max = 0
    s:run(function() check(client:send_many(reqs)) end)
    return max
  end)
  s:close()
end

for _, c in ipairs(levels) do
  local client = dynamo.client{ endpoint = endpoint, region = "us-east-1", credentials = creds, concurrency = c }
  measure("curl", c, function(reqs) check(client:send_many(reqs)) end)
  client:close()
end

admin:call("DeleteTable", { TableName = table_name })
