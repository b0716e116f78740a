--- dynamo-lua: a DynamoDB table manager for Lua 5.4 with a C core.
--
--   local dynamo = require("dynamo")
--   local client = dynamo.client{ region = "us-west-1" }
--   client:call("PutItem", { TableName = "users", Item = dynamo.marshal{ pk = "u1", age = 34 } })
--
-- Submodules load on first use, so `require("dynamo")` stays cheap.
-- @module dynamo
local core = require("dynamo.core")
local errors = require("dynamo.errors")

local dynamo = {
  _VERSION = core._VERSION,
  core = core,
  errors = errors,
  DynamoTableError = errors.DynamoTableError,
  --- JSON text of a Lua value (tables as objects or arrays), and back: for
  -- what a program keeps, such as a query's position (see DynamoTable:query).
  json_encode = core.json_encode,
  json_decode = core.json_decode,
}

--- Creates a client (see dynamo.client module).
function dynamo.client(opts)
  return require("dynamo.client").new(opts)
end

-- name -> function() returning the value, run once on first access
local lazy = {
  types = function() return require("dynamo.types") end,
  number = function() return require("dynamo.types").number end,
  binary = function() return require("dynamo.types").binary end,
  set = function() return require("dynamo.types").set end,
  list = function() return require("dynamo.types").list end,
  map = function() return require("dynamo.types").map end,
  NULL = function() return require("dynamo.types").NULL end,
  marshal = function() return require("dynamo.types").marshal end,
  unmarshal = function() return require("dynamo.types").unmarshal end,
  expressions = function() return require("dynamo.expressions") end,
  ConditionExpression = function() return require("dynamo.expressions").ConditionExpression end,
  UpdateExpression = function() return require("dynamo.expressions").UpdateExpression end,
  ProjectionExpression = function() return require("dynamo.expressions").ProjectionExpression end,
  literal = function() return require("dynamo.expressions").literal end,
  size = function() return require("dynamo.expressions").size end,
  DataTable = function() return require("dynamo.DataTable") end,
  DynamoRecord = function() return require("dynamo.DynamoRecord") end,
  LooseRecord = function() return require("dynamo.DynamoRecord").LooseRecord end,
  DynamoTable = function() return require("dynamo.DynamoTable") end,
  DynamoTableIndex = function() return require("dynamo.DynamoTableIndex") end,
}

return setmetatable(dynamo, {
  __index = function(t, k)
    local load = lazy[k]
    if not load then return nil end
    local v = load()
    rawset(t, k, v)
    return v
  end,
})
