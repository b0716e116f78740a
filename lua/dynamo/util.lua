--- Small value helpers shared by the Lua classes. "Plain" tables are tables
-- without a metatable: the library's own values (sets, numbers, binary,
-- records) carry metatables and are compared with == and never copied.
-- @module dynamo.util
local util = {}

local next, type, getmetatable, rawequal, rawget = next, type, getmetatable, rawequal, rawget
local pairs, ipairs, tostring = pairs, ipairs, tostring
local string_format, table_sort, table_concat = string.format, table.sort, table.concat

--- True for a table without a metatable.
function util.is_plain(v)
  return type(v) == "table" and getmetatable(v) == nil
end

local function show_value(v)
  if type(v) == "string" then
    if #v > 40 then v = v:sub(1, 37) .. "..." end
    return string_format("%q", v)
  end
  return tostring(v)
end

--- A short, deterministic description of a record for error messages:
-- its fields sorted by name, long strings cut, at most about 200 characters.
function util.describe(record)
  if type(record) ~= "table" then return show_value(record) end
  local keys = {}
  for k in pairs(record) do keys[#keys + 1] = k end
  table_sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts, size = {}, 0
  for i, k in ipairs(keys) do
    local text = tostring(k) .. "=" .. show_value(record[k])
    size = size + #text
    if size > 200 then
      parts[i] = "..."
      break
    end
    parts[i] = text
  end
  return "{" .. table_concat(parts, ", ") .. "}"
end


--- A copy of the top level of a table.
function util.copy(t)
  local out = {}
  for k, v in next, t do out[k] = v end
  return out
end

--- A deep copy of plain tables (cycles kept); any other value is shared.
function util.deep_copy(v, seen)
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in next, v do out[util.deep_copy(k, seen)] = util.deep_copy(x, seen) end
  return out
end

--- Value equality: plain tables by content (cycles allowed), numbers by value
-- (1 == 1.0), objects with metatables by their own ==, anything else by identity.
function util.values_equal(a, b, seen)
  if rawequal(a, b) then return true end
  local ta, tb = type(a), type(b)
  if ta ~= tb then return false end
  if ta == "number" then return a == b end
  if ta == "table" and getmetatable(a) == nil and getmetatable(b) == nil then
    seen = seen or {}
    if seen[a] == b then return true end
    seen[a] = b
    local count = 0
    for k, x in next, a do
      count = count + 1
      local y = rawget(b, k)
      if y == nil or not util.values_equal(x, y, seen) then return false end
    end
    for _ in next, b do count = count - 1 end
    return count == 0
  end
  if ta == "table" or ta == "userdata" then
    if getmetatable(a) == nil or getmetatable(b) == nil then return false end
    return a == b
  end
  return false
end

return util
