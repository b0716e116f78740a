-- Specs for dynamo.DynamoRecord: the reference's tests/dictclasses/*
-- (DynamoDictClass and LooseDictClass) re-expressed for schemas declared as
-- data, plus W15 (child fields win) and W34 (no class-level key registry).
local DynamoRecord = require("dynamo.DynamoRecord")
local errors = require("dynamo.errors")

local function raises(code, pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(errors.is(err, code), "expected a " .. code .. " error, got " .. tostring(err))
  if pattern then
    assert.is_truthy(tostring(err.message):find(pattern), "message: " .. tostring(err.message))
  end
  return err
end

local function keys_of(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local MyRecord = DynamoRecord:extend{
  name = "MyRecord",
  fields = { name = { required = true }, age = true },
}

local NewRecord = MyRecord:extend{
  name = "NewRecord",
  fields = { last_name = { required = true }, any_data = { default = "any_data" }, "percent" },
  sanitizers = {
    age = function(_, value, opts) return math.max(value, opts.min_age or 10) end,
  },
  computed = {
    age_next = function(rec) return rec.age and rec.age + 1 end,
  },
}

local ImmutableRecord = DynamoRecord:extend{
  name = "ImmutableRecord",
  strict = true,
  fields = { my_list = { default = {} }, my_dict = { default = {} } },
  computed = { computed = function() return "test" end },
}

describe("dynamo.DynamoRecord", function()
  describe("a record class (test_init)", function()
    it("stores data as plain fields and reads absent fields as nil", function()
      local rec = MyRecord{ name = "test" }
      assert.equal("test", rec.name)
      assert.is_nil(rec.age)
      assert.same({ name = "test" }, rec:to_table())
      assert.equal('MyRecord({name="test"})', tostring(rec))
      assert.same({ "name" }, keys_of(rec))
      assert.is_true(rec == MyRecord{ name = "test" })
      assert.is_false(rec == MyRecord{ name = "other" })
    end)

    it("changes fields through set and plain assignment", function()
      local rec = MyRecord{ name = "test" }
      assert.is_true(rawequal(rec:set("name", "test2"), rec))
      rec.age = 42
      assert.same({ name = "test2", age = 42 }, rec:to_table())
      rec:set("age", 12):set("name", "test3")
      assert.same({ name = "test3", age = 12 }, rec:to_table())
    end)

    it("builds from other records and tables; nil removes a field", function()
      local rec = MyRecord{ name = "test3", age = 12 }
      local rec2 = MyRecord(rec):set("age", nil)
      assert.is_nil(rec2.age)
      assert.is_true(rec2 == { name = "test3" })
      assert.equal(12, rec.age)
      rec2:update({ age = 13 })
      assert.same({ name = "test3", age = 13 }, rec2:to_table())
      local merged = MyRecord({ name = "a", age = 1 }, nil, { age = 2 })
      assert.same({ name = "a", age = 2 }, merged:to_table())
    end)

    it("keeps values as they are (no number conversion)", function()
      local big = setmetatable({ text = "12.7" }, { __tostring = function(n) return n.text end })
      local rec = MyRecord{ name = "test", age = big }
      assert.is_true(rawequal(rec.age, big))
      assert.equal(12.5, MyRecord{ name = "test", age = 12.5 }.age)
    end)

    it("ignores unknown keys on construction", function()
      assert.same({ name = "test" }, MyRecord{ name = "test", unknown = 12, unknown2 = 12 }:to_table())
    end)

    it("refuses to set an unknown key", function()
      local rec = MyRecord{ name = "test" }
      raises("Validation", "MyRecord.unknown is not a field", rec.set, rec, "unknown", "test")
      raises("Validation", "MyRecord.unknown is not a field", function() rec.unknown = "test" end)
      assert.is_nil(rawget(rec, "unknown"))
    end)

    it("rejects an argument that is not a table", function()
      raises("Validation", "argument 1 must be a table", MyRecord, "name")
    end)
  end)

  describe("inheritance (test_inherited)", function()
    it("merges the parent schema with its own fields", function()
      assert.same({ "last_name", "name", "age", "any_data", "percent" }, NewRecord.get_field_names())
      assert.same({ "last_name", "name" }, NewRecord.get_required_field_names())
      assert.same({ "age_next" }, NewRecord.get_computed_field_names())
      assert.same({ "name", "age" }, MyRecord.get_field_names())
    end)

    it("applies defaults, ignores computed and unknown keys given to the constructor", function()
      local rec = NewRecord{ name = "test1", last_name = "test", age_next = 13, unknown = "test" }
      assert.same({ name = "test1", last_name = "test", any_data = "any_data" }, rec:to_table())
      assert.is_nil(rec.age_next)
    end)

    it("recomputes computed keys and sanitizes on set", function()
      local rec = NewRecord{ name = "test1", last_name = "test" }
      rec:set("age", 12)
      rec:set("any_data", 14)
      assert.same({ name = "test1", last_name = "test", age = 12, age_next = 13, any_data = 14 },
        rec:to_table())
      rec:set("age", 8)
      assert.equal(10, rec.age)
      assert.equal(11, rec.age_next)
      assert.equal(10, NewRecord{ name = "test1", last_name = "test", age = 6 }.age)
      rec:set("age", nil)
      assert.is_nil(rec.age)
      assert.is_nil(rawget(rec, "age_next"))
    end)

    it("requires the required fields of parent and child", function()
      local err = raises("Validation", "NewRecord.name must be set", NewRecord, { last_name = "test" })
      assert.equal("NewRecord", err.record_class)
      assert.equal("name", err.field)
      raises("Validation", "NewRecord.last_name must be set", NewRecord, { name = "test" })
      local rec = NewRecord{ name = "a", last_name = "b" }
      raises("Validation", "NewRecord.name must be set", rec.set, rec, "name", nil)
      assert.equal("a", rec.name)
    end)

    it("refuses to set a computed key, and update skips it", function()
      local rec = NewRecord{ name = "test1", last_name = "test" }
      raises("Validation", "NewRecord.age_next is computed", function() rec.age_next = 14 end)
      raises("Validation", "NewRecord.age_next is computed", rec.set, rec, "age_next", 14)
      rec:update({ age_next = 14 })
      assert.is_nil(rawget(rec, "age_next"))
      rec:set("age", 15)
      assert.equal(16, rec.age_next)
      rec:set("age", nil)
      assert.is_nil(rawget(rec, "age_next"))

      rec = NewRecord{ name = "test1", last_name = "test", age_next = 13 }
      rec:update({ age = 66 })
      assert.equal(66, rec.age)
      assert.equal(67, rec.age_next)
    end)

    it("W15: a child's declaration of a field wins over its parent's", function()
      local Parent = DynamoRecord:extend{
        name = "Parent",
        fields = { kind = { default = "parent" }, extra = true, code = { required = true } },
        computed = { label = function(rec) return "p:" .. tostring(rec.kind) end },
      }
      local Child = Parent:extend{
        name = "Child",
        fields = { kind = { required = true }, extra = false, code = { default = "c" } },
        computed = { label = function(rec) return "c:" .. tostring(rec.kind) end },
      }
      raises("Validation", "Child.kind must be set", Child, {})
      local rec = Child{ kind = "k", extra = 1 }
      assert.same({ kind = "k", code = "c", label = "c:k" }, rec:to_table())
      assert.same({ "kind", "code" }, Child.get_field_names())
      -- the parent is unchanged
      assert.same({ kind = "parent", code = 1, extra = 2, label = "p:parent" },
        Parent{ code = 1, extra = 2 }:to_table())
      raises("Validation", "Parent.code must be set", Parent, {})
    end)

    it("a child can turn a computed key into a field and back", function()
      local A = DynamoRecord:extend{ name = "A", computed = { x = function() return 1 end } }
      local B = A:extend{ name = "B", fields = { x = true } }
      local C = B:extend{ name = "C", computed = { x = function() return 3 end } }
      assert.same({ x = 1 }, A{ x = 9 }:to_table())
      assert.same({ x = 9 }, B{ x = 9 }:to_table())
      assert.same({ x = 3 }, C{ x = 9 }:to_table())
    end)

    it("inherits methods and lets subclasses add their own", function()
      local Person = DynamoRecord:extend{
        name = "Person",
        fields = { first = true, last = true },
        full_name = function(self) return self.first .. " " .. self.last end,
      }
      local Employee = Person:extend{ name = "Employee", fields = { company = true } }
      function Employee:badge() return self:full_name() .. " @ " .. self.company end
      local e = Employee{ first = "Ada", last = "L", company = "X" }
      assert.equal("Ada L @ X", e:badge())
      assert.same({ "company", "first", "last" }, keys_of(e))
    end)
  end)

  describe("defaults and strictness (test_immutability)", function()
    it("copies table defaults per instance", function()
      local record1 = ImmutableRecord{ my_dict = { test = { "value" } } }
      local record2 = ImmutableRecord()
      table.insert(record1.my_list, 1)
      table.insert(record1.my_list, 2)
      assert.same({ 1, 2 }, record1.my_list)
      assert.same({}, record2.my_list)
      assert.same({ test = { "value" } }, record1.my_dict)
      assert.same({}, record2.my_dict)
      record2.my_dict.x = 1
      assert.same({}, ImmutableRecord().my_dict)
    end)

    it("calls function defaults once per instance", function()
      local calls = 0
      local Rec = DynamoRecord:extend{
        name = "Rec",
        fields = { tags = { default = function() calls = calls + 1; return { calls } end } },
      }
      local a, b = Rec(), Rec()
      assert.same({ 1 }, a.tags)
      assert.same({ 2 }, b.tags)
      assert.equal(2, calls)
      assert.same({ "x" }, Rec{ tags = { "x" } }.tags)
    end)

    it("ignores a computed key given to the constructor", function()
      assert.equal("test", ImmutableRecord{ computed = "new" }.computed)
    end)

    it("raises on unknown keys when strict", function()
      local err = raises("Validation", "ImmutableRecord.unknown is not a field", ImmutableRecord,
        { unknown = 12 })
      assert.equal("unknown", err.field)
      local rec = ImmutableRecord()
      raises("Validation", "ImmutableRecord.unknown is not a field", rec.update, rec,
        { my_list = { 1 } }, { unknown = 1 })
      assert.same({}, rec.my_list)
    end)
  end)

  describe("sanitize", function()
    it("re-runs the sanitizers with options", function()
      local rec = NewRecord{ name = "test", last_name = "test" }
      assert.is_nil(rec.age)
      rec:sanitize()
      assert.is_nil(rec.age)
      rec:set("age", 6)
      assert.equal(10, rec.age)
      assert.is_true(rawequal(rec:sanitize({ min_age = 18 }), rec))
      assert.equal(18, rec.age)
      assert.equal(19, rec.age_next)
      rec:set("age", 6)
      assert.equal(10, rec.age)
    end)

    it("applies an array of sanitizers in order, and nil removes the field", function()
      local Rec = DynamoRecord:extend{
        name = "Rec",
        fields = { code = true },
        sanitizers = {
          code = {
            function(_, v) return (v:gsub("%s", "")) end,
            function(_, v) if v == "" then return nil end return v:upper() end,
          },
        },
      }
      assert.equal("AB", Rec{ code = " a b " }.code)
      assert.is_nil(Rec{ code = "  " }.code)
      local rec = Rec{ code = "x" }
      rec:update({ code = " y" })
      assert.equal("Y", rec.code)
    end)

    it("gives the record to the sanitizer", function()
      local Rec = DynamoRecord:extend{
        name = "Rec",
        fields = { unit = { default = "cm" }, size = true },
        sanitizers = { size = function(rec, v) return rec.unit == "m" and v * 100 or v end },
      }
      assert.equal(200, Rec{ unit = "m", size = 2 }.size)
      assert.equal(2, Rec{ size = 2 }.size)
    end)
  end)

  describe("LooseRecord (test_loose_dictclass)", function()
    local MyLoose = DynamoRecord.LooseRecord:extend{
      name = "MyLoose",
      fields = { required = { required = true }, value = { default = 5 } },
      computed = { computed = function() return "test" end },
    }

    it("accepts any key and applies defaults and computed keys", function()
      local result = MyLoose{ required = 1, new = "test" }
      assert.same({ new = "test", required = 1, value = 5, computed = "test" }, result:to_table())
      result:set("new", "asd")
      result:set("newest", "asd")
      result:update({ other = "test" })
      result.plain = true
      assert.same({ new = "asd", newest = "asd", other = "test", plain = true, required = 1, value = 5,
        computed = "test" }, result:to_table())
    end)

    it("still refuses computed keys and requires required fields", function()
      local result = MyLoose{ required = 1 }
      raises("Validation", "MyLoose.computed is computed", result.set, result, "computed", "x")
      raises("Validation", "MyLoose.required must be set", MyLoose, { new = "test" })
      assert.equal(1, MyLoose{ required = 1 }.required)
      raises("Validation", "strings only", result.set, result, 1, "x")
      raises("Validation", "strings only", MyLoose, { required = 1, [2] = "x" })
    end)

    it("reads an absent key as nil", function()
      local result = MyLoose{ required = 1 }
      assert.is_nil(result.test)
      assert.is_nil(result["test"])
    end)

    it("W34: keys seen by one instance never leak to the class or other instances", function()
      local before = keys_of(MyLoose)
      local a = MyLoose{ required = 1, seen_once = "x" }
      a:set("set_later", 1)
      a:update({ updated = 2 })
      local b = MyLoose{ required = 2 }
      assert.is_nil(b.seen_once)
      assert.is_nil(b.set_later)
      assert.is_nil(b.updated)
      assert.same({ "computed", "required", "value" }, keys_of(b))
      assert.same({ "required", "value" }, MyLoose.get_field_names())
      assert.same(before, keys_of(MyLoose))
      local other = DynamoRecord.LooseRecord{ z = 1 }
      assert.same({ "z" }, keys_of(other))
      assert.same({}, DynamoRecord.LooseRecord.get_field_names())
    end)

    it("is loose, and a plain record class is not", function()
      assert.is_true(MyLoose.is_loose())
      assert.is_false(MyRecord.is_loose())
      assert.is_true(ImmutableRecord.is_strict())
    end)
  end)

  describe("instances", function()
    it("pairs() yields only the data", function()
      local rec = NewRecord{ name = "n", last_name = "l", age = 20 }
      assert.same({ "age", "age_next", "any_data", "last_name", "name" }, keys_of(rec))
      for _, v in pairs(rec) do assert.is_not.equal("function", type(v)) end
    end)

    it("class configuration and reserved names do not leak into field reads", function()
      local rec = DynamoRecord.LooseRecord{ a = 1 }
      assert.is_nil(rec.fields)
      assert.is_nil(rec.computed)
      assert.is_nil(rec.sanitizers)
      assert.is_nil(rec.loose)
      assert.is_nil(rec.__index)
      assert.is_nil(rec.super)
      assert.equal("function", type(rec.set))
    end)

    it("a declared field shadows a method of the same name", function()
      local Rec = DynamoRecord:extend{ name = "Rec", fields = { update = true } }
      local rec = Rec{}
      assert.is_nil(rec.update)
      DynamoRecord.update(rec, { update = "x" })
      assert.equal("x", rec.update)
    end)

    it("keeps a NULL-like value as a value that satisfies required", function()
      local NULL = setmetatable({}, { __tostring = function() return "NULL" end })
      local rec = MyRecord{ name = NULL, age = NULL }
      assert.is_true(rawequal(rec.name, NULL))
      assert.is_true(rawequal(rec.age, NULL))
      assert.equal("MyRecord({age=NULL, name=NULL})", tostring(rec))
    end)

    it("prints sorted keys and nested values", function()
      local Loose = DynamoRecord.LooseRecord
      assert.equal('LooseRecord({age=34, list={1, "a"}, map={k=true}, name="x", ["two words"]=1})',
        tostring(Loose{ name = "x", age = 34, list = { 1, "a" }, map = { k = true }, ["two words"] = 1 }))
    end)

    it("to_table returns a plain shallow copy", function()
      local tags = { "a" }
      local rec = DynamoRecord.LooseRecord{ tags = tags }
      local plain = rec:to_table()
      assert.is_nil(getmetatable(plain))
      assert.is_true(rawequal(plain.tags, tags))
      plain.extra = 1
      assert.is_nil(rawget(rec, "extra"))
    end)

    it("compares equal by data, including nested plain tables", function()
      local Loose = DynamoRecord.LooseRecord
      assert.is_true(Loose{ a = { 1, { b = 2 } } } == Loose{ a = { 1, { b = 2 } } })
      assert.is_false(Loose{ a = { 1, { b = 2 } } } == Loose{ a = { 1, { b = 3 } } })
      assert.is_false(Loose{ a = 1 } == Loose{ a = 1, b = 2 })
      assert.is_true({ a = 1 } == Loose{ a = 1 })
    end)

    it("validate() checks a record changed by plain assignment", function()
      local rec = MyRecord{ name = "x" }
      rec.name = nil
      raises("Validation", "MyRecord.name must be set", rec.validate, rec)
      rec.name = "y"
      assert.is_true(rawequal(rec:validate(), rec))
      local strict = ImmutableRecord()
      rawset(strict, "sneaky", 1)
      raises("Validation", "ImmutableRecord.sneaky is not a field", strict.validate, strict)
    end)

    it("plain assignment to an existing field stores the raw value", function()
      local rec = NewRecord{ name = "n", last_name = "l", age = 20 }
      rec.age = 1
      assert.equal(1, rec.age)
      assert.equal(21, rec.age_next)
      rec:sanitize()
      assert.equal(10, rec.age)
      assert.equal(11, rec.age_next)
    end)
  end)

  describe("definitions", function()
    local function bad(def, pattern)
      raises("Validation", pattern, DynamoRecord.extend, DynamoRecord, def)
    end

    it("raise when malformed", function()
      bad({ name = "X", fields = { a = { required = true, default = 1 } } }, "X: field \"a\" cannot be required")
      bad({ name = "X", fields = { a = { requried = true } } }, "unknown option \"requried\"")
      bad({ name = "X", fields = { a = 5 } }, "must be declared as true or a table")
      bad({ name = "X", fields = 5 }, "fields must be a table")
      bad({ name = "X", fields = { [""] = true } }, "non%-empty strings")
      bad({ name = "X", computed = { a = 5 } }, "computed \"a\" must be a function")
      bad({ name = "X", fields = { a = true }, computed = { a = function() end } }, "both a field and computed")
      bad({ name = "X", sanitizers = { a = function(_, v) return v end } }, "not a field")
      bad({ name = "X", fields = { a = true }, sanitizers = { a = { 5 } } }, "sanitizer 1 of \"a\"")
      bad({ name = "X", fields = { a = true }, sanitizers = { a = "f" } }, "function or an array")
      bad({ name = "X", strict = true, loose = true }, "both strict and loose")
      bad({ name = "X", strict = "yes" }, "strict must be a boolean")
      bad({ name = "" }, "name must be")
      bad(5, "definition must be a table")
    end)

    it("keep the class name for messages and tostring", function()
      assert.equal("class MyRecord", tostring(MyRecord))
      local Unnamed = MyRecord:extend{ fields = { x = true } }
      assert.equal("MyRecord({name=\"a\"})", tostring(Unnamed{ name = "a" }))
    end)

    it("allow a loose record to sanitize undeclared keys", function()
      local Rec = DynamoRecord.LooseRecord:extend{
        name = "Rec",
        sanitizers = { email = function(_, v) return v:lower() end },
      }
      assert.equal("a@b.c", Rec{ email = "A@B.C" }.email)
    end)
  end)
end)
