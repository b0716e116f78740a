--- DynamoDB value types for Lua: `dynamo.NULL`, `dynamo.number`,
-- `dynamo.binary`, `dynamo.set`, `dynamo.list`, `dynamo.map`, and
-- `dynamo.marshal` / `dynamo.unmarshal`.
--
-- The constructors and metatables live in the C module (`dynamo.core`),
-- which recognises each type by its metatable; this module adds the methods
-- a Lua user expects.
--
--   number: tostring(n) is the canonical text; ==, <, <= compare exactly
--     (a Lua float compares as the decimal DynamoDB would store for it);
--     n:tonumber() gives a Lua number (may round); n .. "x" concatenates.
--     Note that Lua never calls __eq between a userdata and a number, so
--     `dynamo.number("1") == 1` is false: compare with <= and >=, or use
--     n:tonumber().
--   binary: b:bytes() and tostring(b) are the raw string, #b its length,
--     == compares bytes, b:hex() and b:base64() show it printably.
--   set: a table of its elements s[1..#s] (ipairs and pairs work), whose
--     element type is "SS", "NS" or "BS" (s:type(), nil while empty and
--     untyped). s:has(v), s:add(v) (returns s), s:remove(v) (returns true
--     when v was there), s:values() (iterator). Numbers are the same element
--     when their canonical text is (1 and 1.0 and dynamo.number("1.0")).
--     Change a set through its methods only.
--   list / map: return the table given (or a new one), tagged so that it
--     encodes as L / M whatever its contents (an empty list stays a list).
--
-- Decoded items: lists come back tagged as lists, empty maps tagged as maps,
-- other maps as plain tables; N values as integers (integral, in int64),
-- floats (when the float's shortest text is the stored text) or
-- dynamo.number; B as dynamo.binary; NULL as dynamo.NULL.
-- @module dynamo.types
local core = require "dynamo.core"

local getmetatable, setmetatable, rawget, rawset, rawlen = getmetatable, setmetatable, rawget, rawset, rawlen
local type, tostring, error, rawequal = type, tostring, error, rawequal
local concat, fmt = table.concat, string.format
local utf8_len = utf8.len

local MT = core._metatables
local set_key, type_of = core.set_key, core.type_of

local M = {
  NULL = core.NULL,
  number = core.number,
  binary = core.binary,
  set = core.set,
  list = core.list,
  map = core.map,
  type_of = type_of,
  marshal = core.marshal,
  marshal_value = core.marshal_value,
  unmarshal = core.unmarshal,
  unmarshal_value = core.unmarshal_value,
  encode_item = core.encode_item,
  decode_item = core.decode_item,
}

--- True when v is a dynamo.number.
function M.is_number(v) return getmetatable(v) == MT.number end
--- True when v is a dynamo.binary.
function M.is_binary(v) return getmetatable(v) == MT.binary end
--- True when v is dynamo.NULL.
function M.is_null(v) return rawequal(v, core.NULL) end

-- kind of each set metatable ("SS", "NS", "BS"; false: not known yet)
local SET_KIND = { [MT.set] = false, [MT.set_SS] = "SS", [MT.set_NS] = "NS", [MT.set_BS] = "BS" }
local SET_MT = { SS = MT.set_SS, NS = MT.set_NS, BS = MT.set_BS }
-- set element type from a value's AttributeValue type
local ELEMENT_SET = { S = "SS", N = "NS", B = "BS" }

--- True when v is a dynamo.set.
function M.is_set(v) return SET_KIND[getmetatable(v)] ~= nil end

---------------------------------------------------------------------------
-- number

local number_methods = MT.number.__index

--- The canonical text (same as tostring).
function number_methods:text() return tostring(self) end

---------------------------------------------------------------------------
-- binary

local binary_methods = MT.binary.__index

--- The bytes as lowercase hex.
function binary_methods:hex()
  return (self:bytes():gsub(".", function(c) return fmt("%02x", c:byte()) end))
end

--- The bytes as base64 (as on the wire).
function binary_methods:base64()
  return core.marshal_value(self).B
end

---------------------------------------------------------------------------
-- set

local set_methods = MT.set.__index -- shared by the four set metatables

-- key -> position, built on first use and checked on every use (an index
-- never outlives a change made behind the methods' back)
local indexes = setmetatable({}, { __mode = "k" })

local function kind(s) return SET_KIND[getmetatable(s)] end

local function build_index(s, k)
  local idx = {}
  for i = 1, rawlen(s) do idx[set_key(k, rawget(s, i))] = i end
  indexes[s] = idx
  return idx
end

-- Position of the element whose key is key, or nil.
local function position(s, k, key)
  local idx = indexes[s] or build_index(s, k)
  local i = idx[key]
  if i ~= nil and (rawget(s, i) == nil or set_key(k, rawget(s, i)) ~= key) then
    idx = build_index(s, k)
    i = idx[key]
  end
  return i, idx
end

--- "SS", "NS" or "BS"; nil for an empty set whose type is not known yet.
function set_methods:type() return kind(self) or nil end

--- True when v is an element.
function set_methods:has(v)
  local k = kind(self)
  if not k then return false end
  local key = set_key(k, v)
  return key ~= nil and position(self, k, key) ~= nil
end

--- Adds v (a no-op when already there); returns the set.
function set_methods:add(v)
  local k = kind(self)
  if not k then
    k = ELEMENT_SET[type_of(v)]
    if not k then
      error(fmt("dynamo.set: cannot add a %s; sets hold strings, numbers or dynamo.binary", type(v)), 2)
    end
  end
  local key = set_key(k, v)
  if key == nil then error(fmt("dynamo.set: cannot add a %s to a %s set", type_of(v) or type(v), k), 2) end
  if k == "SS" and not utf8_len(v) then
    error("dynamo.set: string is not valid UTF-8; use dynamo.binary for raw bytes", 2)
  end
  local i, idx = position(self, k, key)
  if i == nil then
    local n = rawlen(self) + 1
    rawset(self, n, v)
    idx[key] = n
    if not kind(self) then setmetatable(self, SET_MT[k]) end
  end
  return self
end

--- Removes v; returns true when it was there.
function set_methods:remove(v)
  local k = kind(self)
  if not k then return false end
  local key = set_key(k, v)
  if key == nil then return false end
  local i, idx = position(self, k, key)
  if i == nil then return false end
  local n = rawlen(self)
  for j = i, n - 1 do
    local e = rawget(self, j + 1)
    rawset(self, j, e)
    idx[set_key(k, e)] = j
  end
  rawset(self, n, nil)
  idx[key] = nil
  return true
end

--- Iterator over the elements: `for v in s:values() do ... end`.
function set_methods:values()
  local i = 0
  return function()
    i = i + 1
    return rawget(self, i)
  end
end

local function set_next(s, i)
  i = i + 1
  local v = rawget(s, i)
  if v ~= nil then return i, v end
end

local function set_len(s) return rawlen(s) end

local function set_pairs(s) return set_next, s, 0 end

local function set_eq(a, b)
  local ka, kb = kind(a), kind(b)
  if ka == nil or kb == nil then return false end
  local n = rawlen(a)
  if n ~= rawlen(b) then return false end
  if n == 0 then return true end
  if ka ~= kb then return false end
  for i = 1, n do
    if position(b, kb, set_key(ka, rawget(a, i))) == nil then return false end
  end
  return true
end

local function show(v)
  if type(v) == "string" then return fmt("%q", v) end
  if getmetatable(v) == MT.binary then return 'dynamo.binary("' .. v:base64() .. '")' end
  return tostring(v)
end

local function set_tostring(s)
  local parts = {}
  for i = 1, rawlen(s) do parts[i] = show(rawget(s, i)) end
  return (kind(s) or "set") .. "{" .. concat(parts, ", ") .. "}"
end

local function set_newindex()
  error("dynamo.set: change a set with s:add(v) and s:remove(v)", 2)
end

for mt in pairs(SET_KIND) do
  mt.__len = set_len
  mt.__pairs = set_pairs
  mt.__eq = set_eq
  mt.__tostring = set_tostring
  mt.__newindex = set_newindex
  mt.__name = "dynamo.set"
end

---------------------------------------------------------------------------
-- list / map

MT.list.__name = "dynamo.list"
MT.map.__name = "dynamo.map"

return M
