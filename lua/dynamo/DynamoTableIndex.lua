--- A DynamoDB index definition: the primary key, a global or a local secondary index.
-- Pure data: it renders the pieces of a CreateTable request and the key data of
-- a Query. Errors raise `dynamo.errors` objects with code `Validation` when the
-- definition is malformed, so a bad index fails where it is written.
--
--    local DynamoTableIndex = require("dynamo.DynamoTableIndex")
--    local by_age = DynamoTableIndex("gsi_name_age", "name", "age", {
--      sort_key_type = "N", projection = "KEYS_ONLY" })
--    by_age:as_global_secondary_index()
--
-- Fields: `name` (nil for the primary index), `partition_key_name`,
-- `sort_key_name` (nil when the index has no sort key), `partition_key_type`,
-- `sort_key_type` (`"S"`, `"N"` or `"B"`), `projection` (`"ALL"`, `"KEYS_ONLY"`
-- or an array of attribute names for INCLUDE), `read_capacity_units`,
-- `write_capacity_units`. Treat them as read-only; `copy(opts)` makes a
-- changed index.
-- @classmod dynamo.DynamoTableIndex
local class = require("dynamo.class")
local errors = require("dynamo.errors")

local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local getmetatable = getmetatable
local math_tointeger = math.tointeger
local string_format = string.format

local DynamoTableIndex = class.new("DynamoTableIndex")

--- Name given to the table's own key (its `name` field reads nil).
DynamoTableIndex.PRIMARY = "primary"

--- Key attribute types DynamoDB accepts.
DynamoTableIndex.TYPES = { S = true, N = true, B = true }

--- Projection types given as strings (an array of names means INCLUDE).
DynamoTableIndex.PROJECTIONS = { ALL = true, KEYS_ONLY = true }

local OPTIONS = {
  partition_key_type = true, sort_key_type = true, projection = true,
  read_capacity_units = true, write_capacity_units = true,
}

local function fail(label, message)
  errors.raise("Validation", "DynamoTableIndex " .. label .. ": " .. message)
end

local function show(v)
  if type(v) == "string" then return string_format("%q", v) end
  return tostring(v)
end

local function check_type(label, option, value)
  if value == nil then return "S" end
  if type(value) ~= "string" or not DynamoTableIndex.TYPES[value] then
    fail(label, option .. " must be \"S\", \"N\" or \"B\", got " .. show(value))
  end
  return value
end

local function check_capacity(label, option, value)
  if value == nil then return nil end
  local n = type(value) == "number" and math_tointeger(value) or nil
  if not n or n < 1 then
    fail(label, option .. " must be a positive integer, got " .. show(value))
  end
  return n
end

-- Returns "ALL", "KEYS_ONLY" or a fresh array of attribute names (INCLUDE).
local function check_projection(label, projection)
  if projection == nil then return "ALL" end
  if type(projection) == "string" then
    if DynamoTableIndex.PROJECTIONS[projection] then return projection end
    if projection == "INCLUDE" then
      fail(label, "an INCLUDE projection is given as an array of attribute names")
    end
    fail(label, "projection must be \"ALL\", \"KEYS_ONLY\" or an array of attribute names, got "
      .. show(projection))
  end
  if type(projection) ~= "table" then
    fail(label, "projection must be \"ALL\", \"KEYS_ONLY\" or an array of attribute names, got "
      .. type(projection))
  end
  local count = 0
  for k in next, projection do
    if type(k) ~= "number" or math_tointeger(k) ~= k or k < 1 then
      fail(label, "projection must be an array of attribute names, got key " .. show(k))
    end
    count = count + 1
  end
  if count == 0 then return "ALL" end
  local names, seen = {}, {}
  for i = 1, count do
    local attr = projection[i]
    if type(attr) ~= "string" or attr == "" then
      fail(label, "projection entry " .. i .. " must be a non-empty attribute name, got " .. show(attr))
    end
    if seen[attr] then
      fail(label, "projection lists " .. show(attr) .. " twice")
    end
    seen[attr] = true
    names[i] = attr
  end
  return names
end

--- Makes an index.
-- @tparam ?string name the index name; `DynamoTableIndex.PRIMARY` (or nil) for the table key
-- @tparam string partition_key_name
-- @tparam ?string|false sort_key_name nil, false or "" for an index without sort key
-- @tparam[opt] table opts `partition_key_type` ("S"), `sort_key_type` ("S"),
--   `projection` (nil or "ALL", "KEYS_ONLY", or an array of names for INCLUDE; `{}` means ALL),
--   `read_capacity_units`, `write_capacity_units` (sent only when both are set)
function DynamoTableIndex:init(name, partition_key_name, sort_key_name, opts)
  if name ~= nil and (type(name) ~= "string" or name == "") then
    fail(show(name), "name must be a non-empty string or DynamoTableIndex.PRIMARY")
  end
  local label = name or DynamoTableIndex.PRIMARY
  if name == DynamoTableIndex.PRIMARY then name = nil end
  if type(partition_key_name) ~= "string" or partition_key_name == "" then
    fail(label, "partition_key_name must be a non-empty string, got " .. show(partition_key_name))
  end
  if sort_key_name == false or sort_key_name == "" then sort_key_name = nil end
  if sort_key_name ~= nil and type(sort_key_name) ~= "string" then
    fail(label, "sort_key_name must be a string, false or nil, got " .. show(sort_key_name))
  end
  if sort_key_name == partition_key_name then
    fail(label, "partition and sort key cannot both be " .. show(sort_key_name))
  end
  if opts ~= nil and type(opts) ~= "table" then
    fail(label, "options must be a table, got " .. type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then fail(label, "unknown option " .. show(k)) end
  end
  self.name = name
  self.partition_key_name = partition_key_name
  self.sort_key_name = sort_key_name
  self.partition_key_type = check_type(label, "partition_key_type", opts.partition_key_type)
  self.sort_key_type = check_type(label, "sort_key_type", opts.sort_key_type)
  self.projection = check_projection(label, opts.projection)
  self.read_capacity_units = check_capacity(label, "read_capacity_units", opts.read_capacity_units)
  self.write_capacity_units = check_capacity(label, "write_capacity_units", opts.write_capacity_units)
end

--- True for the table's own key (name `PRIMARY`).
function DynamoTableIndex:is_primary()
  return self.name == nil
end

--- A new index with the same definition and the fields of `opts` replaced.
-- Used, for example, to give an index the table's capacity without changing a shared object.
-- @tparam[opt] table opts the options of the constructor
function DynamoTableIndex:copy(opts)
  local merged = {
    partition_key_type = self.partition_key_type,
    sort_key_type = self.sort_key_type,
    projection = self.projection,
    read_capacity_units = self.read_capacity_units,
    write_capacity_units = self.write_capacity_units,
  }
  for k, v in pairs(opts or {}) do merged[k] = v end
  local cls = getmetatable(self)
  return cls(self.name or DynamoTableIndex.PRIMARY, self.partition_key_name,
    self.sort_key_name, merged)
end

--- The `Projection` member of an index: `{ProjectionType = "ALL"}`,
-- `{ProjectionType = "KEYS_ONLY"}` or `{ProjectionType = "INCLUDE", NonKeyAttributes = {...}}`.
function DynamoTableIndex:get_projection()
  local projection = self.projection
  if type(projection) == "table" then
    local names = {}
    for i, attr in ipairs(projection) do names[i] = attr end
    return { ProjectionType = "INCLUDE", NonKeyAttributes = names }
  end
  return { ProjectionType = projection }
end

--- `{{AttributeName = pk, KeyType = "HASH"}, {AttributeName = sk, KeyType = "RANGE"}}`
-- (the RANGE entry only when the index has a sort key).
function DynamoTableIndex:as_key_schema()
  local schema = { { AttributeName = self.partition_key_name, KeyType = "HASH" } }
  if self.sort_key_name then
    schema[2] = { AttributeName = self.sort_key_name, KeyType = "RANGE" }
  end
  return schema
end

--- `{{AttributeName = pk, AttributeType = "S"}, ...}` for the key attributes of the index.
function DynamoTableIndex:as_attribute_definitions()
  local defs = { { AttributeName = self.partition_key_name, AttributeType = self.partition_key_type } }
  if self.sort_key_name then
    defs[2] = { AttributeName = self.sort_key_name, AttributeType = self.sort_key_type }
  end
  return defs
end

local function secondary(self, kind)
  if self.name == nil then
    errors.raise("Validation", "DynamoTableIndex primary: the primary index cannot be a " .. kind)
  end
  return {
    IndexName = self.name,
    KeySchema = self:as_key_schema(),
    Projection = self:get_projection(),
  }
end

--- The GlobalSecondaryIndexes entry of CreateTable; `ProvisionedThroughput` is
-- included only when both capacities are set.
function DynamoTableIndex:as_global_secondary_index()
  local gsi = secondary(self, "global secondary index")
  if self.read_capacity_units and self.write_capacity_units then
    gsi.ProvisionedThroughput = {
      ReadCapacityUnits = self.read_capacity_units,
      WriteCapacityUnits = self.write_capacity_units,
    }
  end
  return gsi
end

--- The LocalSecondaryIndexes entry of CreateTable (never has throughput).
function DynamoTableIndex:as_local_secondary_index()
  return secondary(self, "local secondary index")
end

--- Key data for a Query on this index: `{[pk] = partition_key, [sk] = sort_key}`;
-- the sort key is left out when the index has none or `sort_key` is nil.
function DynamoTableIndex:get_query_data(partition_key, sort_key)
  local data = { [self.partition_key_name] = partition_key }
  if self.sort_key_name and sort_key ~= nil then
    data[self.sort_key_name] = sort_key
  end
  return data
end

DynamoTableIndex.__tostring = function(self)
  return "<DynamoTableIndex name=" .. tostring(self.name or DynamoTableIndex.PRIMARY) .. ">"
end

return DynamoTableIndex
