--- The table manager: a DynamoDB table defined as a Lua class.
--
--    local dynamo = require("dynamo")
--    local UserTable = dynamo.DynamoTable:extend{
--      table = "users",                     -- a string, or a method returning one
--      partition_key_name = "pk",           -- default "pk"
--      sort_key_name = "sk",                -- default "sk"; false: no sort key
--      global_secondary_indexes = { dynamo.DynamoTableIndex("gsi_name_age", "name", "age",
--                                   { sort_key_type = "N" }) },
--    }
--    function UserTable:get_partition_key(record) return record.project_id end
--    function UserTable:get_sort_key(record) return record.company end
--    local users = UserTable{ client = dynamo.client() }
--    users:upsert_record{ project_id = "p1", company = "acme", email = "a@example.com" }
--
-- A definition can extend another one (shared hooks in a base class, tables in
-- subclasses). Class fields: `table`, `partition_key_name`, `sort_key_name`,
-- `partition_key_type`, `sort_key_type` ("S", "N" or "B"; default "S"),
-- `global_secondary_indexes`, `local_secondary_indexes`, `sort_key_prefix`
-- (what `clear_records` owns), `read_capacity_units`, `write_capacity_units`,
-- `record_class` (every output record goes through it).
--
-- Hooks, called once per record by the engine: `normalize_record(record)`,
-- then `get_partition_key(record)` / `get_sort_key(record)` when the record
-- does not already hold the key attribute. A missing hook or a nil key raises
-- a DynamoTableError (code `Validation`) naming the record, before any request.
--
-- Instance options (`UserTable{...}`): `client` (default `dynamo.client()`),
-- `table` (overrides the class's table name), `clock` (function returning
-- milliseconds since the epoch, for dt_created/dt_modified), `sleep`
-- (function(ms) for the table waiters, default the client's),
-- `wait_delay_ms` / `wait_max_attempts` (table waiters).
--
-- Batch operations never lose data silently: the C core's batch engine gives
-- each record the client's `max_attempts` (failed requests and unprocessed
-- items alike, one backoff policy, the client's retry quota); when a batch
-- cannot finish, a DynamoTableError with code `UnprocessedItems` (writes) or
-- `UnprocessedKeys` (reads) is raised whose `unprocessed` lists every input
-- record not done, `uncertain` those that may have been written though their
-- answer was lost, and `cause` the underlying error (see dynamo.batch).
-- @classmod dynamo.DynamoTable
local class = require("dynamo.class")
local errors = require("dynamo.errors")
local util = require("dynamo.util")
local core = require("dynamo.core")
local DynamoTableIndex = require("dynamo.DynamoTableIndex")

local type, pairs, next, ipairs, tostring = type, pairs, next, ipairs, tostring
local pcall, error, rawget, setmetatable, getmetatable = pcall, error, rawget, setmetatable, getmetatable
local math_floor = math.floor
local string_format = string.format
local table_concat, table_sort = table.concat, table.sort
local os_date = os.date

local json_encode, json_decode = core.json_encode, core.json_decode
local encode_item_json = core.encode_item
local key_id = core.key_id
local as_item = core.as_item

local expressions_module, DataTable_module
local function E()
  expressions_module = expressions_module or require("dynamo.expressions")
  return expressions_module
end
-- A new empty DataTable.
local function DT()
  DataTable_module = DataTable_module or require("dynamo.DataTable")
  return DataTable_module()
end

local MAX_BATCH_WRITE = 25
local MAX_BATCH_GET = 100

local DynamoTable = class.new("DynamoTable", {
  table = nil,
  partition_key_name = "pk",
  sort_key_name = "sk",
  partition_key_type = "S",
  sort_key_type = "S",
  global_secondary_indexes = {},
  local_secondary_indexes = {},
  sort_key_prefix = nil,
  read_capacity_units = nil,
  write_capacity_units = nil,
  record_class = nil,
  --- BatchWriteItem requests per item list (DynamoDB's limit).
  max_batch_size = MAX_BATCH_WRITE,
  --- Keys per BatchGetItem request (DynamoDB's limit).
  max_batch_get_size = MAX_BATCH_GET,
})

---------------------------------------------------------------------------
-- small helpers

local function fail(message, fields)
  error(errors.new("Validation", message, fields), 0)
end

local describe, copy = util.describe, util.copy

local function label(self)
  local t = rawget(self, "_table_name") or self.table
  if type(t) == "string" then return "DynamoTable(" .. t .. ")" end
  return "DynamoTable"
end

-- Turns any `records` argument (array, DataTable, iterator function) into a
-- function returning the next record or nil.
local function record_source(records, what)
  local kind = type(records)
  if kind == "function" then return records end
  if kind == "table" then
    if type(records.get_records) == "function" then return records:get_records() end
    local i = 0
    return function()
      i = i + 1
      return records[i]
    end
  end
  fail(what .. ": records must be an array, a DataTable or an iterator function, got " .. kind)
end

local function check_opts(opts, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(what .. ": options must be a table, got " .. type(opts)) end
  return opts
end

---------------------------------------------------------------------------
-- definition

local DEFINITION_FIELDS = {
  partition_key_name = "string", partition_key_type = "string", sort_key_type = "string",
  global_secondary_indexes = "table", local_secondary_indexes = "table",
  read_capacity_units = "number", write_capacity_units = "number",
}

local function check_definition(def)
  if type(def) ~= "table" then
    error(errors.new("Validation", "DynamoTable:extend: definition must be a table, got " .. type(def)), 3)
  end
  for field, kind in pairs(DEFINITION_FIELDS) do
    local v = rawget(def, field)
    if v ~= nil and type(v) ~= kind then
      error(errors.new("Validation", ("DynamoTable:extend: %s must be a %s, got %s"):format(field, kind, type(v))), 3)
    end
  end
  local t = rawget(def, "table")
  if t ~= nil and type(t) ~= "string" and type(t) ~= "function" then
    error(errors.new("Validation", "DynamoTable:extend: table must be a string or a method, got " .. type(t)), 3)
  end
  local sk = rawget(def, "sort_key_name")
  if sk ~= nil and sk ~= false and type(sk) ~= "string" then
    error(errors.new("Validation", "DynamoTable:extend: sort_key_name must be a string or false, got " .. type(sk)), 3)
  end
  for _, field in ipairs({ "global_secondary_indexes", "local_secondary_indexes" }) do
    for i, index in ipairs(rawget(def, field) or {}) do
      if not DynamoTableIndex.is_instance(index) then
        error(errors.new("Validation", ("DynamoTable:extend: %s[%d] must be a DynamoTableIndex"):format(field, i)), 3)
      end
    end
  end
end

local function build_primary_index(c)
  local sk = c.sort_key_name
  if sk == false or sk == "" then sk = nil end
  return DynamoTableIndex(DynamoTableIndex.PRIMARY, c.partition_key_name, sk, {
    partition_key_type = c.partition_key_type,
    sort_key_type = sk and c.sort_key_type or nil,
  })
end

local default_primary = setmetatable({}, { __mode = "k" })
local function make_get_primary_index(cls)
  local f = function(self) return build_primary_index(self or cls) end
  default_primary[f] = true
  return f
end

--- The primary index of the class: a DynamoTableIndex built from
-- partition_key_name / sort_key_name and their types. Works as
-- `UserTable.get_primary_index()` and `users:get_primary_index()`; a definition
-- may override it.
DynamoTable.get_primary_index = make_get_primary_index(DynamoTable)

--- Makes a definition (a subclass). Definition errors raise here.
-- @tparam table def class fields and methods
function DynamoTable.extend(base, def)
  def = def or {}
  check_definition(def)
  local cls = class.extend(base, def)
  if rawget(def, "get_primary_index") == nil and default_primary[base.get_primary_index] then
    cls.get_primary_index = make_get_primary_index(cls)
  end
  return cls
end

--- Makes a manager: `UserTable{ client = client }` (see the module description).
function DynamoTable:init(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error(errors.new("Validation", "DynamoTable: options must be a table, got " .. type(opts)), 3)
  end
  self.client = opts.client or require("dynamo").client()
  if opts.table ~= nil then self._table_name = opts.table end
  self.clock = opts.clock or core.now_ms
  self.sleep = opts.sleep or self.client.sleep or core.sleep_ms
  self.wait_delay_ms = opts.wait_delay_ms or 1000
  self.wait_max_attempts = opts.wait_max_attempts or 300
  self.primary_index = self:get_primary_index()
  local pk, sk = self.primary_index.partition_key_name, self.primary_index.sort_key_name
  self._pk, self._sk = pk, sk
  self.table_keys = sk and { pk, sk } or { pk }
  self._cache = {}
end

--- The table name (the class's `table` field, or what its method returns).
function DynamoTable:get_table_name()
  local t = rawget(self, "_table_name") or self.table
  if type(t) == "function" then t = t(self) end
  if type(t) ~= "string" or t == "" then
    fail(label(self) .. ": no table name: set `table` in the definition or pass table = ... to the constructor")
  end
  if not t:match("^[%w_%.%-]+$") then
    fail(("%s: table name %q may hold only letters, digits, '_', '-' and '.'"):format(label(self), t))
  end
  return t
end

--- The partition key of a record (hook). The default raises: override it, or
-- keep the key attribute in the records.
function DynamoTable:get_partition_key(record)
  fail(label(self) .. ".get_partition_key method is missing, cannot get "
    .. tostring(self._pk) .. " for " .. describe(record), { data = record })
end

--- The sort key of a record (hook); as get_partition_key.
function DynamoTable:get_sort_key(record)
  fail(label(self) .. ".get_sort_key method is missing, cannot get "
    .. tostring(self._sk) .. " for " .. describe(record), { data = record })
end

--- Hook called once per input record before its keys are taken. Returns the
-- record to use (the default returns it unchanged).
function DynamoTable:normalize_record(record)
  return record
end
local default_normalize = DynamoTable.normalize_record

local KEY_CHECK = {
  S = function(v) return type(v) == "string" end,
  N = function(v)
    if type(v) == "number" then return v == v and v ~= math.huge and v ~= -math.huge end
    return core.type_of(v) == "N"
  end,
  B = function(v) return core.type_of(v) == "B" end,
}

local function key_error(self, record, position, name, message)
  local where = position and ("record " .. position .. " ") or "record "
  local text = message:gsub("%%s", name)
  fail(("%s: %s%s: %s"):format(label(self), where, describe(record), text), { data = record })
end

-- A function(record, position) that converts, normalizes and keys one input
-- record, returning record, partition key value, sort key value (nil without
-- a sort key) and identity string (core.key_id). The table's settings are
-- read once, when the preparer is made (once per call of a batch method).
-- Second result: true when records need no conversion and the keys are
-- strings, so core.prepare_keys may key a window of them at once.
local function make_preparer(self)
  local rc = self.record_class
  local is_instance = rc ~= nil and type(rc) == "table" and rawget(rc, "is_instance") or nil
  local normalize = self.normalize_record
  if normalize == default_normalize then normalize = nil end
  local pk, sk = self._pk, self._sk
  local index = self.primary_index
  local pkt, skt = index.partition_key_type, index.sort_key_type
  local pcheck, scheck = KEY_CHECK[pkt], KEY_CHECK[skt]
  local pstring, sstring = pkt == "S", skt == "S"
  -- A key value of the record: its own, else the hook's; nil or a value not
  -- of the key's type raises, naming the record.
  local function key_value(record, position, name, method, what, typ, is_string_type, check)
    local v = record[name]
    if v == nil then
      local ok, hv = pcall(self[method], self, record)
      if not ok then
        if errors.is(hv) and position then hv.message = hv.message .. " (record " .. position .. ")" end
        error(hv, 0)
      end
      v = hv
      if v == nil then key_error(self, record, position, name, what .. " %s is nil") end
    end
    if not (is_string_type and type(v) == "string") and not check(v) then
      key_error(self, record, position, name, what .. " %s must be of type " .. typ
        .. ", got " .. (core.type_of(v) or type(v)))
    end
    return v
  end
  local plain = rc == nil and normalize == nil and pstring and (sk == nil or sstring)
  return function(record, position)
    if type(record) ~= "table" then
      fail(("%s: record %s must be a table, got %s"):format(label(self), tostring(position or ""), type(record)))
    end
    if rc ~= nil and not (is_instance and is_instance(record)) then record = rc(record) end
    if normalize then record = normalize(self, record) or record end
    -- the usual case, a string the record holds for a string key, needs no call
    local pkv = record[pk]
    if not (pstring and type(pkv) == "string") then
      pkv = key_value(record, position, pk, "get_partition_key", "partition key", pkt, pstring, pcheck)
    end
    if sk == nil then return record, pkv, nil, key_id(pkv) end
    local skv = record[sk]
    if not (sstring and type(skv) == "string") then
      skv = key_value(record, position, sk, "get_sort_key", "sort key", skt, sstring, scheck)
    end
    return record, pkv, skv, key_id(pkv, skv)
  end, plain
end

local function prepare_values(self, record, position)
  return make_preparer(self)(record, position)
end

-- As prepare_values, with the key as a table: record, {[pk] = ..., [sk] = ...}, id.
local function prepare(self, record, position)
  local rec, pkv, skv, id = prepare_values(self, record, position)
  local sk = self._sk
  if sk == nil then return rec, { [self._pk] = pkv }, id end
  return rec, { [self._pk] = pkv, [sk] = skv }, id
end

-- Identity of a native item holding the key attributes (see core.key_id:
-- exact, so 1 and 1.0 agree and no two keys share one).
local function item_id(pk, sk, item)
  if sk == nil then return key_id(item[pk]) end
  return key_id(item[pk], item[sk])
end

--- The key attributes of a record: `{[pk] = ..., [sk] = ...}` (the record's own
-- values when it holds them, else the hooks' values). Raises on a nil key.
function DynamoTable:get_record_keys(record)
  local _, key = prepare(self, record)
  return key
end

local function to_output(self, record)
  local rc = self.record_class
  if rc ~= nil and record ~= nil then
    local check = type(rc) == "table" and rawget(rc, "is_instance")
    if not (check and check(record)) then return rc(record) end
  end
  return record
end

local function encode_item(self, item, what)
  local ok, text = pcall(encode_item_json, item, "record")
  if not ok then
    fail(("%s: %s %s cannot be written: %s"):format(label(self), what or "record", describe(item), tostring(text)),
      { data = item })
  end
  return text
end

local function encode_request(self, params, what)
  local ok, text = pcall(json_encode, params, what or "request")
  if not ok then fail(label(self) .. ": " .. tostring(text)) end
  return text
end

-- Renders expressions, wrapping the values so the codec writes them as AttributeValues.
local function render(spec)
  local r = E().render_request(spec)
  if r.ExpressionAttributeValues then r.ExpressionAttributeValues = as_item(r.ExpressionAttributeValues) end
  return r
end

local function apply_rendered(params, r)
  for _, name in ipairs({ "KeyConditionExpression", "FilterExpression", "ConditionExpression",
                          "UpdateExpression", "ProjectionExpression", "ExpressionAttributeNames",
                          "ExpressionAttributeValues" }) do
    if r[name] ~= nil then params[name] = r[name] end
  end
  return params
end

local function projection_of(projection)
  if projection == nil then return nil end
  if type(projection) == "table" and getmetatable(projection) == nil then
    if #projection == 0 then return nil end
    return E().ProjectionExpression(table.unpack(projection))
  end
  return projection
end

-- Drops the cached entries of the given identities (everything when ids is nil).
local function invalidate(self, ids, n)
  local cache = self._cache
  if next(cache) == nil then return end
  if ids == nil then
    self._cache = {}
    return
  end
  for i = 1, n or #ids do cache[ids[i]] = nil end
end

local function now_string(self)
  local ms = self.clock()
  ms = math_floor(ms)
  local s = ms // 1000
  return os_date("!%Y-%m-%dT%H:%M:%S", s) .. string_format(".%03dZ", ms % 1000)
end

--- The timestamp written to dt_created / dt_modified: UTC, ISO 8601 with
-- milliseconds and a Z, always 24 characters ("2024-05-01T12:00:00.000Z").
function DynamoTable:now()
  return now_string(self)
end

---------------------------------------------------------------------------
-- table lifecycle

local function is_not_found(err)
  return errors.is(err, "ResourceNotFoundException")
end

--- The table's status ("ACTIVE", "CREATING", ...) or nil when it does not exist.
function DynamoTable:get_table_status()
  local ok, out = pcall(self.client.call, self.client, "DescribeTable", { TableName = self:get_table_name() })
  if ok then return out.Table and out.Table.TableStatus end
  if is_not_found(out) then return nil end
  error(out, 0)
end

local function wait_for(self, what, done)
  local delay, attempts = self.wait_delay_ms, self.wait_max_attempts
  for attempt = 1, attempts do
    if done(self:get_table_status()) then return nil end
    if attempt < attempts then self.sleep(delay) end
  end
  error(errors.new("Timeout", ("%s: table %s did not %s after %d checks"):format(label(self),
    self:get_table_name(), what, attempts), { retryable = true }), 0)
end

--- Waits until the table exists and is ACTIVE (DescribeTable every
-- `wait_delay_ms`, at most `wait_max_attempts` times; then a Timeout error).
function DynamoTable:wait_until_exists()
  return wait_for(self, "become ACTIVE", function(status) return status == "ACTIVE" end)
end

--- Waits until the table no longer exists.
function DynamoTable:wait_until_not_exists()
  return wait_for(self, "disappear", function(status) return status == nil end)
end

--- AttributeDefinitions of the primary index and every GSI and LSI, each name
-- once; the same attribute with two types is a Validation error.
function DynamoTable:get_attribute_definitions()
  local defs, types = {}, {}
  local function add(index)
    for _, d in ipairs(index:as_attribute_definitions()) do
      local name, kind = d.AttributeName, d.AttributeType
      local seen = types[name]
      if seen == nil then
        types[name] = kind
        defs[#defs + 1] = { AttributeName = name, AttributeType = kind }
      elseif seen ~= kind then
        fail(("%s: attribute %s is typed %s by one index and %s by %s"):format(label(self), name, seen, kind,
          tostring(index)))
      end
    end
  end
  add(self.primary_index)
  for _, index in ipairs(self.global_secondary_indexes or {}) do add(index) end
  for _, index in ipairs(self.local_secondary_indexes or {}) do add(index) end
  return defs, types
end

--- Creates the table (attribute definitions from every index, PAY_PER_REQUEST
-- unless both capacities are set; GSIs without capacity get the table's).
-- Does nothing (returns nil) when the table is CREATING, UPDATING or ACTIVE;
-- waits for a DELETING table to go first. Returns the CreateTable response.
function DynamoTable:create_table()
  local status = self:get_table_status()
  if status == "DELETING" then
    self:wait_until_not_exists()
  elseif status ~= nil then
    return nil
  end
  local defs = self:get_attribute_definitions()
  local rcu, wcu = self.read_capacity_units, self.write_capacity_units
  local provisioned = rcu ~= nil and wcu ~= nil
  local params = {
    TableName = self:get_table_name(),
    AttributeDefinitions = defs,
    KeySchema = self.primary_index:as_key_schema(),
  }
  local gsis = self.global_secondary_indexes or {}
  if #gsis > 0 then
    local list = {}
    for i, index in ipairs(gsis) do
      if provisioned and not (index.read_capacity_units and index.write_capacity_units) then
        index = index:copy{ read_capacity_units = rcu, write_capacity_units = wcu }
      end
      local gsi = index:as_global_secondary_index()
      if not provisioned then gsi.ProvisionedThroughput = nil end
      list[i] = gsi
    end
    params.GlobalSecondaryIndexes = list
  end
  local lsis = self.local_secondary_indexes or {}
  if #lsis > 0 then
    local list = {}
    for i, index in ipairs(lsis) do list[i] = index:as_local_secondary_index() end
    params.LocalSecondaryIndexes = list
  end
  if provisioned then
    params.ProvisionedThroughput = { ReadCapacityUnits = rcu, WriteCapacityUnits = wcu }
  else
    params.BillingMode = "PAY_PER_REQUEST"
  end
  return self.client:call("CreateTable", params)
end

--- Deletes the table. Nothing happens when it does not exist or is DELETING;
-- a CREATING table is waited for first. Does not wait for the deletion.
function DynamoTable:delete_table()
  local status = self:get_table_status()
  if status == nil or status == "DELETING" then return nil end
  if status == "CREATING" then self:wait_until_exists() end
  invalidate(self)
  return self.client:call("DeleteTable", { TableName = self:get_table_name() })
end

---------------------------------------------------------------------------
-- single-item calls

local function attach(err, record)
  if errors.is(err) and err.data == nil then err.data = record end
  return err
end

-- GetItem for a prepared key: the raw item or nil.
local function get_item(self, tname, key, consistent)
  local body = encode_request(self, { TableName = tname, Key = as_item(key),
                                      ConsistentRead = consistent and true or nil })
  local out = self.client:send("GetItem", body, true)
  return out.Item
end

--- Reads the item of a record. Returns the record's keys merged with the
-- stored item, or nil when no item exists (an item holding only its keys is
-- found).
-- @tparam table record a record holding its keys, or one the key hooks understand
-- @tparam[opt] table opts `consistent_read`
function DynamoTable:get_record(record, opts)
  opts = check_opts(opts, "get_record")
  local _, key = prepare(self, record)
  local item = get_item(self, self:get_table_name(), key, opts.consistent_read)
  if item == nil then return nil end
  for k, v in next, key do if item[k] == nil then item[k] = v end end
  return to_output(self, item)
end

local function list_of(v, what)
  if v == nil then return {} end
  if type(v) ~= "table" then fail(what .. " must be an array of attribute names, got " .. type(v)) end
  return v
end

--- Creates or updates one item with UpdateItem (ReturnValues ALL_NEW) and
-- returns the stored record. Every present field is SET (sorted by name),
-- `dt_modified` is set to now, `dt_created` and the `set_if_not_exists_keys`
-- keep the stored value when there is one (`dt_created` otherwise takes the
-- record's own value or now). Options:
-- `condition_expression` (a ConditionExpression; a failure raises code
-- ConditionalCheckFailedException), `set_if_not_exists_keys` (names absent from
-- the record are skipped), `extra_data` (values for the condition, never
-- written; the record's own fields win on a name clash), `remove_keys`
-- (attributes to REMOVE).
function DynamoTable:upsert_record(record, opts)
  opts = check_opts(opts, "upsert_record")
  local tname = self:get_table_name()
  local rec, key, id = prepare(self, record)
  local now = now_string(self)
  local item = copy(rec)
  item.dt_created = item.dt_created or now
  item.dt_modified = now
  for k, v in next, key do item[k] = v end
  local is_key = {}
  for _, k in ipairs(self.table_keys) do is_key[k] = true end
  local sine = { dt_created = true }
  for _, k in ipairs(list_of(opts.set_if_not_exists_keys, "set_if_not_exists_keys")) do
    if is_key[k] then fail(label(self) .. ": set_if_not_exists_keys cannot hold the key attribute " .. k) end
    if item[k] ~= nil then sine[k] = true end
  end
  local remove = {}
  for _, k in ipairs(list_of(opts.remove_keys, "remove_keys")) do
    if is_key[k] then fail(label(self) .. ": remove_keys cannot hold the key attribute " .. k) end
    if item[k] ~= nil then
      fail(("%s: %s is both in the record and in remove_keys"):format(label(self), k), { data = record })
    end
    remove[#remove + 1] = k
  end
  local update, sine_list = {}, {}
  for k in next, item do
    if not is_key[k] then
      if sine[k] then sine_list[#sine_list + 1] = k else update[#update + 1] = k end
    end
  end
  table_sort(update)
  table_sort(sine_list)
  table_sort(remove)
  local data = item
  if opts.extra_data ~= nil then
    data = copy(item)
    for k, v in pairs(opts.extra_data) do
      if data[k] == nil then data[k] = v end
    end
  end
  -- attribute names go through escape() so a name holding '.' or '[' stays
  -- one attribute; the value of each comes from data under the plain name
  local x = E()
  local escape = x.escape
  local function pairs_of(names)
    local out = {}
    for i, k in ipairs(names) do out[i] = { escape(k), k } end
    return out
  end
  local removed = {}
  for i, k in ipairs(remove) do removed[i] = escape(k) end
  local expr = x.UpdateExpression{
    update = pairs_of(update),
    set_if_not_exists = #sine_list > 0 and pairs_of(sine_list) or nil,
    remove = #removed > 0 and removed or nil,
  }
  local r = render{ update = expr, condition = opts.condition_expression, data = data }
  local params = apply_rendered({ TableName = tname, Key = as_item(key), ReturnValues = "ALL_NEW" }, r)
  local body = encode_request(self, params, "record")
  invalidate(self, { id }, 1)
  local ok, out = pcall(self.client.send, self.client, "UpdateItem", body, true)
  if not ok then error(attach(out, record), 0) end
  return to_output(self, out.Attributes)
end

--- Deletes the item of a record (DeleteItem, ReturnValues ALL_OLD) and returns
-- the old item, or nil when there was none. `condition_expression` may use any
-- field of the record and of `data`.
function DynamoTable:delete_record(record, opts)
  opts = check_opts(opts, "delete_record")
  local tname = self:get_table_name()
  local rec, key, id = prepare(self, record)
  local params = { TableName = tname, Key = as_item(key), ReturnValues = "ALL_OLD" }
  if opts.condition_expression ~= nil then
    local data = copy(rec)
    for k, v in next, key do data[k] = v end
    for k, v in pairs(opts.data or {}) do data[k] = v end
    apply_rendered(params, render{ condition = opts.condition_expression, data = data })
  end
  local body = encode_request(self, params)
  invalidate(self, { id }, 1)
  local ok, out = pcall(self.client.send, self.client, "DeleteItem", body, true)
  if not ok then error(attach(out, record), 0) end
  return to_output(self, out.Attributes)
end

---------------------------------------------------------------------------
-- batch methods (the engine is the C core's; dynamo/batch.lua is their Lua side)

local B = require("dynamo.batch"){
  fail = fail, label = label, describe = describe, copy = copy, record_source = record_source,
  make_preparer = make_preparer, to_output = to_output, invalidate = invalidate, now_string = now_string,
  list_of = list_of,
}

--- Reads the items of many records (BatchGetItem: 100 keys per request, many
-- in flight, unprocessed keys retried). Returns a DataTable with every input
-- record in input order, found ones merged with their item, and an array of
-- booleans telling found (true) from not found (false). Duplicate keys are
-- read once. When reads run out of attempts, raises `UnprocessedKeys` (see
-- dynamo.batch: `unprocessed`, `cause`).
-- @param data_table a DataTable, an array of records or an iterator function
-- @tparam[opt] table opts `consistent_read`
function DynamoTable:batch_get(data_table, opts)
  opts = check_opts(opts, "batch_get")
  local records, found = {}, {}
  for r, f in B.get_iter(self, data_table, opts, "batch_get") do
    records[#records + 1] = r
    found[#found + 1] = f
  end
  return DT():add_records(records), found
end

--- As batch_get, as an iterator: `for record, found in users:batch_get_records(list) do`.
-- An iterator function is read a window at a time. When reads run out of
-- attempts, every record that was read is yielded first, then the error is raised.
function DynamoTable:batch_get_records(records, opts)
  opts = check_opts(opts, "batch_get_records")
  return B.get_iter(self, records, opts, "batch_get_records", false)
end

--- Reads a record through the cache: the first call for a key reads it
-- (get_record), later calls answer from the cache until the manager itself
-- writes or deletes that key or `invalidate_cache()` runs. A missing item is
-- remembered as missing (nil). Returns a copy each time.
function DynamoTable:cached_get_record(record, opts)
  opts = check_opts(opts, "cached_get_record")
  local _, key, id = prepare(self, record)
  local cache = self._cache
  local c = cache[id]
  if c == nil then
    local item = get_item(self, self:get_table_name(), key, opts.consistent_read)
    if item then
      for k, v in next, key do if item[k] == nil then item[k] = v end end
      c = item
    else
      c = false
    end
    cache[id] = c
  end
  if c == false then return nil end
  return to_output(self, copy(c))
end

--- batch_get through the cache: only keys not cached are read. Output in input
-- order (DataTable, found flags), as batch_get.
function DynamoTable:cached_batch_get(data_table, opts)
  opts = check_opts(opts, "cached_batch_get")
  local records, found = {}, {}
  for r, f in B.get_iter(self, data_table, opts, "cached_batch_get", true) do
    records[#records + 1] = r
    found[#found + 1] = f
  end
  return DT():add_records(records), found
end

--- Forgets every cached record.
function DynamoTable:invalidate_cache()
  self._cache = {}
end

--- Checks that a record holds every key attribute of the primary index and of
-- every GSI/LSI, with the type the index declares (S: string; N: number or
-- dynamo.number; B: dynamo.binary). Raises a Validation DynamoTableError.
function DynamoTable:validate_record_attributes(record)
  local types = rawget(self, "_attribute_types")
  if types == nil then
    local defs
    defs, types = self:get_attribute_definitions()
    local list = {}
    for i, d in ipairs(defs) do list[i] = { d.AttributeName, d.AttributeType } end
    types = list
    self._attribute_types = list
  end
  for i = 1, #types do
    local name, kind = types[i][1], types[i][2]
    local v = record[name]
    if v == nil then
      fail(("Attribute %s is not set in record %s."):format(name, describe(record)), { data = record })
    end
    if not (kind == "S" and type(v) == "string") and not KEY_CHECK[kind](v) then
      fail(("Attribute %s has invalid type, %s expected, got %s in record %s."):format(name, kind,
        core.type_of(v) or type(v), describe(record)), { data = record })
    end
  end
end

--- Writes many records (BatchWriteItem PutRequest: 25 per request, many in
-- flight, unprocessed items retried). By default a read-modify-write as the
-- reference: each record is merged over its stored item (attributes not in
-- the input survive), `set_if_not_exists_keys` keep stored values, dt_created
-- comes from the stored item, else the record, else now; dt_modified is now.
-- Option `read_existing = false` skips the read: records are written as given
-- plus the dt stamps (dt_created = the record's own or now). Duplicate keys:
-- the last record wins. Every record must pass validate_record_attributes.
-- Returns a DataTable of the written records. When writes run out of
-- attempts, raises `UnprocessedItems` (see dynamo.batch).
function DynamoTable:batch_upsert(data_table, opts)
  opts = check_opts(opts, "batch_upsert")
  local written = {}
  B.upsert(self, data_table, opts, "batch_upsert", written)
  return DT():add_records(written)
end

--- As batch_upsert for an array or an iterator function of records (read a
-- window at a time); returns nothing.
function DynamoTable:batch_upsert_records(records, opts)
  opts = check_opts(opts, "batch_upsert_records")
  B.upsert(self, records, opts, "batch_upsert_records", nil)
end

--- Deletes the items of many records (BatchWriteItem DeleteRequest, duplicate
-- keys once, unprocessed retried). Returns a DataTable of the input records
-- with their keys, whether an item existed or not.
function DynamoTable:batch_delete(data_table)
  local out = {}
  B.delete(self, data_table, "batch_delete", out)
  return DT():add_records(out)
end

--- As batch_delete for an array or an iterator function; returns nothing.
function DynamoTable:batch_delete_records(records)
  B.delete(self, records, "batch_delete_records", nil)
end

---------------------------------------------------------------------------
-- query and scan

local function resolve_index(self, index)
  if index == nil or index == DynamoTableIndex.PRIMARY then return self.primary_index end
  if type(index) == "string" then
    for _, list in ipairs({ self.global_secondary_indexes or {}, self.local_secondary_indexes or {} }) do
      for _, ix in ipairs(list) do
        if ix.name == index then return ix end
      end
    end
    fail(("%s: unknown index %q"):format(label(self), index))
  end
  if DynamoTableIndex.is_instance(index) then return index end
  fail(label(self) .. ": index must be a DynamoTableIndex or its name, got " .. type(index))
end

local P = require("dynamo.paging"){
  fail = fail, label = label, to_output = to_output, encode_request = encode_request, render = render,
  apply_rendered = apply_rendered, projection_of = projection_of, resolve_index = resolve_index, E = E,
  check_opts = check_opts,
}
local query_iter, scan_iter = P.query_iter, P.scan_iter

--- Queries one partition: `for record in users:query{ partition_key = "p1" } do`.
-- Options: `partition_key` (required), `index` (a DynamoTableIndex or its
-- name), `sort_key` with `sort_key_operator` (= < <= > >= begins_with, or
-- BETWEEN with sort_key = {low, high}), `sort_key_prefix` (begins_with),
-- `filter_expression`, `data` (values for the expressions, by name),
-- `projection` (array of names or a ProjectionExpression),
-- `scan_index_forward`, `limit` (records returned; 0 sends nothing),
-- `consistent_read`, `page_size` (Limit of each request), `on_page`
-- (function(position), called after each page's records are handed out)
-- and `start` (a position from on_page: continue after it; see
-- dynamo.paging). Streams page by page; each iterator keeps its own
-- position; leaving a `for` loop early gives the page buffer back at once.
function DynamoTable:query(opts)
  return query_iter(self, check_opts(opts, "query"), false)
end

--- Runs many queries at once: `for record, i in users:query_many(list) do`,
-- where `list` is an array of query options (as `query` takes, `limit`
-- included) and `i` the position of the query a record comes from. Up to
-- `concurrency` queries (default: the client's concurrency) have a page in
-- flight or waiting at once; each round's pages are streamed a run of items
-- at a time. Records of one query keep their order; queries interleave page
-- by page. Every query is checked before anything is sent. `on_page` and
-- `start` work as for `query`, with one position for all the queries (resume
-- with the same list, in the same order).
-- @tparam table queries array of query option tables
-- @tparam[opt] table opts `concurrency`, `on_page`, `start`
function DynamoTable:query_many(queries, opts)
  return P.query_many(self, queries, check_opts(opts, "query_many"))
end

--- Scans the table (or `index`): `for record in users:scan{...} do`.
-- Options: `filter_expression`, `data`, `projection`, `limit` (records
-- returned), `index`, `consistent_read`, `segments` (parallel scan with that
-- many segments, requests in flight together), `page_size`, `on_page` and
-- `start` (as for `query`; a parallel scan's position holds every segment's).
function DynamoTable:scan(opts)
  return scan_iter(self, check_opts(opts, "scan"), false)
end

---------------------------------------------------------------------------
-- bulk deletion

local CLEAR_NAMES = { "partition_key_prefix", "sort_key_value", "sort_key_prefix" }

--- Deletes items. With `partition_key`: the items of that partition (query;
-- `index`, `sort_key`, `sort_key_prefix`, `filter_expression`, `data`, `limit`
-- apply). Without: a scan of the items matching `partition_key_prefix`,
-- `sort_key`, `sort_key_prefix` AND `filter_expression` (with `data`), on
-- `index` when given, at most `limit` of them. No option at all deletes every
-- item. Returns the number of deleted keys.
function DynamoTable:clear_table(opts)
  opts = check_opts(opts, "clear_table")
  local keys_projection = {}
  for i, k in ipairs(self.table_keys) do keys_projection[i] = E().escape(k) end
  local source
  if opts.partition_key ~= nil then
    source = query_iter(self, {
      partition_key = opts.partition_key, index = opts.index, sort_key = opts.sort_key,
      sort_key_prefix = opts.sort_key_prefix, sort_key_operator = opts.sort_key_operator,
      filter_expression = opts.filter_expression, data = opts.data, limit = opts.limit,
      projection = keys_projection, consistent_read = opts.consistent_read,
    }, true)
  else
    local C, escape = E().ConditionExpression, E().escape
    local filter
    local data = {}
    for k, v in pairs(opts.data or {}) do data[k] = v end
    for _, name in ipairs(CLEAR_NAMES) do
      if data[name] ~= nil then
        fail(("%s: clear_table data cannot use the name %s (it is taken by the key options)"):format(label(self),
          name))
      end
    end
    local function add(c) filter = filter and (filter & c) or c end
    local index = opts.index ~= nil and resolve_index(self, opts.index) or self.primary_index
    if opts.partition_key_prefix ~= nil then
      data.partition_key_prefix = opts.partition_key_prefix
      add(C(escape(index.partition_key_name), "begins_with", "partition_key_prefix"))
    end
    if (opts.sort_key ~= nil or opts.sort_key_prefix ~= nil) and not index.sort_key_name then
      fail(label(self) .. ": sort_key / sort_key_prefix given, but the index has no sort key")
    end
    if opts.sort_key ~= nil then
      data.sort_key_value = opts.sort_key
      add(C(escape(index.sort_key_name), "=", "sort_key_value"))
    end
    if opts.sort_key_prefix ~= nil then
      data.sort_key_prefix = opts.sort_key_prefix
      add(C(escape(index.sort_key_name), "begins_with", "sort_key_prefix"))
    end
    if opts.filter_expression ~= nil then add(opts.filter_expression) end
    source = scan_iter(self, {
      filter_expression = filter, data = data, limit = opts.limit, index = opts.index,
      projection = keys_projection, consistent_read = opts.consistent_read, segments = opts.segments,
    }, true)
  end
  local pk, sk = self._pk, self._sk
  local function raw_prepare(item)
    return item, item[pk], item[sk], item_id(pk, sk, item)
  end
  local total = B.delete(self, source, "clear_table", nil, raw_prepare)
  invalidate(self)
  return total
end

--- Deletes the records this manager owns: the items whose sort key begins with
-- the class's `sort_key_prefix`. Without a sort_key_prefix the manager cannot
-- tell its items from others', so this raises instead of wiping the table
-- (use clear_table() for that).
function DynamoTable:clear_records()
  local prefix = self.sort_key_prefix
  if prefix == nil or prefix == "" then
    fail(label(self) .. ": clear_records needs sort_key_prefix in the definition "
      .. "(clear_table() deletes every item)")
  end
  if not self._sk then fail(label(self) .. ": clear_records needs a table with a sort key") end
  return self:clear_table{ sort_key_prefix = prefix }
end

DynamoTable.__tostring = function(self)
  local ok, name = pcall(DynamoTable.get_table_name, self)
  return "<DynamoTable table=" .. (ok and name or "?") .. ">"
end

return DynamoTable
