--- Benchmark: render the expressions of one query request N times.
-- The first line is the figure asked for: the same compiled expressions each
-- time, so render_request reuses its last render and only looks up values and
-- builds the result tables. The second line alternates two different queries,
-- so every render goes through the C renderer (the cost when expressions
-- change from request to request).
-- Key condition: pk = :pk AND sk BETWEEN :lo AND :hi (the three key
-- comparisons DynamoDB allows at most); filter: five clauses with a nested
-- path, NOT and a parenthesized OR; projection: six paths.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua' LUA_CPATH='build/?.so' lua5.4 scripts/bench/expr.lua [N]
--
-- Prints "render N=200000 X.XX us/render". Module paths come from
-- LUA_PATH / LUA_CPATH.
local E = require("dynamo.expressions")
local core = require("dynamo.core")
local C = E.ConditionExpression

local n = tonumber(arg and arg[1]) or 200000

local key = C("pk", "=") & C("sk", "BETWEEN", { "lo", "hi" })
local filter = C("age", "<=") & ~C("name", "begins_with", "prefix")
  & (C("status", "=") | C("tags", "contains", "tag")) & C("address.city", "attribute_exists")
local projection = E.ProjectionExpression("pk", "sk", "name", "age", "address.city", "tags[0]")
local data = { pk = "user#42", lo = "2024-01-01", hi = "2024-12-31", age = 45, prefix = "J",
               status = "active", tag = "vip" }
local spec = { key_condition = key, filter = filter, projection = projection, data = data }
local render = E.render_request

-- one render checked, so the benchmark cannot time a failing call
local r = render(spec)
assert(r.KeyConditionExpression == "#aae = :aaa AND #aaf BETWEEN :aab AND :aac", r.KeyConditionExpression)
assert(r.FilterExpression == "#aab <= :aad AND NOT begins_with(#aad, :aae) AND (#aag = :aaf OR contains(#aah, :aag))"
  .. " AND attribute_exists(#aaa.#aac)", r.FilterExpression)
assert(r.ProjectionExpression == "#aaa.#aac, #aab, #aad, #aae, #aaf, #aah[0]", r.ProjectionExpression)

for _ = 1, 10000 do render(spec) end -- warm up
collectgarbage("collect")
-- process CPU time: other work on a shared machine does not inflate it
local clock = core.cpu_seconds or os.clock
local t0 = clock()
for _ = 1, n do render(spec) end
local t1 = clock()
print(string.format("render N=%d %.2f us/render", n, (t1 - t0) * 1e6 / n))

local other = { key_condition = C("pk", "=") & C("sk", "begins_with", "lo"), filter = filter | C("age", ">", "hi"),
                projection = projection, data = data }
t0 = clock()
for i = 1, n do render(i % 2 == 0 and spec or other) end
t1 = clock()
print(string.format("render (C renderer every time) N=%d %.2f us/render", n, (t1 - t0) * 1e6 / n))
