-- Times the codec of dynamo.core on the shared benchmark workload
-- (see the bench README in the project's shared folder): N distinct items,
-- encoded with core.encode_item, decoded with core.decode_item, and Query-like
-- responses of 100 items decoded with core.json_decode(body, true).
--
-- From the repository root, with the module built:
--   LUA_CPATH='build/?.so' LUA_PATH='lua/?.lua;lua/?/init.lua' lua5.4 scripts/bench/codec.lua [N] [ROUNDS]
-- (package.path/cpath come from LUA_PATH/LUA_CPATH; nothing is hard-coded.)
-- Prints one line per phase, "<phase> N=<n> <x> us/item", the best of ROUNDS
-- runs (default 3) in CPU time, since this machine is noisy.
local core = require "dynamo.core"

local N = math.tointeger(tonumber(arg and arg[1])) or 200000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 3
local clock = os.clock
local fmt = string.format

local NOTE = string.rep("n", 40)

local function make_item(i)
  return {
    pk = "user#" .. (i % 100),
    sk = fmt("item#%08d", i),
    name = "name-" .. i,
    email = "user" .. i .. "@example.com",
    age = i % 97,
    score = (i % 1000) + 0.25,
    active = i % 2 == 0,
    tags = core.set { "t" .. (i % 7), "t" .. (i % 11), "all" },
    address = { city = "City " .. (i % 50), zip = fmt("%05d", i % 99999), geo = { i % 90, i % 180 } },
    history = { i, i + 1, i + 2 },
    note = i % 5 == 0 and core.NULL or NOTE,
  }
end

-- Runs f ROUNDS times; returns the best CPU time per item in microseconds.
local function best(f, items)
  local t = math.huge
  for _ = 1, ROUNDS do
    collectgarbage("collect")
    local t0 = clock()
    f()
    local dt = clock() - t0
    if dt < t then t = dt end
  end
  return t / items * 1e6
end

local items = {}
for i = 1, N do items[i] = make_item(i) end

local encode_item = core.encode_item
local texts = {}
local enc = best(function()
  for i = 1, N do texts[i] = encode_item(items[i]) end
end, N)
print(fmt("encode N=%d %.2f us/item", N, enc))

-- Lossless check on the side (not timed): decoding gives back the same bytes.
do
  local step = N > 1000 and N // 1000 or 1
  for i = 1, N, step do
    local again = encode_item(core.decode_item(texts[i]))
    if again ~= texts[i] then error("round trip changed item " .. i .. ":\n" .. texts[i] .. "\n" .. again) end
  end
end

local decode_item = core.decode_item
local sink
local dec = best(function()
  for i = 1, N do sink = decode_item(texts[i]) end
end, N)
print(fmt("decode N=%d %.2f us/item", N, dec))

-- Query pages: 100 items each, with the envelope DynamoDB sends.
local pages = {}
local PAGE = 100
for p = 1, math.max(1, N // PAGE) do
  local first = (p - 1) * PAGE + 1
  local parts = {}
  for i = first, math.min(first + PAGE - 1, N) do parts[#parts + 1] = texts[i] end
  local last = items[math.min(first + PAGE - 1, N)]
  pages[p] = '{"Count":' .. #parts .. ',"Items":[' .. table.concat(parts, ",")
    .. '],"LastEvaluatedKey":{"pk":{"S":"' .. last.pk .. '"},"sk":{"S":"' .. last.sk .. '"}},"ScannedCount":'
    .. #parts .. '}'
end
local json_decode = core.json_decode
local q = best(function()
  for p = 1, #pages do sink = json_decode(pages[p], true) end
end, #pages * PAGE)
print(fmt("query_decode N=%d %.2f us/item", #pages * PAGE, q))

-- A BatchWriteItem body of 25 items, as the table layer builds it.
local json_encode, as_item = core.json_encode, core.as_item
local bw = best(function()
  for c = 1, N, 25 do
    local reqs = {}
    for i = c, math.min(c + 24, N) do reqs[#reqs + 1] = { PutRequest = { Item = as_item(items[i]) } } end
    sink = json_encode { RequestItems = { bench = reqs } }
  end
end, N)
print(fmt("batch_write_encode N=%d %.2f us/item", N, bw))
assert(sink ~= nil)
