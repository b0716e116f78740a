-- Signs 100,000 DynamoDB-shaped requests through dynamo.core's cached signer
-- and prints the mean time per signature.
--
-- From the repository root, with the module built:
--   LUA_CPATH='build/?.so' LUA_PATH='lua/?.lua;lua/?/init.lua' lua5.4 scripts/bench/sign.lua [N]
-- (package.path/cpath come from LUA_PATH/LUA_CPATH; nothing is hard-coded.)
local core = require "dynamo.core"

local N = tonumber(arg and arg[1]) or 100000

-- A PutItem body of about 600 bytes, as the client would send it.
local parts = {}
for i = 1, 9 do
  parts[#parts + 1] = ('"attr_%02d":{"S":"value number %02d for the benchmark run"}'):format(i, i)
end
local body = '{"TableName":"bench_table","Item":{"pk":{"S":"user#000123"},"sk":{"S":"profile"},'
  .. table.concat(parts, ",") .. '},"ReturnValues":"NONE"}'

local t0 = 1709194500
local req = {
  method = "POST",
  path = "/",
  query = "",
  payload = body,
  headers = {
    { "host", "dynamodb.us-east-1.amazonaws.com" },
    { "x-amz-date", core.amz_date(t0) },
    { "x-amz-target", "DynamoDB_20120810.PutItem" },
    { "content-type", "application/x-amz-json-1.0" },
    { "x-amz-security-token", "IQoJb3JpZ2luX2VjEXAMPLEsessiontokenAbCdEfGhIjKlMnOpQrStUvWxYz0123456789" },
  },
  region = "us-east-1",
  service = "dynamodb",
  access_key = "AKIDEXAMPLE",
  secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  time = t0,
}

local signer = core.sigv4_signer()
-- the cached result must equal a fresh, uncached signature
assert(signer:sign(req) == core.sigv4_sign(req), "cached and uncached signatures differ")

local sign = signer.sign
local clock = os.clock
local BATCHES = 10
local per_batch = math.max(1, N // BATCHES)
local last, total, best = nil, 0, math.huge
for _ = 1, BATCHES do
  local start = clock()
  for _ = 1, per_batch do
    last = sign(signer, req)
  end
  local elapsed = clock() - start
  total = total + elapsed
  if elapsed < best then best = elapsed end
end
assert(last == core.sigv4_sign(req))

local n = per_batch * BATCHES
io.write(("sign N=%d %.2f us/request\n"):format(n, total / n * 1e6))
-- On a shared or virtualised machine the fastest batch shows the cost without
-- interference from neighbours.
io.write(("  body %d bytes, %d headers; fastest batch of %d: %.2f us/request\n"):format(
  #body, #req.headers, per_batch, best / per_batch * 1e6))
