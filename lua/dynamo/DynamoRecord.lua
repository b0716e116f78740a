--- Record classes: a schema declared as data, instances that are plain data tables.
--
--    local DynamoRecord = require("dynamo.DynamoRecord")
--    local User = DynamoRecord:extend{
--      name = "User",                                  -- shown in messages and tostring
--      fields = {
--        name = { required = true },
--        age = { default = 0 },
--        tags = { default = function() return {} end },  -- called per instance
--        "email",                                      -- optional, no default
--      },
--      computed = { age_next = function(rec) return rec.age and rec.age + 1 end },
--      sanitizers = { age = function(rec, value, opts) return math.max(value, opts.min_age or 0) end },
--      strict = false,                                 -- true: unknown keys raise
--    }
--    local u = User{ name = "x", age = 33 }             -- u.age_next == 34
--    u:set("age", 40)                                  -- sanitized, age_next recomputed
--
-- Instances keep their data as plain fields, so `pairs(u)` yields only data and
-- a record goes to the codec as it is. `nil` means absent; `dynamo.NULL` (or any
-- other value) is kept as a value.
--
-- Definition keys: `name`, `fields`, `computed`, `sanitizers`, `strict`, `loose`;
-- any other key (usually a method) becomes a class member. A subclass merges its
-- definition over its parent's: for the same name the child wins, and `false`
-- removes an inherited field, computed key or sanitizer.
--
-- * `fields[name]`: `true` / `{}` (optional), `{required = true}`, `{default = v}`
--   (plain tables are deep-copied per instance, functions are called per instance
--   with no argument). An array entry `"email"` declares an optional field.
-- * `computed[name] = function(rec) -> value`: recomputed after construction and
--   after every `set`, `update` and `sanitize`, in name order; nil leaves it absent.
--   Computed keys given to the constructor or to `update` are ignored.
-- * `sanitizers[name] = function(rec, value, opts) -> value` (or an array of such
--   functions, applied in order): run on construction, `set`, `update` and
--   `sanitize(opts)` for present values only; returning nil removes the field.
-- * `strict = true`: an unknown key raises instead of being ignored.
-- * `loose = true`: any key is accepted (what `DynamoRecord.LooseRecord` is);
--   nothing is remembered at class level, so instances never share keys.
--
-- Changing a record: `rec:set(k, v)` and `rec:update(t)` sanitize, check and
-- recompute. A plain assignment `rec.k = v` stores the raw value (no sanitizer,
-- no recompute); when it creates a key it is still checked: an undeclared key
-- (unless loose) or a computed key raises. Reading an absent declared field gives
-- nil. Names of declared fields shadow methods of the same name; call such
-- methods through the class (`DynamoRecord.update(rec, t)`).
--
-- Schema violations raise `dynamo.errors` objects with code `Validation` and the
-- fields `record_class` and `field`.
-- @classmod dynamo.DynamoRecord
local class = require("dynamo.class")
local errors = require("dynamo.errors")
local util = require("dynamo.util")
local values_equal, deep_copy = util.values_equal, util.deep_copy

local type, pairs, ipairs, next, select = type, pairs, ipairs, next, select
local tostring, rawget, rawset, rawequal = tostring, rawget, rawset, rawequal
local getmetatable = getmetatable
local math_type = math.type
local string_format, string_sub, string_match = string.format, string.sub, string.match
local table_sort, table_concat = table.sort, table.concat

local DynamoRecord = class.new("DynamoRecord")

local FIELD_SPEC_KEYS = { required = true, default = true }

local function show(v)
  if type(v) == "string" then return string_format("%q", v) end
  return tostring(v)
end

local function schema_error(cls_name, field, message)
  errors.raise("Validation", cls_name .. "." .. tostring(field) .. " " .. message,
    { record_class = cls_name, field = field })
end

local function def_error(cls_name, message)
  errors.raise("Validation", cls_name .. ": " .. message, { record_class = cls_name })
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table_sort(keys)
  return keys
end

local function is_plain(v)
  return type(v) == "table" and getmetatable(v) == nil
end

-- ---------------------------------------------------------------- schema

local function empty_schema(name)
  return {
    name = name, fields = {}, computed = {}, sanitizers = {},
    strict = false, loose = false,
  }
end

local function finish_schema(schema)
  local required, optional, defaults = {}, {}, {}
  for name, spec in pairs(schema.fields) do
    if spec.required then required[#required + 1] = name else optional[#optional + 1] = name end
    if spec.has_default then defaults[#defaults + 1] = name end
  end
  table_sort(required)
  table_sort(optional)
  table_sort(defaults)
  schema.required_names = required
  schema.optional_names = optional
  schema.default_names = defaults
  schema.computed_names = sorted_keys(schema.computed)
  schema.sanitized_names = sorted_keys(schema.sanitizers)
  return schema
end

local function check_field_name(cls_name, name)
  if type(name) ~= "string" or name == "" then
    def_error(cls_name, "field names must be non-empty strings, got " .. show(name))
  end
end

local function merge_schema(parent, def, cls_name)
  local schema = empty_schema(cls_name)
  for k, v in pairs(parent.fields) do schema.fields[k] = v end
  for k, v in pairs(parent.computed) do schema.computed[k] = v end
  for k, v in pairs(parent.sanitizers) do schema.sanitizers[k] = v end
  schema.strict, schema.loose = parent.strict, parent.loose

  local fields, computed, sanitizers = def.fields, def.computed, def.sanitizers
  if fields ~= nil and type(fields) ~= "table" then
    def_error(cls_name, "fields must be a table, got " .. type(fields))
  end
  if computed ~= nil and type(computed) ~= "table" then
    def_error(cls_name, "computed must be a table, got " .. type(computed))
  end
  if sanitizers ~= nil and type(sanitizers) ~= "table" then
    def_error(cls_name, "sanitizers must be a table, got " .. type(sanitizers))
  end

  for key, spec in pairs(fields or {}) do
    local name = key
    if math_type(key) == "integer" then name, spec = spec, true end
    check_field_name(cls_name, name)
    if computed and computed[name] then
      def_error(cls_name, show(name) .. " cannot be both a field and computed")
    end
    if spec == false then
      schema.fields[name] = nil
    else
      if spec == true then spec = {} end
      if type(spec) ~= "table" then
        def_error(cls_name, "field " .. show(name) .. " must be declared as true or a table, got "
          .. type(spec))
      end
      for k in pairs(spec) do
        if not FIELD_SPEC_KEYS[k] then
          def_error(cls_name, "field " .. show(name) .. " has an unknown option " .. show(k))
        end
      end
      if spec.required and spec.default ~= nil then
        def_error(cls_name, "field " .. show(name) .. " cannot be required and have a default")
      end
      schema.fields[name] = {
        required = spec.required and true or false,
        default = spec.default,
        has_default = spec.default ~= nil,
      }
      schema.computed[name] = nil
    end
  end

  for name, fn in pairs(computed or {}) do
    check_field_name(cls_name, name)
    if fn == false then
      schema.computed[name] = nil
    else
      if type(fn) ~= "function" then
        def_error(cls_name, "computed " .. show(name) .. " must be a function, got " .. type(fn))
      end
      schema.computed[name] = fn
      schema.fields[name] = nil
      schema.sanitizers[name] = nil
    end
  end

  for name, fns in pairs(sanitizers or {}) do
    check_field_name(cls_name, name)
    if fns == false then
      schema.sanitizers[name] = nil
    else
      local list = {}
      if type(fns) == "function" then
        list[1] = fns
      elseif type(fns) == "table" then
        for i, fn in ipairs(fns) do
          if type(fn) ~= "function" then
            def_error(cls_name, "sanitizer " .. i .. " of " .. show(name) .. " must be a function, got "
              .. type(fn))
          end
          list[i] = fn
        end
      else
        def_error(cls_name, "sanitizer of " .. show(name) .. " must be a function or an array of functions, got "
          .. type(fns))
      end
      schema.sanitizers[name] = list
    end
  end

  if def.strict ~= nil then
    if type(def.strict) ~= "boolean" then def_error(cls_name, "strict must be a boolean") end
    schema.strict = def.strict
  end
  if def.loose ~= nil then
    if type(def.loose) ~= "boolean" then def_error(cls_name, "loose must be a boolean") end
    schema.loose = def.loose
  end
  if schema.strict and schema.loose then
    def_error(cls_name, "a record class cannot be both strict and loose")
  end
  for name in pairs(schema.sanitizers) do
    if schema.computed[name] then
      def_error(cls_name, "computed key " .. show(name) .. " cannot have a sanitizer")
    end
    if not schema.fields[name] and not schema.loose then
      def_error(cls_name, "sanitizer for " .. show(name) .. ", which is not a field")
    end
  end
  return finish_schema(schema)
end

local function schema_of(self)
  local mt = getmetatable(self)
  local schema = mt and rawget(mt, "_schema")
  if not schema then
    errors.raise("Validation", "expected a DynamoRecord instance, got " .. type(self))
  end
  return schema
end

-- ---------------------------------------------------------------- instance helpers

local function sanitize_value(self, schema, key, value, opts)
  local list = schema.sanitizers[key]
  if list == nil or value == nil then return value end
  for i = 1, #list do
    value = list[i](self, value, opts)
    if value == nil then return nil end
  end
  return value
end

local function recompute(self, schema)
  local names, computed = schema.computed_names, schema.computed
  for i = 1, #names do
    local name = names[i]
    rawset(self, name, (computed[name](self)))
  end
end

local function check_required(self, schema)
  local names = schema.required_names
  for i = 1, #names do
    if rawget(self, names[i]) == nil then
      schema_error(schema.name, names[i], "must be set")
    end
  end
end

-- Is `key` accepted as data? Raises for a strict record, returns false to skip.
local function accept_key(schema, key)
  if schema.computed[key] then return false end
  if schema.fields[key] then return true end
  if schema.loose then
    if type(key) ~= "string" then
      schema_error(schema.name, key, "is not a valid field name (strings only)")
    end
    return true
  end
  if schema.strict then schema_error(schema.name, key, "is not a field") end
  return false
end

-- ---------------------------------------------------------------- class setup

local format_value

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta == tb and (ta == "string" or ta == "number") then return a < b end
  if ta == tb then return tostring(a) < tostring(b) end
  return ta < tb
end

-- Renders the raw contents of `t`: `{1, 2}` for a sequence, `{a=1, ["b c"]=2}` otherwise.
local function format_table(t, depth)
  if depth > 4 then return "{...}" end
  local n, count = #t, 0
  for _ in next, t do count = count + 1 end
  local parts = {}
  if count == n then
    for i = 1, n do parts[i] = format_value(rawget(t, i), depth + 1) end
  else
    local keys = {}
    for k in next, t do keys[#keys + 1] = k end
    table_sort(keys, key_order)
    for _, k in ipairs(keys) do
      local shown_key
      if type(k) == "string" and string_match(k, "^[%a_][%w_]*$") then
        shown_key = k
      else
        shown_key = "[" .. format_value(k, depth + 1) .. "]"
      end
      parts[#parts + 1] = shown_key .. "=" .. format_value(rawget(t, k), depth + 1)
    end
  end
  return "{" .. table_concat(parts, ", ") .. "}"
end

format_value = function(v, depth)
  if type(v) == "string" then return string_format("%q", v) end
  if is_plain(v) then return format_table(v, depth) end
  return tostring(v)
end

local function install(cls, schema)
  cls._schema = schema
  local fields, computed, loose = schema.fields, schema.computed, schema.loose
  local name = schema.name

  cls.__index = function(_, key)
    if fields[key] ~= nil or computed[key] ~= nil then return nil end
    local v = cls[key]
    if type(v) == "function" and not (type(key) == "string" and string_sub(key, 1, 2) == "__") then
      return v
    end
    return nil
  end

  cls.__newindex = function(self, key, value)
    if value == nil then return end
    if computed[key] ~= nil then schema_error(name, key, "is computed and cannot be set") end
    if fields[key] == nil then
      if not loose then schema_error(name, key, "is not a field") end
      if type(key) ~= "string" then
        schema_error(name, key, "is not a valid field name (strings only)")
      end
    end
    rawset(self, key, value)
  end

  cls.__tostring = function(self)
    return name .. "(" .. format_table(self, 0) .. ")"
  end

  cls.__eq = function(a, b)
    if rawequal(a, b) then return true end
    local count = 0
    for k, v in next, a do
      count = count + 1
      local w = rawget(b, k)
      if w == nil or not values_equal(v, w) then return false end
    end
    for _ in next, b do count = count - 1 end
    return count == 0
  end

  --- Field names: required ones sorted, then the others sorted (computed keys excluded).
  cls.get_field_names = function()
    local out = {}
    for _, n in ipairs(schema.required_names) do out[#out + 1] = n end
    for _, n in ipairs(schema.optional_names) do out[#out + 1] = n end
    return out
  end
  --- Required field names, sorted.
  cls.get_required_field_names = function()
    local out = {}
    for i, n in ipairs(schema.required_names) do out[i] = n end
    return out
  end
  --- Computed key names, sorted.
  cls.get_computed_field_names = function()
    local out = {}
    for i, n in ipairs(schema.computed_names) do out[i] = n end
    return out
  end
  --- True when any key is accepted.
  cls.is_loose = function() return loose end
  --- True when an unknown key raises.
  cls.is_strict = function() return schema.strict end
  return cls
end

--- Makes a record class from a definition (see the module description).
-- Raises a `Validation` error for a malformed definition.
-- @tparam table def
function DynamoRecord.extend(base, def)
  def = def or {}
  if type(def) ~= "table" then
    def_error(tostring(base.__name), "a definition must be a table, got " .. type(def))
  end
  local cls_name = def.name or def.__name or base.__name
  if type(cls_name) ~= "string" or cls_name == "" then
    def_error(tostring(base.__name), "name must be a non-empty string")
  end
  local schema = merge_schema(rawget(base, "_schema"), def, cls_name)
  local members = {}
  for k, v in pairs(def) do
    if k ~= "name" then members[k] = v end
  end
  members.__name = cls_name
  local cls = class.extend(base, members)
  return install(cls, schema)
end

--- Builds a record from zero or more tables (later ones win), then applies the
-- schema: defaults, known keys (unknown ones ignored, or an error when strict),
-- sanitizers, required fields, computed keys.
-- @param ... tables or records; nil arguments are skipped
function DynamoRecord:init(...)
  local schema = schema_of(self)
  local fields = schema.fields
  for _, name in ipairs(schema.default_names) do
    local default = fields[name].default
    if type(default) == "function" then
      rawset(self, name, (default()))
    else
      rawset(self, name, deep_copy(default))
    end
  end
  for i = 1, select("#", ...) do
    local src = select(i, ...)
    if src ~= nil then
      if type(src) ~= "table" then
        errors.raise("Validation", schema.name .. ": argument " .. i .. " must be a table, got "
          .. type(src), { record_class = schema.name })
      end
      for k, v in next, src do
        if accept_key(schema, k) then rawset(self, k, v) end
      end
    end
  end
  local opts = {}
  for _, name in ipairs(schema.sanitized_names) do
    rawset(self, name, (sanitize_value(self, schema, name, rawget(self, name), opts)))
  end
  check_required(self, schema)
  recompute(self, schema)
end

--- Sets one field: sanitizes the value, checks the key, recomputes computed keys.
-- `nil` removes the field (an error for a required field). Returns the record.
-- @tparam string key
-- @param value
function DynamoRecord:set(key, value)
  local schema = schema_of(self)
  if schema.computed[key] then schema_error(schema.name, key, "is computed and cannot be set") end
  if not schema.fields[key] then
    if not schema.loose then schema_error(schema.name, key, "is not a field") end
    if type(key) ~= "string" then
      schema_error(schema.name, key, "is not a valid field name (strings only)")
    end
  end
  value = sanitize_value(self, schema, key, value, {})
  if value == nil and schema.fields[key] and schema.fields[key].required then
    schema_error(schema.name, key, "must be set")
  end
  rawset(self, key, value)
  recompute(self, schema)
  return self
end

--- Merges one or more tables into the record (later ones win). Computed keys are
-- skipped, unknown keys are skipped (an error when strict); values are sanitized,
-- then computed keys recomputed. Nothing changes when it raises. Returns the record.
function DynamoRecord:update(...)
  local schema = schema_of(self)
  local pending, order = {}, {}
  for i = 1, select("#", ...) do
    local src = select(i, ...)
    if src ~= nil then
      if type(src) ~= "table" then
        errors.raise("Validation", schema.name .. ": argument " .. i .. " to update must be a table, got "
          .. type(src), { record_class = schema.name })
      end
      for k, v in next, src do
        if accept_key(schema, k) then
          if pending[k] == nil then order[#order + 1] = k end
          pending[k] = v
        end
      end
    end
  end
  table_sort(order, function(a, b) return tostring(a) < tostring(b) end)
  local opts = {}
  for _, k in ipairs(order) do
    local v = sanitize_value(self, schema, k, pending[k], opts)
    if v == nil and schema.fields[k] and schema.fields[k].required then
      schema_error(schema.name, k, "must be set")
    end
    pending[k] = v
  end
  for _, k in ipairs(order) do rawset(self, k, pending[k]) end
  recompute(self, schema)
  return self
end

--- Re-runs every sanitizer on the present fields with `opts` (passed to each
-- sanitizer as its third argument), then recomputes computed keys. Returns the record.
-- @tparam[opt] table opts
function DynamoRecord:sanitize(opts)
  local schema = schema_of(self)
  opts = opts or {}
  local names = schema.sanitized_names
  for i = 1, #names do
    local name = names[i]
    rawset(self, name, (sanitize_value(self, schema, name, rawget(self, name), opts)))
  end
  check_required(self, schema)
  recompute(self, schema)
  return self
end

--- Checks the record as it stands (after plain assignments): required fields are
-- set and, for a strict class, no undeclared key is present. Returns the record.
function DynamoRecord:validate()
  local schema = schema_of(self)
  check_required(self, schema)
  if schema.strict then
    for k in next, self do
      if not schema.fields[k] and not schema.computed[k] then
        schema_error(schema.name, k, "is not a field")
      end
    end
  end
  return self
end

--- A plain table (no metatable) with the record's data; values are shared (shallow copy).
function DynamoRecord:to_table()
  local out = {}
  for k, v in next, self do out[k] = v end
  return out
end

install(DynamoRecord, finish_schema(empty_schema("DynamoRecord")))

--- A record class that accepts any key (the reference's LooseDictClass).
-- Extend it to add required fields, defaults, sanitizers or computed keys.
DynamoRecord.LooseRecord = DynamoRecord:extend{ name = "LooseRecord", loose = true }

return DynamoRecord
