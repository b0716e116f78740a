-- Specs for dynamo.DataTable: the reference's tests/test_data_table.py (indexes
-- moved to 1-based) plus the weak points W7, W38 and W42.
local DataTable = require("dynamo.DataTable")
local DynamoRecord = require("dynamo.DynamoRecord")
local errors = require("dynamo.errors")

local NOT_SET = DataTable.NOT_SET

-- Runs fn, which must raise a dynamo error with `code` whose message matches `pattern`.
local function raises(code, pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(errors.is(err, code), "expected a " .. code .. " error, got " .. tostring(err))
  if pattern then
    assert.is_truthy(tostring(err.message):find(pattern), "message: " .. tostring(err.message))
  end
  return err
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function collect(iter)
  local out = {}
  for record in iter do out[#out + 1] = record end
  return out
end

describe("dynamo.DataTable", function()
  describe("construction (test_init)", function()
    it("copies the arrays of the base table and keeps their values", function()
      local base = { a = { 1, 2, 3 }, b = { 1, 2 } }
      local dt = DataTable(base)
      assert.same({ a = { 1, 2, 3 }, b = { 1, 2 } }, dt:as_table())
      base.a[1] = 100
      assert.same({ 1, 2, 3 }, dt:as_table().a)
      assert.is_true(DataTable.create(base) == { a = { 100, 2, 3 }, b = { 1, 2 } })
    end)

    it("pads to records whose missing cells are absent", function()
      local dt = DataTable{ a = { 1, 2, 3 }, b = { 1, 2 } }
      local records = collect(dt:copy():normalize():get_records())
      assert.same({ { a = 1, b = 1 }, { a = 2, b = 2 }, { a = 3 } }, records)
      -- the original is untouched by normalizing the copy
      assert.same({ 3, 2 }, dt:get_lengths())
    end)

    it("lists column names in order and iterates over columns", function()
      local dt = DataTable{ b = { 1, 2 }, a = { 1, 2, 3 } }
      assert.same({ "a", "b" }, dt:get_column_names())
      local seen = {}
      for name, values in dt:columns() do seen[#seen + 1] = { name, values } end
      assert.same({ { "a", { 1, 2, 3 } }, { "b", { 1, 2 } } }, seen)
      assert.is_false(dt:has_column("c"))
    end)

    it("compares equal to a plain table of arrays and to another DataTable", function()
      local dt = DataTable{ a = { 1, 2, 3 }, b = { 1, 2 } }
      assert.is_true(dt == { a = { 1, 2, 3 }, b = { 1, 2 } })
      assert.is_true(dt == DataTable{ a = { 1, 2, 3 }, b = { 1, 2 } })
      assert.is_false(dt == { a = { 1, 2, 3 } })
      assert.is_false(dt == { a = { 1, 2, 3 }, b = { 1, 3 } })
    end)

    it("is empty without records (the reference's truthiness)", function()
      assert.is_true(DataTable():is_empty())
      assert.is_true(DataTable{ a = {} }:is_empty())
      assert.is_false(DataTable{ a = { 1 } }:is_empty())
      assert.equal(0, #DataTable())
      assert.equal(1, #DataTable{ a = { 1 } })
    end)

    it("rejects a base that is not a table of arrays", function()
      raises("DataTableError", "arrays", DataTable, { a = "b" })
      raises("DataTableError", "base table can only be a table", DataTable, 5)
      raises("DataTableError", "column names", DataTable, { 1, 2, 3 })
      raises("DataTableError", "arrays", DataTable, { a = { x = 1 } })
      raises("DataTableError", "record_class must be callable", DataTable, {}, 5)
    end)

    it("accepts an empty table and another DataTable as base", function()
      assert.same({}, DataTable({}):as_table())
      local other = DataTable{ a = { 1 } }:normalize()
      local copy = DataTable(other)
      assert.same({ a = { 1 } }, copy:as_table())
      copy:set("a", 1, 2)
      assert.same({ a = { 1 } }, other:as_table())
    end)
  end)

  describe("copy and deepcopy (test_builtin_copy)", function()
    it("copy makes new arrays holding the same values", function()
      local inner = { 1, 2, 3 }
      local dt = DataTable{ a = { inner } }
      local copy = dt:copy()
      assert.is_true(DataTable.is_instance(copy))
      assert.are_not.equal(rawequal(copy, dt), true)
      copy:append("a", { 4 })
      assert.same({ 1 }, dt:get_lengths())
      assert.is_true(rawequal(copy:get_record(1).a, inner))
    end)

    it("deepcopy copies plain tables inside cells and keeps opaque values", function()
      local inner = { 1, 2, 3 }
      local sentinel = setmetatable({}, { __tostring = function() return "NULL" end })
      local dt = DataTable({ a = { inner }, b = { sentinel } }, nil)
      local deep = dt:deepcopy()
      assert.is_true(DataTable.is_instance(deep))
      local cell = deep:get_record(1).a
      assert.is_false(rawequal(cell, inner))
      assert.same(inner, cell)
      assert.is_true(rawequal(deep:get_record(1).b, sentinel))
    end)

    it("copies keep the record_class", function()
      local Rec = DynamoRecord:extend{ name = "Rec", fields = { a = true } }
      local dt = DataTable({ a = { 1 } }, Rec)
      assert.is_true(Rec.is_instance(dt:copy():get_record(1)))
      assert.is_true(Rec.is_instance(dt:deepcopy():get_record(1)))
    end)
  end)

  describe("extend", function()
    it("appends column-wise, creates new columns and returns self", function()
      local dt = DataTable{ a = { 1 }, b = {}, c = { 2, 3 } }
      assert.is_true(rawequal(dt:extend({ a = { 2 }, b = { 1 } }, { d = { 1 } }), dt))
      assert.same({ a = { 1, 2 }, b = { 1 }, c = { 2, 3 }, d = { 1 } }, dt:as_table())
      assert.same({ "a", "b", "c", "d" }, dt:get_column_names())

      dt = DataTable({})
      dt:extend({ a = { 2 }, b = { 1 } }, { d = { 1 } }, {})
      assert.same({ a = { 2 }, b = { 1 }, d = { 1 } }, dt:as_table())
    end)

    it("rejects non-array values and non-tables without changing anything", function()
      local dt = DataTable({})
      raises("DataTableError", "arrays", dt.extend, dt, { d = 5 })
      raises("DataTableError", "table of arrays", dt.extend, dt, 5)
      raises("DataTableError", "arrays", dt.extend, dt, { a = { 1 } }, { b = "x" })
      assert.same({}, dt:as_table())
    end)

    it("takes a DataTable as argument", function()
      local dt = DataTable{ a = { 1 } }
      dt:extend(DataTable{ a = { 2 }, b = { 3 } })
      assert.same({ a = { 1, 2 }, b = { 3 } }, dt:as_table())
    end)
  end)

  describe("append", function()
    it("appends to an existing or a new column and returns self", function()
      local dt = DataTable{ a = { 1 }, b = {}, c = { 2, 3 } }
      assert.is_true(rawequal(dt:append("a", { 2, 3 }), dt))
      assert.same({ a = { 1, 2, 3 }, b = {}, c = { 2, 3 } }, dt:as_table())

      dt = DataTable{ a = { 1 } }
      dt:append("b", { 2, 3 })
      assert.same({ a = { 1 }, b = { 2, 3 } }, dt:as_table())
    end)

    it("rejects a value that is not an array", function()
      local dt = DataTable{ a = { 1 } }
      raises("DataTableError", "arrays", dt.append, dt, "b", nil)
      raises("DataTableError", "arrays", dt.append, dt, "b", "x")
      raises("DataTableError", "column names", dt.append, dt, 1, { 1 })
      assert.is_false(dt:has_column("b"))
    end)
  end)

  describe("lengths (test_get_lenghts)", function()
    it("reports column lengths, max and min", function()
      local dt = DataTable{ a = { 1, 2, 3 }, b = { 1, 2 } }
      assert.equal(3, dt:max_length())
      assert.equal(2, dt:min_length())
      assert.same({ 3, 2 }, dt:get_lengths())
      assert.same({}, DataTable():get_lengths())
      assert.equal(0, DataTable():max_length())
      assert.equal(0, DataTable():min_length())
    end)

    it("counts a nil hole given with table.pack as a missing cell", function()
      local dt = DataTable{ a = table.pack(nil) }
      assert.same({ 1 }, dt:get_lengths())
      dt = DataTable{ a = { 1, nil, 3 } }
      assert.same({ a = { 1, NOT_SET, 3 } }, dt:as_table())
      dt:append("b", table.pack(1, nil, nil))
      assert.same({ 1, NOT_SET, NOT_SET }, dt:as_table().b)
    end)
  end)

  describe("is_normalized", function()
    it("is true only when every column has the same length", function()
      assert.is_true(DataTable{ a = { 1, 2 }, b = { 3, 4 } }:is_normalized())
      assert.is_false(DataTable{ a = { 1, 2 }, b = { 3 } }:is_normalized())
      assert.is_false(DataTable{ a = { 1, 2 }, b = { 3, 4 }, c = {} }:is_normalized())
      assert.is_true(DataTable():is_normalized())
    end)
  end)

  describe("resolve_not_set_value", function()
    it("resolves to nil by default", function()
      local dt = DataTable{ a = { 1, 2, 3 }, b = { 3, 4 }, c = {} }
      assert.is_nil(dt:resolve_not_set_value("a", 1))
    end)

    it("can be overridden by a subclass, and then fills records and columns", function()
      local Filled = DataTable:extend{}
      function Filled:resolve_not_set_value(name, index) return name .. index end
      local dt = Filled{ a = { 1, 2 }, b = { 3 } }:normalize()
      assert.same({ a = 2, b = "b2" }, dt:get_record(2))
      assert.same({ 3, "b2" }, (dt:get_column("b")))
      -- DataTable:extend{} on the class made a subclass; the base is unchanged
      assert.is_false(rawequal(Filled, DataTable))
      assert.is_true(DataTable.is_instance(dt))
      assert.same({ a = 2 }, DataTable{ a = { 1, 2 }, b = { 3 } }:normalize():get_record(2))
    end)
  end)

  describe("normalize", function()
    it("pads with NOT_SET, which reads back as an absent field", function()
      local dt = DataTable{ a = { 1, 2, 3 }, b = { 3, 4 }, c = {} }
      assert.is_true(rawequal(dt:normalize(), dt))
      assert.same({
        a = { 1, 2, 3 },
        b = { 3, 4, NOT_SET },
        c = { NOT_SET, NOT_SET, NOT_SET },
      }, dt:as_table())
      assert.same({ a = 1, b = 3 }, dt:get_record(1))

      dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }:normalize()
      assert.same({ a = { 1, 2 }, b = { 3, 4 } }, dt:as_table())
    end)

    it("NOT_SET prints as NOT_SET and cannot be changed", function()
      assert.equal("NOT_SET", tostring(NOT_SET))
      assert.has_error(function() NOT_SET.x = 1 end)
    end)
  end)

  describe("filter_keys", function()
    it("makes a new table with only the listed columns", function()
      local dt = DataTable{ a = { 1 }, b = { 2 } }
      assert.is_false(rawequal(dt:filter_keys({ "a", "b" }), dt))
      assert.same({ a = { 1 }, b = { 2 } }, dt:filter_keys({ "a", "b", "c" }):as_table())
      assert.same({}, dt:filter_keys({}):as_table())
      assert.same({}, dt:filter_keys({ "d" }):as_table())
      assert.same({ "b", "a" }, dt:filter_keys({ "b", "a" }):get_column_names())
    end)
  end)

  describe("as_table (test_as_defaultdict)", function()
    it("returns a plain copy of the columns", function()
      local dt = DataTable{ a = { 1 }, b = { 2 } }
      local plain = dt:as_table()
      assert.same({ a = { 1 }, b = { 2 } }, plain)
      assert.is_nil(getmetatable(plain))
      plain.a[1] = 5
      assert.same({ 1 }, dt:as_table().a)
    end)
  end)

  describe("get_record", function()
    it("returns records by 1-based index", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      assert.same({ a = 1, b = 3 }, dt:get_record(1))
      assert.same({ a = 2, b = 4 }, dt:get_record(2))
    end)

    it("rejects an index out of range and a not normalized table", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      raises("DataTableError", "cannot get record 3, DataTable has 2 records", dt.get_record, dt, 3)
      raises("DataTableError", "cannot get record 0", dt.get_record, dt, 0)
      raises("DataTableError", "cannot get record %-1", dt.get_record, dt, -1)
      raises("DataTableError", "cannot get record 1.5", dt.get_record, dt, 1.5)
      local ragged = DataTable{ a = { 1, 2 }, b = { 3 } }
      raises("DataTableError", "not normalized", ragged.get_record, ragged, 2)
    end)
  end)

  describe("get_records", function()
    it("iterates over the records and then returns nil", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      local nxt = dt:get_records()
      local r1, i1 = nxt()
      assert.same({ a = 1, b = 3 }, r1)
      assert.equal(1, i1)
      assert.same({ a = 2, b = 4 }, (nxt()))
      assert.is_nil(nxt())
      assert.is_nil(nxt())
    end)

    it("works in a for loop, also as records()", function()
      local dt = DataTable{ a = { 1, 2 } }
      local indexes = {}
      for record, i in dt:records() do indexes[#indexes + 1] = i .. ":" .. record.a end
      assert.same({ "1:1", "2:2" }, indexes)
    end)

    it("refuses a not normalized table at once", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3 } }
      raises("DataTableError", "not normalized", dt.get_records, dt)
    end)
  end)

  describe("filter_records", function()
    local dt
    before_each(function()
      dt = DataTable{ a = { 1, 2, 1 }, b = { 3, 4, 5 } }
    end)

    it("keeps the records matching every pair (equals)", function()
      assert.same({ a = { 1, 1 }, b = { 3, 5 } }, dt:filter_records({ a = 1 }):as_table())
      assert.same({ a = { 2 }, b = { 4 } }, dt:filter_records({ a = 2, b = 4 }):as_table())
      assert.same({ a = {}, b = {} }, dt:filter_records({ a = 1, b = 4 }):as_table())
      assert.same({ a = {}, b = {} }, dt:filter_records({ c = 1 }, "equals"):as_table())
      assert.same({ a = { 1 }, b = { 3 } },
        dt:filter_records({ a = 1, b = 3 }, DataTable.Filter.EQUALS):as_table())
    end)

    it("keeps the records where any pair differs (not_equals)", function()
      assert.same({ a = { 2 }, b = { 4 } }, dt:filter_records({ a = 1 }, "not_equals"):as_table())
      assert.same({ a = { 1, 1 }, b = { 3, 5 } },
        dt:filter_records({ a = 2, b = 4 }, DataTable.Filter.NOT_EQUALS):as_table())
      assert.same({ a = { 1, 2, 1 }, b = { 3, 4, 5 } },
        dt:filter_records({ a = 1, b = 4 }, "not_equals"):as_table())
    end)

    it("keeps missing cells missing and the record_class", function()
      local Rec = DynamoRecord.LooseRecord
      local t = DataTable({ a = { 1, 1 }, b = { NOT_SET, 2 } }, Rec)
      local result = t:filter_records({ a = 1 })
      assert.same({ a = { 1, 1 }, b = { NOT_SET, 2 } }, result:as_table())
      assert.is_true(Rec.is_instance(result:get_record(1)))
      assert.same({ a = { 1 }, b = { NOT_SET } }, t:filter_records({ b = 2 }, "not_equals"):as_table())
    end)

    it("rejects a not normalized table and a bad operand", function()
      local ragged = DataTable{ a = { 1, 2, 1 }, b = { 3, 4 } }
      raises("DataTableError", "not normalized", ragged.filter_records, ragged, { a = 1 })
      raises("DataTableError", "operand", dt.filter_records, dt, { a = 1 }, "eq")
      raises("DataTableError", "query", dt.filter_records, dt, 1)
    end)
  end)

  describe("add_record", function()
    it("pads new columns with NOT_SET and returns self", function()
      local dt = DataTable{ a = { 1 }, b = { 3 } }
      local result = dt:add_record({ a = 5, c = 4 }, { c = 5 })
      assert.is_true(rawequal(result, dt))
      assert.same({
        a = { 1, 5, NOT_SET },
        b = { 3, NOT_SET, NOT_SET },
        c = { NOT_SET, 4, 5 },
      }, dt:as_table())
    end)

    it("adds to an empty table and chains", function()
      local dt = DataTable():add_record({ x = 1 }):add_record({ y = 2 })
      assert.equal(2, #dt)
      assert.same({ x = { 1, NOT_SET }, y = { NOT_SET, 2 } }, dt:as_table())
    end)

    it("refuses a not normalized table", function()
      local dt = DataTable{ a = { 1 }, b = {} }
      raises("DataTableError", "add records to a not normalized", dt.add_record, dt, { a = 1 })
    end)

    it("checks every record before adding any", function()
      local dt = DataTable{ a = { 1 } }
      raises("DataTableError", "record 3 must be a table", dt.add_record, dt, { a = 2 }, "x")
      raises("DataTableError", "record 3 has a field name", dt.add_record, dt, { a = 2 }, { [1] = 5 })
      assert.same({ a = { 1 } }, dt:as_table())
    end)

    it("add_records takes an array or an iterator", function()
      local dt = DataTable():add_records({ { a = 1 }, { a = 2 } })
      local src = DataTable{ a = { 3, 4 } }
      dt:add_records(src:get_records())
      assert.same({ a = { 1, 2, 3, 4 } }, dt:as_table())
      raises("DataTableError", "array or an iterator", dt.add_records, dt, 5)
    end)
  end)

  describe("get_column", function()
    it("returns values with nil for missing cells, and the count", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3, NOT_SET } }
      local a, n = dt:get_column("a")
      assert.same({ 1, 2 }, a)
      assert.equal(2, n)
      local b, nb = dt:get_column("b")
      assert.equal(3, b[1])
      assert.is_nil(b[2])
      assert.equal(2, nb)
      local c, nc = dt:get_column("c")
      assert.equal(0, count_keys(c))
      assert.equal(2, nc)
    end)

    it("refuses a not normalized table", function()
      local dt = DataTable{ a = { 1 }, b = {} }
      raises("DataTableError", "not normalized", dt.get_column, dt, "a")
    end)
  end)

  describe("has_column", function()
    it("is true when every named column exists", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      assert.is_true(dt:has_column())
      assert.is_true(dt:has_column("a"))
      assert.is_true(dt:has_column("b"))
      assert.is_true(dt:has_column("b", "a"))
      assert.is_false(dt:has_column("c"))
      assert.is_false(dt:has_column("a", "c"))
      assert.is_false(dt:has_column("A"))
    end)
  end)

  describe("has_set_column", function()
    it("is true when every named column exists without missing cells", function()
      local dt = DataTable{ a = { 1, 2 }, b = { NOT_SET, 3 } }
      assert.is_true(dt:has_set_column())
      assert.is_true(dt:has_set_column("a"))
      assert.is_false(dt:has_set_column("b"))
      assert.is_false(dt:has_set_column("c"))
      assert.is_false(dt:has_set_column("b", "a"))
      assert.is_false(dt:has_set_column("a", "c"))
    end)
  end)

  describe("add_table", function()
    it("adds the records of other tables and returns self", function()
      local other = DataTable{ a = { 5 }, b = { 6 } }
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      assert.is_true(rawequal(dt:add_table(other), dt))
      assert.same({ a = { 1, 2, 5 }, b = { 3, 4, 6 } }, dt:as_table())
      assert.same({ a = { 1, 2, 5, 5 }, b = { 3, 4, 6, 6 } },
        DataTable{ a = { 1, 2 }, b = { 3, 4 } }:add_table(other, other):as_table())
    end)

    it("can add a table to itself", function()
      local dt = DataTable{ a = { 1 } }
      dt:add_table(dt)
      assert.same({ a = { 1, 1 } }, dt:as_table())
    end)

    it("keeps missing cells of the other table missing", function()
      local dt = DataTable{ a = { 1 }, b = { 2 } }
      dt:add_table(DataTable{ a = { 3 } })
      assert.same({ a = { 1, 3 }, b = { 2, NOT_SET } }, dt:as_table())
    end)

    it("refuses not normalized tables on either side", function()
      local other = DataTable{ a = { 5 }, b = { 6 } }
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      raises("DataTableError", "not normalized", dt.add_table, dt, DataTable{ a = { 5 }, b = {} })
      local ragged = DataTable{ a = { 5 }, b = {} }
      raises("DataTableError", "not normalized", ragged.add_table, ragged, other)
      assert.same({ a = { 1, 2 }, b = { 3, 4 } }, dt:as_table())
    end)
  end)

  describe("column names", function()
    it("get_set_column_names counts an empty column as set until normalized", function()
      local dt = DataTable{ a = { 1 }, b = { NOT_SET }, c = {} }
      assert.same({ "a", "c" }, dt:get_set_column_names())
      dt:normalize()
      assert.same({ "a" }, dt:get_set_column_names())
    end)

    it("get_column_names lists every column in order", function()
      local dt = DataTable{ a = { 1 }, b = { NOT_SET }, c = {} }
      assert.same({ "a", "b", "c" }, dt:get_column_names())
      dt:append("B", { 1 })
      assert.same({ "a", "b", "c", "B" }, dt:get_column_names())
    end)
  end)

  describe("set", function()
    it("sets a cell in place and returns self", function()
      local dt = DataTable{ a = { 1, 2 }, b = { NOT_SET } }
      local result = dt:set("a", 2, "value_a"):set("b", 1, "value_b")
      assert.is_true(rawequal(result, dt))
      assert.is_true(dt == DataTable{ a = { 1, "value_a" }, b = { "value_b" } })
    end)

    it("rejects an unknown column or index", function()
      local dt = DataTable{ a = { 1, 2 }, b = { "value_b" } }
      raises("DataTableError", "column \"b\" does not have index 2", dt.set, dt, "b", 2, "value_b")
      raises("DataTableError", "column \"c\" does not exist", dt.set, dt, "c", 1, "value_c")
    end)

    it("W42: rejects zero, negative and fractional indexes", function()
      local dt = DataTable{ a = { 1, 2 } }
      raises("DataTableError", "does not have index %-1", dt.set, dt, "a", -1, "x")
      raises("DataTableError", "does not have index %-2", dt.set, dt, "a", -2, "x")
      raises("DataTableError", "does not have index 0", dt.set, dt, "a", 0, "x")
      raises("DataTableError", "does not have index 1.5", dt.set, dt, "a", 1.5, "x")
      raises("DataTableError", "does not have index", dt.set, dt, "a", "1", "x")
      assert.same({ a = { 1, 2 } }, dt:as_table())
    end)

    it("nil makes the cell missing", function()
      local dt = DataTable{ a = { 1, 2 }, b = { 3, 4 } }
      dt:set("b", 1, nil)
      assert.same({ a = 1 }, dt:get_record(1))
      assert.same({ "a" }, dt:get_set_column_names())
    end)
  end)

  describe("record_class (test_custom_record)", function()
    local UserRecord = DynamoRecord:extend{
      name = "UserRecord",
      fields = { name = { required = true }, age = true },
      computed = { test = function() return "value" end },
    }

    it("converts records going in and out", function()
      local dt = DataTable(nil, UserRecord)
      dt:add_record({ name = "Jon" })
      dt:add_record(UserRecord{ name = "test", age = 12 })
      assert.is_true(UserRecord.is_instance(dt:get_record(1)))
      local records = collect(dt:get_records())
      assert.is_true(records[1] == UserRecord{ name = "Jon" })
      assert.is_true(records[2] == UserRecord{ name = "test", age = 12 })
      assert.same({ name = "Jon", test = "value" }, records[1]:to_table())
      assert.same({ name = { "Jon", "test" }, test = { "value", "value" }, age = { NOT_SET, 12 } },
        dt:as_table())
    end)

    it("raises the record class's validation error and adds nothing", function()
      local dt = DataTable(nil, UserRecord):add_record({ name = "Jon" })
      raises("Validation", "UserRecord.name must be set", dt.add_record, dt, { unknown = "Jon" })
      raises("Validation", "UserRecord.name must be set", dt.add_record, dt, {})
      raises("Validation", "UserRecord.name", dt.add_record, dt, { name = "ok" }, {})
      assert.equal(1, #dt)
    end)

    it("passes instances through unchanged and converts plain records once", function()
      local made = 0
      local Counted = DynamoRecord.LooseRecord:extend{ name = "Counted" }
      function Counted:init(...)
        made = made + 1
        return DynamoRecord.init(self, ...)
      end
      local dt = DataTable(nil, Counted)
      dt:add_record(Counted{ a = 1 })
      assert.equal(1, made)
      dt:add_record({ a = 2 })
      assert.equal(2, made)
      local rec = dt:get_record(2)
      assert.equal(3, made)
      assert.is_true(Counted.is_instance(rec))

      local calls = 0
      local converter = DataTable(nil, function(r) calls = calls + 1; return r end)
      converter:add_record({ a = 1 })
      converter:get_record(1)
      assert.equal(2, calls)
    end)
  end)

  describe("drop_duplicates", function()
    local MyRecord = DynamoRecord:extend{
      name = "MyRecord",
      fields = { first_name = { required = true }, last_name = { required = true },
        sex = { required = true } },
    }
    local function people()
      return DataTable({
        first_name = { "ABC", "ABC", "DEF", "DEF", "DEF" },
        last_name = { "XYZ", "XYZ", "MNO", "MNO", "MNO" },
        sex = { "M", "M", "F", "M", "F" },
      }, MyRecord)
    end

    it("keeps the first record of each group over all columns", function()
      local dt = people()
      assert.is_true(MyRecord.is_instance(dt:get_record(1)))
      local dedup = dt:drop_duplicates()
      assert.is_true(MyRecord.is_instance(dedup:get_record(1)))
      assert.same({
        first_name = { "ABC", "DEF", "DEF" },
        last_name = { "XYZ", "MNO", "MNO" },
        sex = { "M", "F", "M" },
      }, dedup:as_table())
      assert.equal(5, #dt)
    end)

    it("compares only a subset of columns when given", function()
      local dt = people()
      local dedup = dt:drop_duplicates({ "first_name" })
      assert.is_true(MyRecord.is_instance(dedup:get_record(1)))
      assert.same({ first_name = { "ABC", "DEF" }, last_name = { "XYZ", "MNO" }, sex = { "M", "F" } },
        dedup:as_table())
      assert.same({
        first_name = { "ABC", "DEF", "DEF" },
        last_name = { "XYZ", "MNO", "MNO" },
        sex = { "M", "F", "M" },
      }, dt:drop_duplicates({ "last_name", "sex" }):as_table())
    end)

    it("rejects unknown subset columns and a not normalized table", function()
      local dt = people()
      raises("DataTableError", "invalid subset value%(s%) \"invalid_column\"",
        dt.drop_duplicates, dt, { "invalid_column" })
      local ragged = DataTable({
        first_name = { "ABC", "ABC", "DEF", "DEF", "DEF" },
        last_name = { "XYZ", "XYZ", "MNO", "MNO" },
        sex = { "M", "M", "F", "M", "F" },
      }, MyRecord)
      raises("DataTableError", "not normalized", ragged.drop_duplicates, ragged)
    end)

    it("W38: column names are case-sensitive", function()
      local dt = DataTable{ Name = { "a", "a" }, name = { "x", "y" } }
      assert.same({ Name = { "a" }, name = { "x" } }, dt:drop_duplicates({ "Name" }):as_table())
      assert.same({ Name = { "a", "a" }, name = { "x", "y" } }, dt:drop_duplicates({ "name" }):as_table())
      raises("DataTableError", "invalid subset", dt.drop_duplicates, dt, { "NAME" })
    end)

    it("W38: values are compared exactly, by type and content", function()
      local NULL = setmetatable({}, { __tostring = function() return "NULL" end })
      local dt = DataTable{
        v = {
          "ABC", "abc",          -- case differs
          "1", 1, 1.0,           -- a string is not a number; 1 and 1.0 are one number
          true, "true",
          NOT_SET, "NOT_SET",    -- a missing cell is not the string
          NULL, "NULL", NULL,    -- the same sentinel twice
          0.1, 1 / 10, 0.1 + 0.2, 0.3,   -- 1/10 is 0.1; 0.1 + 0.2 is not 0.3
        },
      }
      local kept = dt:drop_duplicates():as_table().v
      assert.equal(13, #kept)
      assert.same({ "ABC", "abc", "1", 1, true, "true", NOT_SET, "NOT_SET", NULL, "NULL" },
        { table.unpack(kept, 1, 10) })
      assert.equal(0.1, kept[11])
      assert.equal(0.30000000000000004, kept[12])
      assert.equal(0.3, kept[13])
    end)

    it("W38: rows whose joined text would collide stay distinct", function()
      local dt = DataTable{
        a = { "x,y", "x", "x|y", "x" },
        b = { "z", "y,z", "z", "y|z" },
      }
      assert.equal(4, #dt:drop_duplicates())
      local pairs_dt = DataTable{ a = { "[1]", "[" }, b = { "", "1]" } }
      assert.equal(2, #pairs_dt:drop_duplicates())
    end)

    it("W38: plain tables compare by content, objects by ==", function()
      local Num = {}
      Num.__eq = function(x, y) return x.v == y.v end
      Num.__tostring = function(x) return "Num(" .. x.v .. ")" end
      local dt = DataTable{
        v = {
          { a = 1, b = { 2, 3 } }, { b = { 2, 3 }, a = 1 }, { a = 1, b = { 3, 2 } },
          setmetatable({ v = 5 }, Num), setmetatable({ v = 5 }, Num), setmetatable({ v = 6 }, Num),
        },
      }
      local kept = dt:drop_duplicates():as_table().v
      assert.equal(4, #kept)
      assert.same({ a = 1, b = { 3, 2 } }, kept[2])
      assert.equal(5, kept[3].v)
      assert.equal(6, kept[4].v)
    end)
  end)

  describe("W7: missing cells never become values", function()
    it("records of a heterogeneous table lack the fields they never had", function()
      local dt = DataTable():add_record({ pk = "a", d = 1 }, { pk = "b" }, { pk = "c", e = "x" })
      local records = collect(dt:get_records())
      assert.same({ { pk = "a", d = 1 }, { pk = "b" }, { pk = "c", e = "x" } }, records)
      assert.equal(1, count_keys(records[2]))
      for _, record in ipairs(records) do
        for _, v in pairs(record) do assert.is_false(rawequal(v, NOT_SET)) end
      end
    end)

    it("keeps an explicit NULL-like value as a value", function()
      local NULL = setmetatable({}, { __tostring = function() return "NULL" end })
      local dt = DataTable():add_record({ pk = "a", d = NULL }, { pk = "b" })
      assert.is_true(rawequal(dt:get_record(1).d, NULL))
      assert.is_nil(dt:get_record(2).d)
      assert.same({ "pk" }, dt:get_set_column_names())
    end)

    it("a nil hole in a user column is a missing cell, not a value", function()
      local dt = DataTable{ pk = { "a", "b", "c" }, d = { 1, nil, 3 } }
      assert.same({ pk = "b" }, dt:get_record(2))
      assert.is_false(dt:has_set_column("d"))
    end)

    it("records passed through a record_class do not gain absent fields", function()
      local dt = DataTable(nil, DynamoRecord.LooseRecord)
      dt:add_record({ pk = "a", d = 1 }, { pk = "b" })
      assert.same({ pk = "b" }, dt:get_record(2):to_table())
    end)
  end)

  it("prints its columns", function()
    local dt = DataTable{ a = { 1, "x" }, b = { NOT_SET } }
    assert.equal('DataTable({a={1, "x"}, b={NOT_SET}})', tostring(dt))
  end)
end)
