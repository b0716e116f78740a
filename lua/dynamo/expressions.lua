--- DynamoDB expressions: conditions, projections, updates, and rendering a
-- request's expressions at once.
--
--   local E = require("dynamo.expressions")
--   local C = E.ConditionExpression
--   local filter = C("age", "<=") & ~C("name", "begins_with", "prefix")
--   local r = E.render_request{ filter = filter, data = { age = 45, prefix = "J" } }
--   -- r.FilterExpression == "#aaa <= :aaa AND NOT begins_with(#aab, :aab)"
--   -- r.ExpressionAttributeNames == { ["#aaa"] = "age", ["#aab"] = "name" }
--   -- r.ExpressionAttributeValues == { [":aaa"] = 45, [":aab"] = "J" }
--
-- Expressions hold attribute paths and value *names*: a value comes from the
-- request's `data` table by name (the name defaults to the path text), or is a
-- constant given with `literal(v)`. Every expression is compiled by the C core
-- when it is built (paths parsed once); `&`, `|`, `~` build new compiled
-- expressions and keep the grouping. Bad input raises a dynamo.errors object
-- with code "Validation".
--
-- Paths: `a.b.c` walks maps, `a[2]` indexes lists; a name that holds '.', '[',
-- ']' or '\' is written with a backslash before that character (`escape(name)`
-- does it; `path("a.b", 2, "c")` builds "a\.b[2].c").
-- @module dynamo.expressions
local class = require("dynamo.class")
local errors = require("dynamo.errors")
local core = require("dynamo.core")

local cx = core.expr
local c_condition, c_projection, c_update = cx.condition, cx.projection, cx.update
local c_combine, c_negate, c_template, c_kind = cx.combine, cx.negate, cx.template, cx.kind
local type, select, pairs, ipairs, tostring, setmetatable, getmetatable =
  type, select, pairs, ipairs, tostring, setmetatable, getmetatable
local math_type, table_sort, table_concat, string_format =
  math.type, table.sort, table.concat, string.format

local M = {}

local function fail(message)
  errors.raise("Validation", message)
end

local function describe(v)
  if type(v) == "string" then return string_format("%q", v) end
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__name then return tostring(mt.__name) end
  return type(v)
end

---------------------------------------------------------------------------
-- literals, size(), paths

local Literal = { __name = "dynamo.literal" }
Literal.__index = Literal
Literal.__tostring = function(l) return "literal(" .. l.text .. ")" end

-- How a literal shows in templates and messages: Lua syntax, shallow.
local function show(v, depth)
  local t = type(v)
  if t == "string" then return string_format("%q", v) end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  if depth > 2 then return "{...}" end
  local parts, n = {}, #v
  for i = 1, n do parts[i] = show(v[i], depth + 1) end
  local keys = {}
  for k in pairs(v) do
    if not (math_type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table_sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. show(k, depth + 1) .. "]")
    parts[#parts + 1] = key .. " = " .. show(v[k], depth + 1)
  end
  return "{" .. table_concat(parts, ", ") .. "}"
end

--- A constant operand instead of a value name: `C("age", ">", literal(21))`.
-- Any value the codec can write (string, number, boolean, table, dynamo types).
function M.literal(value)
  local t = type(value)
  if value == nil or t == "function" or t == "thread" then
    fail("dynamo.literal needs a value that DynamoDB can store, got " .. t)
  end
  return setmetatable({ value = value, text = show(value, 1) }, Literal)
end

--- True when v was made by literal().
function M.is_literal(v) return getmetatable(v) == Literal end
local is_literal = M.is_literal

local Size = { __name = "dynamo.size" }
Size.__index = Size
Size.__tostring = function(s) return "size(" .. s.path .. ")" end

--- `size(path)` as the key of a ConditionExpression compares the size of an
-- attribute: `C(size("tags"), ">", literal(2))` renders `size(#tags) > :aaa`.
-- Works with = <> < <= > >= BETWEEN IN.
function M.size(path)
  if type(path) ~= "string" then fail("dynamo.size needs an attribute path, got " .. describe(path)) end
  return setmetatable({ path = path }, Size)
end

--- Escapes one attribute name so that it is a single path element ("a.b" -> "a\.b").
function M.escape(name)
  if type(name) ~= "string" then fail("escape needs a string, got " .. describe(name)) end
  return cx.escape(name)
end

--- Builds a path from elements: names (strings, escaped) and list indexes
-- (non-negative integers): `path("a.b", 2, "c")` -> "a\.b[2].c".
function M.path(...)
  local n = select("#", ...)
  if n == 0 then fail("path needs at least one name") end
  local parts = {}
  for i = 1, n do
    local e = select(i, ...)
    if type(e) == "string" then
      parts[#parts + 1] = (i > 1 and "." or "") .. cx.escape(e)
    elseif math_type(e) == "integer" and e >= 0 and i > 1 then
      parts[#parts + 1] = "[" .. e .. "]"
    else
      fail(("path element %d must be a name%s, got %s"):format(i, i > 1 and " or a list index" or "",
        describe(e)))
    end
  end
  return table_concat(parts)
end

---------------------------------------------------------------------------
-- classes

local Expression = class.new("Expression")
M.Expression = Expression

local ConditionExpression = Expression:extend{ __name = "ConditionExpression" }
local ProjectionExpression = Expression:extend{ __name = "ProjectionExpression" }
local UpdateExpression = Expression:extend{ __name = "UpdateExpression" }
M.ConditionExpression, M.ProjectionExpression, M.UpdateExpression =
  ConditionExpression, ProjectionExpression, UpdateExpression

local class_of_kind = {
  condition = ConditionExpression, projection = ProjectionExpression, update = UpdateExpression,
}

local function wrap(c, fields)
  local o = fields or {}
  o._c = c
  return setmetatable(o, class_of_kind[c_kind(c)])
end

local function is_expression(v)
  return type(v) == "table" and getmetatable(v) ~= nil and class.is_instance(v, Expression) and v._c ~= nil
end
M.is_expression = is_expression

--- The readable form: names as `#name`, value names as `:name`, literals as Lua values.
-- It is what tostring shows; requests use render_request.
function Expression:render() return c_template(self._c) end
Expression.__tostring = function(self) return c_template(self._c) end

--- The distinct attribute names (path segments) the expression uses, sorted.
function Expression:attribute_names() return cx.segments(self._c) end

--- The value names the expression reads from data (literals excluded), in first-use order.
function Expression:value_names() return cx.value_names(self._c) end

-- Compiled expressions never change, so equal constructions can share one
-- object: combinations are remembered per operand pair (weak keys: an entry
-- lives as long as both operands), constructions from names by their text
-- (a bounded table, emptied when full). Sharing also lets render_request
-- reuse its last render when the same expressions come again.
local WEAK_KEYS = { __mode = "k" }
local combined = { AND = setmetatable({}, WEAK_KEYS), OR = setmetatable({}, WEAK_KEYS) }
local negated = setmetatable({}, WEAK_KEYS)
local built, built_count, BUILT_MAX = {}, 0, 1024
local NO_VALUE = {} -- stands for a nil value in `built`

-- built[key][operator][value or NO_VALUE]
local function lookup(key, operator, value)
  local t = built[key]
  t = t and t[operator]
  return t and t[value == nil and NO_VALUE or value]
end

local function remember(key, operator, value, expr)
  if built_count >= BUILT_MAX then built, built_count = {}, 0 end
  local by_key = built[key]
  if not by_key then
    by_key = {}
    built[key] = by_key
  end
  local by_op = by_key[operator]
  if not by_op then
    by_op = {}
    by_key[operator] = by_op
  end
  by_op[value == nil and NO_VALUE or value] = expr
  built_count = built_count + 1
  return expr
end

local function combine(join, a, b)
  if not is_expression(a) or not is_expression(b) then
    fail(("cannot combine %s with %s"):format(describe(a), describe(b)))
  end
  local by_a = combined[join][a]
  local hit = by_a and by_a[b]
  if hit then return hit end
  local c, err = c_combine(join, a._c, b._c)
  if not c then fail(err) end
  local r = wrap(c, { operator = join })
  if not by_a then
    by_a = setmetatable({}, WEAK_KEYS)
    combined[join][a] = by_a
  end
  by_a[b] = r
  return r
end

Expression.__band = function(a, b) return combine("AND", a, b) end
Expression.__bor = function(a, b) return combine("OR", a, b) end
Expression.__bnot = function(a)
  if not is_expression(a) then fail("cannot negate " .. describe(a)) end
  local hit = negated[a]
  if hit then return hit end
  local c, err = c_negate(a._c)
  if not c then fail(err) end
  local r = wrap(c, { operator = "NOT" })
  negated[a] = r
  return r
end
for _, cls in pairs(class_of_kind) do
  cls.__band, cls.__bor, cls.__bnot = Expression.__band, Expression.__bor, Expression.__bnot
  cls.__tostring = Expression.__tostring
end

local function check_operand(v, what)
  if type(v) == "string" then
    if v == "" then fail(what .. " must not be an empty name") end
    return v
  end
  if is_literal(v) then return v end
  fail(("%s must be a value name (string) or dynamo.literal(v), got %s"):format(what, describe(v)))
end

local FLIP = { attribute_exists = "attribute_not_exists", attribute_not_exists = "attribute_exists" }

--- A condition: `ConditionExpression(key, operator, value)`.
-- `key` is an attribute path or `size(path)`; `operator` (default "=") is one
-- of = <> < <= > >= IN BETWEEN begins_with contains attribute_exists
-- attribute_not_exists attribute_type. `value` names an entry of the data
-- (default: the key's text) or is a literal(); BETWEEN takes two of them
-- ({ "low", "high" }); IN takes one (a list or set value expands to one
-- placeholder per element) or a list of them; attribute_exists and
-- attribute_not_exists take none, and `false` flips one into the other;
-- attribute_type needs the type ("S", "N", ...) as a name or a literal.
function ConditionExpression:init(key, operator, value)
  -- the common form, names only: one shared object per (key, operator, value)
  local memo = type(key) == "string" and type(operator or "=") == "string"
    and (value == nil or type(value) == "string" or type(value) == "boolean")
    and getmetatable(self) == ConditionExpression
  if memo then
    local hit = lookup(key, operator or "=", value)
    if hit then return hit end
  end
  local operator_given, value_given = operator or "=", value
  operator = operator == nil and "=" or operator
  if type(operator) ~= "string" then fail("ConditionExpression operator must be a string, got " .. describe(operator)) end
  local path, size_of
  if getmetatable(key) == Size then
    path, size_of = key.path, true
  elseif type(key) == "string" then
    path, size_of = key, false
  else
    fail("ConditionExpression key must be an attribute path or dynamo.size(path), got " .. describe(key))
  end
  local c, err
  if FLIP[operator] then
    if value == false then
      operator = FLIP[operator]
    elseif value ~= nil and value ~= true then
      fail(("operator %s takes no value (false flips it), got %s"):format(operator, describe(value)))
    end
    value = true
    c, err = c_condition(path, operator, size_of)
  elseif operator == "BETWEEN" then
    if type(value) ~= "table" or is_literal(value) or #value ~= 2 then
      fail("operator BETWEEN requires a list of two values, got " .. describe(value))
    end
    c, err = c_condition(path, operator, size_of, check_operand(value[1], "BETWEEN value"),
      check_operand(value[2], "BETWEEN value"))
  elseif operator == "IN" and type(value) == "table" and not is_literal(value) then
    local ops = {}
    for i = 1, #value do ops[i] = check_operand(value[i], "IN value") end
    if #ops == 0 then fail("operator IN needs at least one value") end
    c, err = c_condition(path, operator, size_of, table.unpack(ops))
  else
    if value == nil then
      if operator == "attribute_type" then
        fail('attribute_type needs the type: a value name or dynamo.literal("S")')
      end
      value = path
    end
    c, err = c_condition(path, operator, size_of, check_operand(value, "ConditionExpression value"))
  end
  if not c then fail(err) end
  self._c = c
  self.key, self.operator, self.value = key, operator, value
  if memo then remember(key, operator_given, value_given, self) end
end

--- A projection of attribute paths: `ProjectionExpression("a", "b.c", "list[0]")`
-- (or one array of paths). Duplicates and paths inside another listed path are
-- dropped; `&` merges two projections.
function ProjectionExpression:init(...)
  local paths = { ... }
  if select("#", ...) == 1 and type(paths[1]) == "table" then paths = paths[1] end
  if #paths == 0 then fail("ProjectionExpression needs at least one path") end
  for i = 1, #paths do
    if type(paths[i]) ~= "string" then
      fail(("ProjectionExpression path %d must be a string, got %s"):format(i, describe(paths[i])))
    end
  end
  local c, err = c_projection(table.unpack(paths))
  if not c then fail(err) end
  self._c = c
end

-- UpdateExpression options in the order their items render inside a clause.
local UPDATE_OPTIONS = {
  "update", "set_if_not_exists", "increment", "decrement", "append", "prepend", "add", "delete", "remove",
}
local IS_UPDATE_OPTION = {}
for _, k in ipairs(UPDATE_OPTIONS) do IS_UPDATE_OPTION[k] = true end

local function add_items(items, action, list, option)
  if list == nil then return end
  if type(list) ~= "table" then fail(("UpdateExpression %s must be a table, got %s"):format(option, describe(list))) end
  local n = #list
  for i = 1, n do
    local e = list[i]
    if type(e) == "string" then
      items[#items + 1] = { action, e, action ~= "remove" and e or nil }
    elseif type(e) == "table" and not is_literal(e) and type(e[1]) == "string" and action ~= "remove" then
      -- { path, value }: the value defaults to the path's text
      items[#items + 1] = { action, e[1], check_operand(e[2] == nil and e[1] or e[2], option .. " value") }
    else
      fail(("UpdateExpression %s entry %d must be a path%s, got %s"):format(option, i,
        action ~= "remove" and " or { path, value }" or "", describe(e)))
    end
  end
  -- path = value entries, in byte order of the paths so requests are reproducible
  local keys = {}
  for k in pairs(list) do
    if type(k) == "string" then
      keys[#keys + 1] = k
    elseif not (math_type(k) == "integer" and k >= 1 and k <= n) then
      fail(("UpdateExpression %s has a key that is not a path: %s"):format(option, describe(k)))
    end
  end
  table_sort(keys)
  for _, k in ipairs(keys) do
    local v = list[k]
    if action == "remove" then
      if v ~= true then fail(("UpdateExpression remove takes paths, got %s = %s"):format(k, describe(v))) end
      items[#items + 1] = { action, k }
    else
      items[#items + 1] = { action, k, check_operand(v == true and k or v, option .. " value") }
    end
  end
end

--- An update: `UpdateExpression{ update = {...}, set_if_not_exists = {...},
-- add = {...}, delete = {...}, remove = {...}, increment = {...},
-- decrement = {...}, append = {...}, prepend = {...} }`, or
-- `UpdateExpression("a", "b", { remove = {"c"} })` (leading strings and the
-- array part are `update` paths). Entries are paths (the value name is the
-- path's text), `{ path, value }` pairs, or `path = value` keys (taken in byte
-- order); a value is a name or a literal(). Renders
-- `SET p = :v, p = if_not_exists(p, :v), p = p + :v, p = p - :v,
-- p = list_append(p, :v), p = list_append(:v, p) ADD p :v DELETE p :v REMOVE p`.
-- ADD needs a number or a set, DELETE a set, increment/decrement a number,
-- append/prepend a list (checked when rendered). `&` merges two updates.
function UpdateExpression:init(...)
  local n = select("#", ...)
  local spec, positional = nil, {}
  for i = 1, n do
    local a = select(i, ...)
    if type(a) == "string" then
      positional[#positional + 1] = a
    elseif type(a) == "table" and i == n and not is_literal(a) then
      spec = a
    else
      fail(("UpdateExpression argument %d must be a path or the options table, got %s"):format(i, describe(a)))
    end
  end
  spec = spec or {}
  for k in pairs(spec) do
    if type(k) == "string" and not IS_UPDATE_OPTION[k] then
      fail("unknown UpdateExpression option " .. k .. " (valid: " .. table_concat(UPDATE_OPTIONS, ", ") .. ")")
    elseif type(k) ~= "string" and not (math_type(k) == "integer" and k >= 1 and k <= #spec) then
      fail("UpdateExpression options have a bad key: " .. describe(k))
    end
  end
  local items = {}
  add_items(items, "update", positional, "update")
  local array = {}
  for i = 1, #spec do array[i] = spec[i] end
  add_items(items, "update", array, "update")
  for _, option in ipairs(UPDATE_OPTIONS) do add_items(items, option, spec[option], option) end
  if #items == 0 then fail("UpdateExpression needs at least one action") end
  local c, err = c_update(items)
  if not c then fail(err) end
  self._c = c
end

---------------------------------------------------------------------------
-- key conditions and rendering

local SORT_OPERATORS = { ["="] = true, ["<"] = true, ["<="] = true, [">"] = true, [">="] = true,
                         BETWEEN = true, begins_with = true }

--- The key condition of a query: `partition_key_name = :pk`, AND-ed with a
-- sort key condition when sort_key_name is given (operator default "=":
-- = < <= > >= BETWEEN begins_with). Values are named by the key names; BETWEEN
-- reads `<sort key>_low` and `<sort key>_high` unless sort_values names two.
function M.key_condition(partition_key_name, sort_key_name, sort_operator, sort_values)
  if type(partition_key_name) ~= "string" then
    fail("key_condition needs the partition key name, got " .. describe(partition_key_name))
  end
  local kc = ConditionExpression(partition_key_name, "=")
  if sort_key_name == nil then
    if sort_operator ~= nil then fail("key_condition has a sort key operator but no sort key name") end
    return kc
  end
  if type(sort_key_name) ~= "string" then fail("key_condition sort key name must be a string, got " .. describe(sort_key_name)) end
  local op = sort_operator or "="
  if not SORT_OPERATORS[op] then
    fail(('sort key operator %s is not supported in key conditions (valid: =, <, <=, >, >=, BETWEEN, begins_with)')
      :format(describe(op)))
  end
  if op == "BETWEEN" and sort_values == nil then sort_values = { sort_key_name .. "_low", sort_key_name .. "_high" } end
  return kc & ConditionExpression(sort_key_name, op, sort_values)
end

--- Renders the expressions of one request:
-- `render_request{ key_condition =, filter =, condition =, update =, projection =, data = }`
-- returns a table with the present fields among KeyConditionExpression,
-- FilterExpression, ConditionExpression, UpdateExpression,
-- ProjectionExpression, ExpressionAttributeNames, ExpressionAttributeValues
-- (values are the Lua values from data and literals, not yet marshalled).
-- Raises a Validation error naming the expression and the missing or bad item.
M.render_request = cx.raising_render(fail)

return M
