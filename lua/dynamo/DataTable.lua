--- A column-oriented table of records: column name -> array of values.
--
--    local DataTable = require("dynamo.DataTable")
--    local dt = DataTable{ pk = { "a", "b" }, age = { 1, 2 } }
--    dt:add_record({ pk = "c", name = "Jo" })   -- chains: returns dt
--    #dt                                        -- 3 records
--    for record, i in dt:get_records() do ... end
--
-- Records are numbered from 1. `#dt` is the number of records (the length of
-- the longest column). A missing cell holds the sentinel `DataTable.NOT_SET`
-- (tostring "NOT_SET"): it reads back as nil, and a record returned by
-- `get_record`/`get_records` simply lacks that field, so writing the records
-- never stores NULL for a missing cell. A value such as `dynamo.NULL` is an
-- ordinary value and is kept (it means "write NULL").
--
-- Lua arrays cannot hold nil: a nil inside a column given by the user (a hole,
-- `{1, nil, 3}`) becomes NOT_SET. Trailing nils are only seen when the array
-- carries its length in `n` (as `table.pack` makes it).
--
-- Column names are strings, compared case-sensitively. The columns of a base
-- table are ordered by name; columns added later keep the order in which they
-- appear (the new keys of one record are added in name order).
--
-- `record_class` (optional): every record going in (`add_record`, `add_table`)
-- and coming out (`get_record`, `get_records`) goes through
-- `record_class(record)`, unless it already is an instance of it.
--
-- Misuse raises `dynamo.errors` objects with code `DataTableError`.
-- @classmod dynamo.DataTable
local class = require("dynamo.class")
local errors = require("dynamo.errors")
local util = require("dynamo.util")
local values_equal, deep_copy = util.values_equal, util.deep_copy

local type, pairs, ipairs, next, select = type, pairs, ipairs, next, select
local tostring, rawequal, rawget = tostring, rawequal, rawget
local getmetatable, setmetatable = getmetatable, setmetatable
local math_type, math_tointeger, math_huge = math.type, math.tointeger, math.huge
local string_format = string.format
local table_sort, table_concat = table.sort, table.concat

local DataTable = class.new("DataTable")

--- Sentinel of a missing cell.
local NOT_SET = setmetatable({}, {
  __name = "dynamo.DataTable.NOT_SET",
  __tostring = function() return "NOT_SET" end,
  __newindex = function() error("DataTable.NOT_SET is read-only", 2) end,
})
DataTable.NOT_SET = NOT_SET

--- Operands of `filter_records`.
DataTable.Filter = { EQUALS = "equals", NOT_EQUALS = "not_equals" }

local function fail(message, fields)
  errors.raise("DataTableError", message, fields)
end

local function show(v)
  if type(v) == "string" then return string_format("%q", v) end
  return tostring(v)
end

-- Copies a user array into a fresh array without holes (nil -> NOT_SET).
-- Returns nil and a reason when `values` is not an array.
local function to_array(values)
  if type(values) ~= "table" then return nil, "got " .. type(values) end
  if class.is_instance(values, DataTable) then
    return nil, "got a DataTable"
  end
  local n = 0
  for k in next, values do
    if type(k) == "number" and math_tointeger(k) == k and k >= 1 then
      if k > n then n = k end
    elseif k ~= "n" then
      return nil, "got a table with key " .. show(k)
    end
  end
  local declared = rawget(values, "n")
  if declared ~= nil then
    if math_type(declared) ~= "integer" or declared < n then
      return nil, "got a bad length n=" .. show(declared)
    end
    n = declared
  end
  local out = {}
  for i = 1, n do
    local v = values[i]
    if v == nil then v = NOT_SET end
    out[i] = v
  end
  return out
end

local function check_column_name(name, where)
  if type(name) ~= "string" then
    fail("DataTable column names can only be strings, got " .. show(name) .. where)
  end
end

local function sorted_names(t)
  local names = {}
  for k in next, t do names[#names + 1] = k end
  table_sort(names, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return tostring(a) < tostring(b)
  end)
  return names
end

-- Turns an argument of the constructor / extend into an ordered list of
-- {name, array} pairs, validating everything first.
local function to_columns(source, what)
  if class.is_instance(source, DataTable) then
    local out = {}
    for i, name in ipairs(source._order) do
      local col, copy = source._columns[name], {}
      for j = 1, #col do copy[j] = col[j] end
      out[i] = { name, copy }
    end
    return out
  end
  if type(source) ~= "table" then
    fail(what .. " can only be a table of arrays, got " .. type(source))
  end
  local out = {}
  for _, name in ipairs(sorted_names(source)) do
    check_column_name(name, " in " .. what)
    local array, reason = to_array(source[name])
    if not array then
      fail("DataTable values can only be arrays, " .. reason .. " for column " .. show(name))
    end
    out[#out + 1] = { name, array }
  end
  return out
end

local function add_column(self, name)
  local col = {}
  self._columns[name] = col
  self._order[#self._order + 1] = name
  return col
end

local function is_instance_of(record_class, v)
  local check = type(record_class) == "table" and rawget(record_class, "is_instance")
  if type(check) == "function" then return check(v) end
  return getmetatable(v) == record_class
end

local function convert(self, record)
  local rc = self.record_class
  if rc == nil or is_instance_of(rc, record) then return record end
  return rc(record)
end

local function lengths_text(self)
  local parts = {}
  for i, name in ipairs(self._order) do
    parts[i] = name .. "=" .. #self._columns[name]
  end
  return table_concat(parts, ", ")
end

local function require_normalized(self, action)
  if not self:is_normalized() then
    fail("cannot " .. action .. " a not normalized DataTable (column lengths: "
      .. lengths_text(self) .. "); call normalize() first")
  end
end

local function new_like(self)
  return getmetatable(self)(nil, self.record_class)
end

--- Makes a DataTable.
-- @tparam[opt] table base_table column name -> array of values (arrays are copied), or a DataTable
-- @param[opt] record_class a callable converting plain records (for example a DynamoRecord class)
function DataTable:init(base_table, record_class)
  if record_class ~= nil then
    local callable = type(record_class) == "function"
      or (type(record_class) == "table" and getmetatable(record_class)
        and getmetatable(record_class).__call ~= nil)
    if not callable then
      fail("DataTable record_class must be callable, got " .. type(record_class))
    end
  end
  self._columns = {}
  self._order = {}
  self.record_class = record_class
  if base_table ~= nil then
    if type(base_table) ~= "table" then
      fail("DataTable base table can only be a table, got " .. type(base_table))
    end
    for _, pair in ipairs(to_columns(base_table, "DataTable base table")) do
      local col = add_column(self, pair[1])
      local values = pair[2]
      for i = 1, #values do col[i] = values[i] end
    end
  end
end

--- Same as `DataTable(base_table, record_class)` (the reference's `create`).
function DataTable.create(base_table, record_class)
  return DataTable(base_table, record_class)
end

--- Value given to a missing cell when it is read (nil). A subclass may override it;
-- a non-nil result appears in records and columns.
-- @tparam string column_name
-- @tparam integer record_index 1-based
function DataTable:resolve_not_set_value(column_name, record_index) -- luacheck: no unused args
  return nil
end

--- Lengths of the columns, in column order.
function DataTable:get_lengths()
  local out = {}
  for i, name in ipairs(self._order) do out[i] = #self._columns[name] end
  return out
end

--- Length of the longest column (0 with no columns): the number of records.
function DataTable:max_length()
  local max = 0
  for _, col in next, self._columns do
    local n = #col
    if n > max then max = n end
  end
  return max
end

--- Length of the shortest column (0 with no columns).
function DataTable:min_length()
  local min = math_huge
  for _, col in next, self._columns do
    local n = #col
    if n < min then min = n end
  end
  if min == math_huge then return 0 end
  return min
end

--- True when every column has the same length (an empty table is normalized).
function DataTable:is_normalized()
  return self:min_length() == self:max_length()
end

--- True when the table has no records.
function DataTable:is_empty()
  return self:max_length() == 0
end

--- Pads every column with NOT_SET up to the longest one. Returns self.
function DataTable:normalize()
  local max = self:max_length()
  for _, col in next, self._columns do
    for i = #col + 1, max do col[i] = NOT_SET end
  end
  return self
end

--- Appends the arrays of each argument column-wise (a new name makes a new
-- column); does not normalize. Arguments are tables of arrays or DataTables.
-- Returns self.
--
-- Called on the class itself (`DataTable:extend{...}`), it makes a subclass,
-- as `extend` does for every class of the library.
function DataTable:extend(...)
  if rawget(self, "_columns") == nil and rawget(self, "__index") ~= nil then
    return class.extend(self, ...)
  end
  local batches = {}
  for i = 1, select("#", ...) do
    local source = select(i, ...)
    batches[i] = to_columns(source, "DataTable.extend argument " .. i)
  end
  for _, batch in ipairs(batches) do
    for _, pair in ipairs(batch) do
      local col = self._columns[pair[1]] or add_column(self, pair[1])
      local values, n = pair[2], #col
      for j = 1, #values do col[n + j] = values[j] end
    end
  end
  return self
end

--- Appends `values` to column `key` (created when missing). Returns self.
-- @tparam string key
-- @tparam table values an array
function DataTable:append(key, values)
  check_column_name(key, "")
  local array, reason = to_array(values)
  if not array then
    fail("DataTable values can only be arrays, " .. reason .. " for column " .. show(key))
  end
  local col = self._columns[key] or add_column(self, key)
  local n = #col
  for j = 1, #array do col[n + j] = array[j] end
  return self
end

--- A new DataTable with only the listed columns (unknown names are ignored),
-- in the order of `keys`; same record_class.
-- @tparam table keys array of column names
function DataTable:filter_keys(keys)
  if type(keys) ~= "table" then fail("filter_keys needs an array of column names, got " .. type(keys)) end
  local out = new_like(self)
  for _, name in ipairs(keys) do
    local col = self._columns[name]
    if col and not out._columns[name] then
      local copy = add_column(out, name)
      for i = 1, #col do copy[i] = col[i] end
    end
  end
  return out
end

-- The raw record at `index` (no record_class), missing cells left out.
local function raw_record(self, index)
  local record = {}
  local columns = self._columns
  for _, name in ipairs(self._order) do
    local v = columns[name][index]
    if v == NOT_SET then v = self:resolve_not_set_value(name, index) end
    if v ~= nil then record[name] = v end
  end
  return record
end

local function check_index(self, index)
  local n = self:max_length()
  if math_type(index) ~= "integer" or index < 1 or index > n then
    fail("cannot get record " .. show(index) .. ", DataTable has " .. n .. " records")
  end
end

--- The record at `index` (1-based): a table of the set cells (missing cells are
-- absent), converted by record_class. The table must be normalized.
-- @tparam integer index
function DataTable:get_record(index)
  require_normalized(self, "get records from")
  check_index(self, index)
  return convert(self, raw_record(self, index))
end

--- An iterator over the records: `for record, i in dt:get_records() do ... end`.
-- Calling the returned function directly gives the next record, then nil.
-- The table must be normalized (checked at once).
function DataTable:get_records()
  require_normalized(self, "get records from")
  local i = 0
  return function()
    if i >= self:max_length() then return nil end
    i = i + 1
    return self:get_record(i), i
  end
end

--- Alias of `get_records`.
DataTable.records = DataTable.get_records

-- A new DataTable (same columns, same record_class) with the rows i, in
-- order, for which keep(i) is true; keep is called once per row, 1 to n.
local function select_rows(self, keep)
  local out = new_like(self)
  local out_cols = {}
  for c, name in ipairs(self._order) do out_cols[c] = add_column(out, name) end
  local columns, rows = self._columns, 0
  for i = 1, self:max_length() do
    if keep(i) then
      rows = rows + 1
      for c, name in ipairs(self._order) do out_cols[c][rows] = columns[name][i] end
    end
  end
  return out
end

local OPERANDS = { equals = true, not_equals = true }

--- A new DataTable with the matching records (same columns, same record_class).
-- "equals" (default) keeps a record when every `query` pair matches;
-- "not_equals" keeps it when at least one pair differs. A missing cell reads as
-- nil. Missing cells stay missing in the result.
-- @tparam table query column name -> value
-- @tparam[opt="equals"] string operand "equals" or "not_equals" (see `DataTable.Filter`)
function DataTable:filter_records(query, operand)
  operand = operand or "equals"
  if not OPERANDS[operand] then
    fail("filter_records operand must be \"equals\" or \"not_equals\", got " .. show(operand))
  end
  if type(query) ~= "table" then fail("filter_records query must be a table, got " .. type(query)) end
  require_normalized(self, "filter records of")
  local columns = self._columns
  return select_rows(self, function(i)
    local all_match = true
    for key, wanted in pairs(query) do
      local col = columns[key]
      local v = col and col[i]
      if v == NOT_SET then v = self:resolve_not_set_value(key, i) end
      if not (v == wanted) then
        all_match = false
        break
      end
    end
    return all_match == (operand == "equals")
  end)
end

-- Adds one already converted record to a normalized table.
local function add_one(self, record, n)
  local columns = self._columns
  local fresh = {}
  for key in next, record do
    if columns[key] == nil then fresh[#fresh + 1] = key end
  end
  table_sort(fresh)
  for _, key in ipairs(fresh) do
    local col = add_column(self, key)
    for i = 1, n do col[i] = NOT_SET end
  end
  for _, name in ipairs(self._order) do
    local v = rawget(record, name)
    if v == nil then v = NOT_SET end
    columns[name][n + 1] = v
  end
end

local function prepare_record(self, record, position)
  if type(record) ~= "table" then
    fail("record " .. position .. " must be a table, got " .. type(record))
  end
  record = convert(self, record)
  if type(record) ~= "table" then
    fail("record_class returned " .. type(record) .. " for record " .. position)
  end
  for key in next, record do
    if type(key) ~= "string" then
      fail("record " .. position .. " has a field name that is not a string: " .. show(key))
    end
  end
  return record
end

local function add_prepared(self, prepared)
  local n = self:max_length()
  for i = 1, #prepared do
    add_one(self, prepared[i], n)
    n = n + 1
  end
  return self
end

--- Adds records at the end (each converted by record_class first); new columns
-- are back-filled with NOT_SET. All records are checked before any is added.
-- The table must be normalized. Returns self.
-- @param ... records (tables)
function DataTable:add_record(...)
  require_normalized(self, "add records to")
  local prepared, base = {}, self:max_length()
  for i = 1, select("#", ...) do
    prepared[i] = prepare_record(self, (select(i, ...)), base + i)
  end
  return add_prepared(self, prepared)
end

--- Like `add_record` for an array of records or an iterator function of records.
-- Returns self.
-- @tparam table|function records
function DataTable:add_records(records)
  require_normalized(self, "add records to")
  local prepared, base = {}, self:max_length()
  if type(records) == "function" then
    for record in records do
      prepared[#prepared + 1] = prepare_record(self, record, base + #prepared + 1)
    end
  elseif type(records) == "table" then
    for i, record in ipairs(records) do
      prepared[i] = prepare_record(self, record, base + i)
    end
  else
    fail("add_records needs an array or an iterator of records, got " .. type(records))
  end
  return add_prepared(self, prepared)
end

--- The values of column `name` with missing cells as nil, and the number of
-- records: `local values, n = dt:get_column("age"); for i = 1, n do ... end`.
-- An absent column gives n nils. The table must be normalized.
-- @tparam string name
function DataTable:get_column(name)
  require_normalized(self, "get a column of")
  local n = self:max_length()
  local col = self._columns[name]
  local out = {}
  for i = 1, n do
    local v
    if col then v = col[i] end
    if v == nil or v == NOT_SET then v = self:resolve_not_set_value(name, i) end
    out[i] = v
  end
  return out, n
end

--- True when every named column exists (true with no names).
function DataTable:has_column(...)
  for i = 1, select("#", ...) do
    if self._columns[(select(i, ...))] == nil then return false end
  end
  return true
end

local function is_set_column(col)
  for i = 1, #col do
    if col[i] == NOT_SET then return false end
  end
  return true
end

--- True when every named column exists and has no missing cell (true with no names).
function DataTable:has_set_column(...)
  for i = 1, select("#", ...) do
    local col = self._columns[(select(i, ...))]
    if col == nil or not is_set_column(col) then return false end
  end
  return true
end

--- Adds every record of each DataTable (converted by this table's record_class).
-- This table and every argument must be normalized. Returns self.
function DataTable:add_table(...)
  require_normalized(self, "add tables to")
  local tables = {}
  for i = 1, select("#", ...) do
    local other = select(i, ...)
    if not class.is_instance(other, DataTable) then
      if type(other) ~= "table" then
        fail("add_table argument " .. i .. " must be a DataTable, got " .. type(other))
      end
      other = DataTable(other)
    end
    if not other:is_normalized() then
      fail("cannot add a not normalized DataTable (argument " .. i .. ", column lengths: "
        .. lengths_text(other) .. ")")
    end
    tables[i] = other
  end
  local prepared, base = {}, self:max_length()
  for _, other in ipairs(tables) do
    for j = 1, other:max_length() do
      prepared[#prepared + 1] = prepare_record(self, raw_record(other, j), base + #prepared + 1)
    end
  end
  return add_prepared(self, prepared)
end

--- Column names in column order.
function DataTable:get_column_names()
  local out = {}
  for i, name in ipairs(self._order) do out[i] = name end
  return out
end

--- Names of the columns without a missing cell (an empty column counts as set).
function DataTable:get_set_column_names()
  local out = {}
  for _, name in ipairs(self._order) do
    if is_set_column(self._columns[name]) then out[#out + 1] = name end
  end
  return out
end

--- Sets one cell in place; nil makes the cell missing (NOT_SET). The column
-- must exist and `index` must be an existing position (1 .. column length; no
-- negative indexes). Returns self.
-- @tparam string column
-- @tparam integer index
-- @param value
function DataTable:set(column, index, value)
  local col = self._columns[column]
  if col == nil then fail("column " .. show(column) .. " does not exist") end
  if math_type(index) ~= "integer" or index < 1 or index > #col then
    fail("column " .. show(column) .. " does not have index " .. show(index)
      .. " (it has " .. #col .. " values)")
  end
  if value == nil then value = NOT_SET end
  col[index] = value
  return self
end

-- ---------------------------------------------------------------- drop_duplicates

-- A key for a value: equal keys mean "probably equal"; the caller confirms
-- with values_equal, so the key only has to be the same for equal values.
local encode

local function encode_table(v, seen, ids)
  if seen[v] then return "c" end
  seen[v] = true
  local entries = {}
  for k, x in next, v do
    entries[#entries + 1] = encode(k, seen, ids) .. "=" .. encode(x, seen, ids)
  end
  seen[v] = nil
  table_sort(entries)
  local body = table_concat(entries, ",")
  return "t" .. #body .. ":" .. body
end

encode = function(v, seen, ids)
  local tv = type(v)
  if tv == "string" then return "s" .. #v .. ":" .. v end
  if tv == "number" then
    local int = math_tointeger(v)
    if int then return "i" .. string_format("%d", int) end
    if v ~= v then return "nan" end
    return "f" .. string_format("%a", v)
  end
  if tv == "boolean" then return v and "T" or "F" end
  if rawequal(v, NOT_SET) then return "U" end
  if tv == "table" and getmetatable(v) == nil then return encode_table(v, seen, ids) end
  -- opaque value (sentinel, number object, set, userdata ...): by tostring when
  -- it has one of its own, else by identity
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then
    local text = tostring(v)
    return "o" .. tv .. #text .. ":" .. text
  end
  local id = ids[v]
  if not id then
    ids.n = ids.n + 1
    id = ids.n
    ids[v] = id
  end
  return "r" .. id
end

--- A new DataTable without duplicate records, keeping the first of each group.
-- Two records are duplicates when the cells of every `subset` column (all
-- columns by default) are equal values: the same type and value (1 and 1.0 are
-- the same number, strings are compared byte for byte), plain tables compared by
-- content, other objects by `==`; a missing cell only equals a missing cell.
-- Column names are case-sensitive. The table must be normalized.
-- @tparam[opt] table subset array of column names
function DataTable:drop_duplicates(subset)
  require_normalized(self, "drop duplicates of")
  local names
  if subset == nil then
    names = self._order
  else
    if type(subset) ~= "table" then
      fail("drop_duplicates subset must be an array of column names, got " .. type(subset))
    end
    local invalid = {}
    for _, name in ipairs(subset) do
      if self._columns[name] == nil then invalid[#invalid + 1] = show(name) end
    end
    if #invalid > 0 then
      local allowed = {}
      for i, name in ipairs(self._order) do allowed[i] = show(name) end
      fail("invalid subset value(s) " .. table_concat(invalid, ", ") .. ", allowed values are "
        .. table_concat(allowed, ", "))
    end
    names = subset
  end
  local columns = self._columns
  local buckets, ids = {}, { n = 0 }
  return select_rows(self, function(i)
    local parts = {}
    for c, name in ipairs(names) do parts[c] = encode(columns[name][i], {}, ids) end
    local key = table_concat(parts, "|")
    local bucket = buckets[key]
    local duplicate = false
    if bucket then
      for _, j in ipairs(bucket) do
        local same = true
        for _, name in ipairs(names) do
          if not values_equal(columns[name][i], columns[name][j]) then
            same = false
            break
          end
        end
        if same then
          duplicate = true
          break
        end
      end
    else
      bucket = {}
      buckets[key] = bucket
    end
    if not duplicate then bucket[#bucket + 1] = i end
    return not duplicate
  end)
end

-- ---------------------------------------------------------------- copies, views

--- A new DataTable with new column arrays holding the same values (same record_class).
function DataTable:copy()
  local out = new_like(self)
  for _, name in ipairs(self._order) do
    local col, copy = self._columns[name], add_column(out, name)
    for i = 1, #col do copy[i] = col[i] end
  end
  return out
end

--- Like `copy`, and plain tables inside cells are copied too (recursively).
-- Values with a metatable (dynamo.NULL, numbers, sets, records ...) are shared.
function DataTable:deepcopy()
  local out = new_like(self)
  local seen = {}
  for _, name in ipairs(self._order) do
    local col, copy = self._columns[name], add_column(out, name)
    for i = 1, #col do copy[i] = deep_copy(col[i], seen) end
  end
  return out
end

--- A plain table `{column = {values...}}` of fresh arrays with the raw cells
-- (missing cells are `DataTable.NOT_SET`).
function DataTable:as_table()
  local out = {}
  for _, name in ipairs(self._order) do
    local col, copy = self._columns[name], {}
    for i = 1, #col do copy[i] = col[i] end
    out[name] = copy
  end
  return out
end

--- An iterator over `name, values` in column order; `values` is a fresh array of
-- the raw cells.
function DataTable:columns()
  local i = 0
  return function()
    i = i + 1
    local name = self._order[i]
    if name == nil then return nil end
    local col, copy = self._columns[name], {}
    for j = 1, #col do copy[j] = col[j] end
    return name, copy
  end
end

DataTable.__len = function(self)
  return self:max_length()
end

local function raw_columns(v)
  if class.is_instance(v, DataTable) then return v._columns end
  return v
end

--- Two DataTables (or a DataTable and a plain table of arrays) are equal when
-- they have the same columns with the same raw cells.
DataTable.__eq = function(a, b)
  local ca, cb = raw_columns(a), raw_columns(b)
  if type(ca) ~= "table" or type(cb) ~= "table" then return false end
  local count = 0
  for name, col in next, ca do
    count = count + 1
    local other = rawget(cb, name)
    if type(other) ~= "table" or #other ~= #col then return false end
    for i = 1, #col do
      if not (col[i] == other[i]) then return false end
    end
  end
  for _ in next, cb do count = count - 1 end
  return count == 0
end

DataTable.__tostring = function(self)
  local parts = {}
  for i, name in ipairs(self._order) do
    local col, cells = self._columns[name], {}
    for j = 1, #col do cells[j] = show(col[j]) end
    parts[i] = string_format("%s={%s}", name, table_concat(cells, ", "))
  end
  return "DataTable({" .. table_concat(parts, ", ") .. "})"
end

return DataTable
