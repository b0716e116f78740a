-- Quickstart: create a table, write and read items holding every DynamoDB
-- value type, and print them.
--   scripts/dynamo run scripts/examples/quickstart.lua
-- With no AWS settings this runs against a local in-memory server.
local dynamo = require("dynamo")

local client = dynamo.client()
local table_name = "quickstart_" .. os.time()

-- A readable rendering of a native value, with keys sorted.
local function show(v, indent)
  indent = indent or ""
  local kind = dynamo.core.type_of(v)
  if kind == "M" or kind == "L" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if #keys == 0 then return kind == "L" and "[]" or "{}" end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      local label = kind == "L" and "" or (tostring(k) .. " = ")
      parts[#parts + 1] = indent .. "  " .. label .. show(v[k], indent .. "  ")
    end
    local open, close = kind == "L" and "[" or "{", kind == "L" and "]" or "}"
    return open .. "\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. close
  elseif kind == "S" then
    return string.format("%q", v)
  elseif kind == "B" then
    return "binary(" .. #tostring(v) .. " bytes)"
  end
  return tostring(v) .. (kind and ("  -- " .. kind) or "")
end

print("creating table " .. table_name .. " at " .. client.endpoint)
client:call("CreateTable", {
  TableName = table_name,
  AttributeDefinitions = { { AttributeName = "pk", AttributeType = "S" },
                           { AttributeName = "sk", AttributeType = "S" } },
  KeySchema = { { AttributeName = "pk", KeyType = "HASH" }, { AttributeName = "sk", KeyType = "RANGE" } },
  BillingMode = "PAY_PER_REQUEST",
})
repeat
  local status = client:call("DescribeTable", { TableName = table_name }).Table.TableStatus
  if status ~= "ACTIVE" then dynamo.core.sleep_ms(100) end
until status == "ACTIVE"

local items = {
  {
    pk = "user#1", sk = "profile",
    name = "Ada", email = "ada@example.com",
    age = 36, score = 99.5, balance = dynamo.number("12345678901234567890.123456789012345678"),
    active = true, nickname = dynamo.NULL,
    avatar = dynamo.binary("\137PNG\r\n\26\n"),
    tags = dynamo.set{ "admin", "math" }, lucky = dynamo.set{ 7, 13 },
    address = { city = "London", geo = { 51.5, -0.12 } },
    history = { 1815, 1843, 1852 }, notes = dynamo.list{}, settings = {},
  },
  { pk = "user#2", sk = "profile", name = "Grace", age = 85, active = false, tags = dynamo.set{ "navy" } },
}

for _, item in ipairs(items) do
  client:call("PutItem", { TableName = table_name, Item = dynamo.marshal(item) })
end
print(("wrote %d items"):format(#items))

for _, item in ipairs(items) do
  local out = client:call("GetItem", {
    TableName = table_name, ConsistentRead = true,
    Key = dynamo.marshal{ pk = item.pk, sk = item.sk },
  })
  print(item.pk .. " " .. show(dynamo.unmarshal(out.Item)))
end

local ok, err = pcall(client.call, client, "PutItem", {
  TableName = table_name, Item = dynamo.marshal{ pk = "user#1", sk = "profile" },
  ConditionExpression = "attribute_not_exists(pk)",
})
print("conditional put of an existing key: " .. (ok and "succeeded?!" or tostring(err)))

client:call("DeleteTable", { TableName = table_name })
print("deleted table " .. table_name)
