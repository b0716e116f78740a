-- The shared benchmark workload (shared/bench/README.md) through dynamo-lua's
-- table manager: batch_upsert_records, batch_get_records, query per
-- partition, scan. One line per phase:
--   phase wall_seconds client_cpu_seconds items [server_cpu_seconds]
-- (the last column when SERVER_PID names the local server's process).
--
--   lua5.4 scripts/bench/table.lua ENDPOINT [N] [CONCURRENCY]
-- with LUA_PATH / LUA_CPATH reaching lua/ and the build (see scripts/bench/compare).
--
-- batch_write uses batch_upsert_records with read_existing = false: the
-- records are written as given plus the dt_created / dt_modified stamps, which
-- is the peers' work (a plain BatchWriteItem). BENCH_READ_EXISTING=1 measures
-- the reference's read-modify-write instead (a BatchGetItem before each write).
--
-- query runs the 100 partition queries with query_many, `CONCURRENCY` in
-- flight, as the JavaScript peer runs them 8 at a time; BENCH_QUERY_EACH=1
-- queries one partition after another instead (a query iterator each).
local dynamo = require("dynamo")
local core = require("dynamo.core")

local endpoint = arg[1] or os.getenv("AWS_ENDPOINT_URL_DYNAMODB") or "http://127.0.0.1:8000"
local N = tonumber(arg[2]) or 20000
local concurrency = tonumber(arg[3]) or 8
local PARTS = 100
local read_existing = os.getenv("BENCH_READ_EXISTING") == "1"
local query_each = os.getenv("BENCH_QUERY_EACH") == "1"

local string_format, string_rep = string.format, string.rep
local set, NULL = core.set, core.NULL
local cpu_seconds, monotonic_ms = core.cpu_seconds, core.monotonic_ms

local client = dynamo.client{
  endpoint = endpoint, region = "us-east-1", concurrency = concurrency,
  credentials = { access_key_id = "bench", secret_access_key = "bench" },
}

local BenchTable = dynamo.DynamoTable:extend{}
local bench = BenchTable{ client = client, table = "bench_dynamo_lua_" .. core.getpid(), wait_delay_ms = 20 }

local server_pid = tonumber(os.getenv("SERVER_PID") or "")
local function server_cpu()
  if not server_pid then return nil end
  local f = io.open("/proc/" .. server_pid .. "/stat")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local fields = {}
  for w in text:match("%)%s+(.*)$"):gmatch("%S+") do fields[#fields + 1] = w end
  -- after the command: state is field 1, utime field 12, stime field 13 (clock ticks, 100 per second)
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

local function phase(name, fn)
  collectgarbage()
  local s0, c0, t0 = server_cpu(), cpu_seconds(), monotonic_ms()
  local count = fn()
  local line = string_format("%s %.3f %.3f %d", name, (monotonic_ms() - t0) / 1000, cpu_seconds() - c0, count)
  if s0 then line = line .. string_format(" %.3f", server_cpu() - s0) end
  print(line)
  io.stdout:flush()
end

local NOTE = string_rep("n", 40)
local function item(i)
  return {
    pk = "user#" .. (i % PARTS),
    sk = string_format("item#%08d", i),
    name = "name-" .. i,
    email = "user" .. i .. "@example.com",
    age = i % 97,
    score = (i % 1000) + 0.25,
    active = i % 2 == 0,
    tags = set{ "t" .. (i % 7), "t" .. (i % 11), "all" },
    address = { city = "City " .. (i % 50), zip = string_format("%05d", i % 99999), geo = { i % 90, i % 180 } },
    history = { i, i + 1, i + 2 },
    note = i % 5 == 0 and NULL or NOTE,
  }
end

bench:create_table()
bench:wait_until_exists()

phase("batch_write", function()
  local i = -1
  bench:batch_upsert_records(function()
    i = i + 1
    if i < N then return item(i) end
  end, { read_existing = read_existing })
  return N
end)

phase("batch_get", function()
  local i = -1
  local got = 0
  for _, found in bench:batch_get_records(function()
    i = i + 1
    if i < N then return { pk = "user#" .. (i % PARTS), sk = string_format("item#%08d", i) } end
  end) do
    if found then got = got + 1 end
  end
  return got
end)

phase("query", function()
  local got = 0
  if query_each then
    for p = 0, PARTS - 1 do
      for _ in bench:query{ partition_key = "user#" .. p } do got = got + 1 end
    end
    return got
  end
  local queries = {}
  for p = 0, PARTS - 1 do queries[p + 1] = { partition_key = "user#" .. p } end
  for _ in bench:query_many(queries) do got = got + 1 end
  return got
end)

phase("scan", function()
  local got = 0
  for _ in bench:scan() do got = got + 1 end
  return got
end)

bench:delete_table()
