-- The codec of dynamo.core and the value types of dynamo.types: Lua values
-- <-> DynamoDB AttributeValue JSON, plain JSON, marshal/unmarshal.
local core = require("dynamo.core")
local types = require("dynamo.types")

local NULL, number, binary, set, list, map = types.NULL, types.number, types.binary, types.set, types.list, types.map
local encode_item, decode_item = core.encode_item, core.decode_item
local encode_av, decode_av = core.encode_av, core.decode_av
local json_encode, json_decode = core.json_encode, core.json_decode

-- All 256 byte values, and their base64.
local ALL_BYTES = {}
for i = 0, 255 do ALL_BYTES[#ALL_BYTES + 1] = string.char(i) end
ALL_BYTES = table.concat(ALL_BYTES)
local ALL_BYTES_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZH"
  .. "SElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SV"
  .. "lpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj"
  .. "5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w=="

local N38 = "12345678901234567890123456789012345678"

-- The error message of f(...), which must fail.
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error")
  return e
end

-- Deep comparison that also checks Lua number subtypes and metatables of
-- lists, maps and sets.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math.type(a) == math.type(b) and a == b end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do if not same(v, rawget(b, k)) then return false end end
  for k in pairs(b) do if rawget(a, k) == nil then return false end end
  return true
end

describe("dynamo.core codec", function()
  describe("the value table", function()
    -- value, its AttributeValue JSON, and what decoding that JSON gives
    -- (nil: the value itself)
    local rows = {
      { "x", '{"S":"x"}' },
      { "", '{"S":""}' },
      { 'h\xc3\xa9 "q" \\ \n\t\1', '{"S":"h\xc3\xa9 \\"q\\" \\\\ \\n\\t\\u0001"}' },
      { 34, '{"N":"34"}' },
      { -7, '{"N":"-7"}' },
      { 0, '{"N":"0"}' },
      { math.maxinteger, '{"N":"9223372036854775807"}' },
      { math.mininteger, '{"N":"-9223372036854775808"}' },
      { 0.1, '{"N":"0.1"}' },
      { 1e-7, '{"N":"0.0000001"}' },
      { 1e21, '{"N":"1000000000000000000000"}' },
      { 100.25, '{"N":"100.25"}' },
      { -123.25, '{"N":"-123.25"}' },
      { 0.1 + 0.2, '{"N":"0.30000000000000004"}' },
      { 3.0, '{"N":"3"}', 3 },
      { -0.0, '{"N":"0"}', 0 },
      { true, '{"BOOL":true}' },
      { false, '{"BOOL":false}' },
      { NULL, '{"NULL":true}' },
    }
    for _, row in ipairs(rows) do
      local value, json, back = row[1], row[2], row[3]
      if back == nil then back = value end
      it(("encodes %s (%s) and decodes it back"):format(json, math.type(value) or type(value)), function()
        assert.equal(json, encode_av(value))
        local got = decode_av(json)
        assert.is_true(same(back, got), ("decoded %s as %s"):format(json, tostring(got)))
      end)
    end

    it("keeps every digit of a dynamo.number", function()
      for _, text in ipairs { "123456789012345678901234567890.5", N38, "-0.000000000000000000001234567890123456789" } do
        local json = '{"N":"' .. text .. '"}'
        assert.equal(json, encode_av(number(text)))
        local got = decode_av(json)
        assert.is_true(types.is_number(got))
        assert.equal(text, tostring(got))
      end
    end)

    it("encodes binary as base64, all 256 byte values", function()
      assert.equal('{"B":"' .. ALL_BYTES_B64 .. '"}', encode_av(binary(ALL_BYTES)))
      local got = decode_av('{"B":"' .. ALL_BYTES_B64 .. '"}')
      assert.is_true(types.is_binary(got))
      assert.equal(ALL_BYTES, got:bytes())
      assert.equal('{"B":""}', encode_av(binary("")))
      assert.equal("", decode_av('{"B":""}'):bytes())
    end)

    it("encodes sets as SS / NS / BS", function()
      assert.equal('{"SS":["a","b"]}', encode_av(set { "a", "b" }))
      assert.equal('{"NS":["1","2.5","' .. N38 .. '"]}', encode_av(set { 1, 2.5, number(N38) }))
      assert.equal('{"BS":["AA==","AQ=="]}', encode_av(set { binary("\0"), binary("\1") }))
      local ss = decode_av('{"SS":["a","b"]}')
      assert.equal("SS", ss:type())
      assert.same({ "a", "b" }, { ss[1], ss[2] })
      local ns = decode_av('{"NS":["1","2.5","' .. N38 .. '"]}')
      assert.equal("NS", core.type_of(ns))
      assert.equal(1, ns[1])
      assert.equal("integer", math.type(ns[1]))
      assert.equal(2.5, ns[2])
      assert.equal(N38, tostring(ns[3]))
      local bs = decode_av('{"BS":["AA==","AQ=="]}')
      assert.equal("BS", bs:type())
      assert.equal("\1", bs[2]:bytes())
    end)

    it("encodes sequences and dynamo.list as L", function()
      assert.equal('{"L":[{"N":"1"},{"S":"a"},{"L":[]}]}', encode_av { 1, "a", list {} })
      assert.equal('{"L":[]}', encode_av(list()))
      local l = decode_av('{"L":[{"N":"1"},{"S":"a"},{"L":[]}]}')
      assert.equal("L", core.type_of(l))
      assert.equal(getmetatable(list()), getmetatable(l))
      assert.equal(1, l[1])
      assert.equal("a", l[2])
      assert.equal("L", core.type_of(l[3]))
      assert.equal(0, #l[3])
    end)

    it("encodes string-keyed tables, dynamo.map and {} as M", function()
      assert.equal('{"M":{"a":{"N":"1"},"b":{"M":{}}}}', encode_av { b = {}, a = 1 })
      assert.equal('{"M":{}}', encode_av {})
      assert.equal('{"M":{}}', encode_av(map()))
      local m = decode_av('{"M":{"a":{"N":"1"},"b":{"M":{}}}}')
      assert.is_nil(getmetatable(m)) -- a non-empty map is a plain table
      assert.equal(1, m.a)
      assert.equal("M", core.type_of(m.b))
      assert.equal(getmetatable(map()), getmetatable(m.b)) -- an empty one stays a map
    end)

    it("decodes N by value: integer, float or dynamo.number", function()
      local cases = {
        { "9223372036854775807", "integer" }, { "-9223372036854775808", "integer" },
        { "9223372036854775808", "number" }, { "0.1", "float" }, { "123.25", "float" },
        { "0.30000000000000004", "float" }, { "0.3000000000000000444", "number" },
        { "1000000000000000000000", "float" }, { N38, "number" },
      }
      for _, c in ipairs(cases) do
        local v = decode_av('{"N":"' .. c[1] .. '"}')
        local kind = types.is_number(v) and "number" or math.type(v)
        assert.equal(c[2], kind, c[1])
        assert.equal('{"N":"' .. c[1] .. '"}', encode_av(v))
      end
    end)
  end)

  describe("items", function()
    it("writes attributes in byte order, whatever the insertion order", function()
      local a = { zeta = 1, alpha = "a", Beta = true, ["\xc3\xa9"] = 2, alpha2 = 3 }
      local b = {}
      for _, k in ipairs { "alpha2", "\xc3\xa9", "Beta", "alpha", "zeta" } do b[k] = a[k] end
      local want = '{"Beta":{"BOOL":true},"alpha":{"S":"a"},"alpha2":{"N":"3"},"zeta":{"N":"1"},"\xc3\xa9":{"N":"2"}}'
      assert.equal(want, encode_item(a))
      assert.equal(want, encode_item(b))
    end)

    it("sorts big maps and nested maps too", function()
      local t, keys = {}, {}
      for i = 1, 300 do
        local k = ("k%03d"):format((i * 7919) % 300)
        t[k] = { inner = i, [k] = i }
        keys[#keys + 1] = k
      end
      table.sort(keys)
      local got = encode_item(t)
      local pos = 0
      for _, k in ipairs(keys) do
        local at = got:find('"' .. k .. '":{"M":{"inner"', 1, true)
        assert.is_truthy(at and at > pos, k)
        pos = at
      end
      assert.same(t, decode_item(got))
    end)

    it("round-trips canonical AV JSON byte for byte", function()
      local docs = {
        '{"a":{"S":"x"},"b":{"N":"' .. N38 .. '"},"c":{"N":"-9223372036854775808"},"d":{"N":"9223372036854775807"}}',
        '{"f1":{"N":"0.1"},"f2":{"N":"0.0000001"},"f3":{"N":"123.25"},"f4":{"N":"-0.5"},"f5":{"N":"0"}}',
        '{"bin":{"B":"' .. ALL_BYTES_B64 .. '"},"bs":{"BS":["","AA=="]},"ns":{"NS":["1","0.5","' .. N38 .. '"]}}',
        '{"e":{"L":[]},"m":{"M":{}},"n":{"NULL":true},"t":{"BOOL":true},"u":{"BOOL":false}}',
        '{"deep":{"M":{"l":{"L":[{"M":{"x":{"L":[{"N":"1"},{"S":"\\u0000\\"\\\\\\n"}]}}},{"SS":["b","a"]}]}}}}',
        '{"":{"S":"empty name"},"odd key":{"S":"h\xc3\xa9\xf0\x9f\x98\x80"},"z":{"S":""}}',
        '{}',
      }
      for _, doc in ipairs(docs) do assert.equal(doc, encode_item(decode_item(doc))) end
    end)

    it("decodes escapes, surrogate pairs and whitespace", function()
      local item = decode_item(' { "a" : { "S" : "\\u00e9\\ud83d\\ude00\\/" } ,\n"b":{"N":"1"}}\n')
      assert.equal("\xc3\xa9\xf0\x9f\x98\x80/", item.a)
      assert.equal(1, item.b)
    end)

    it("takes a root name for its messages", function()
      assert.equal("record.x: a function cannot be stored in DynamoDB", err_of(encode_item, { x = print }, "record"))
    end)

    it("refuses anything but a map as an item", function()
      assert.equal("item: an item must be a map (table with string keys), got a sequence", err_of(encode_item, { 1, 2 }))
      assert.equal("item: an item must be a table with string keys, got string", err_of(encode_item, "x"))
      assert.equal("item: an item must be a table with string keys, got nil", err_of(encode_item, nil))
    end)
  end)

  describe("errors name the path", function()
    local cases = {
      { { address = { geo = { 1, 0 / 0 } } }, "item.address.geo[2]: NaN cannot be stored in DynamoDB" },
      { { a = { b = { 1, 2, 1 / 0 } } }, "item.a.b[3]: inf cannot be stored in DynamoDB" },
      { { n = -1 / 0 }, "item.n: -inf cannot be stored in DynamoDB" },
      { { ["odd key"] = { f = print } }, 'item["odd key"].f: a function cannot be stored in DynamoDB' },
      { { ['q"\\'] = print }, 'item["q\\"\\\\"]: a function cannot be stored in DynamoDB' },
      { { ["1st"] = { ["\n"] = print } }, 'item["1st"]["\\10"]: a function cannot be stored in DynamoDB' },
      { { u = io.stdout }, "item.u: a userdata cannot be stored in DynamoDB" },
      { { co = coroutine.create(print) }, "item.co: a thread cannot be stored in DynamoDB" },
      { { x = { 1, a = 2 } }, "item.x: table mixes sequence and string keys" },
      { { x = { 1, nil, 3 } }, "item.x: sparse array (no value at [2])" },
      { { x = { [2] = "a" } }, "item.x: sparse array or integer key in a map (key 2)" },
      { { x = { [1.5] = "a" } }, "item.x: table key 1.5 is not a sequence index nor a string" },
      { { x = { [true] = "a" } }, "item.x: table key of type boolean (map keys must be strings)" },
      { { l = list { 1, a = 1 } }, "item.l: table mixes sequence and string keys" },
      { { m = map { 1 } }, "item.m: sparse array or integer key in a map (key 1)" },
      { { big = 1e200 }, "item.big: number too large for DynamoDB (magnitude above "
        .. "9.9999999999999999999999999999999999999E+125)" },
      { { tiny = -1e-200 }, "item.tiny: number too small for DynamoDB (non-zero magnitude below 1E-130)" },
      { { s = "a\xffb" }, "item.s: string is not valid UTF-8 (byte 2); use dynamo.binary for raw bytes" },
      { { l = { "ok", "\xed\xa0\x80" } }, "item.l[2]: string is not valid UTF-8 (byte 1); use dynamo.binary for raw bytes" },
      { { m = { ["k\xc0"] = 1 } }, "item.m: map key is not valid UTF-8 (byte 2)" },
      { { tags = set {} }, "item.tags: empty set cannot be stored in DynamoDB" },
      { { tags = set({}, "SS") }, "item.tags: empty set cannot be stored in DynamoDB" },
      { { h = { { x = { y = print } } } }, "item.h[1].x.y: a function cannot be stored in DynamoDB" },
    }
    for _, c in ipairs(cases) do
      it(c[2], function() assert.equal(c[2], err_of(encode_item, c[1])) end)
    end

    it("stops nesting deeper than 32 levels", function()
      local root, cur = {}, nil
      cur = root
      for _ = 1, 32 do
        cur.a = {}
        cur = cur.a
      end
      assert.is_string(encode_item(root)) -- 32 levels of maps under the item
      cur.a = {}
      assert.equal("item" .. string.rep(".a", 33) .. ": nesting deeper than 32 levels", err_of(encode_item, root))
      local l = { 1 }
      l[2] = l -- a cycle ends the same way
      assert.equal("item.l" .. string.rep("[2]", 32) .. ": nesting deeper than 32 levels", err_of(encode_item, { l = l }))
    end)

    it("refuses numbers that break precision or range at construction", function()
      assert.matches("dynamo.number: number has more than 38 significant digits", err_of(number, N38 .. "9"), 1, true)
      assert.matches("dynamo.number: number too large for DynamoDB", err_of(number, "1e126"), 1, true)
      assert.matches("dynamo.number: number too small for DynamoDB", err_of(number, "1e-131"), 1, true)
      assert.matches('dynamo.number: "12abc" is not a decimal number', err_of(number, "12abc"), 1, true)
      assert.matches("dynamo.number: NaN cannot be stored in DynamoDB", err_of(number, 0 / 0), 1, true)
      assert.matches("number or decimal string expected", err_of(number, {}), 1, true)
    end)
  end)

  describe("dynamo.number", function()
    it("holds the canonical text", function()
      local cases = {
        { "1e2", "100" }, { "-0", "0" }, { "00012.3400", "12.34" }, { "-.5", "-0.5" }, { "1.5E-3", "0.0015" },
        { 42, "42" }, { 0.1, "0.1" }, { 1e21, "1000000000000000000000" }, { "1E-130", "0." .. ("0"):rep(129) .. "1" },
      }
      for _, c in ipairs(cases) do assert.equal(c[2], tostring(number(c[1]))) end
      local n = number("5")
      assert.equal(n, number(n)) -- already one: returned as is
      assert.is_true(rawequal(n, number(n)))
    end)

    it("compares exactly", function()
      local a, b = number(N38), number("12345678901234567890123456789012345679")
      assert.is_true(a < b)
      assert.is_false(b < a)
      assert.is_true(a <= a)
      assert.is_true(a == number(N38 .. ".0"))
      assert.is_false(a == b)
      assert.is_true(number("-2") < number("-1.5"))
      assert.is_true(number("0.5") < number("0.55"))
      assert.is_true(number("10") > number("9.99"))
      -- with Lua numbers: a float stands for its shortest text
      assert.is_true(number("0.1") <= 0.1)
      assert.is_true(0.1 <= number("0.1"))
      assert.is_true(number("0.1") < 0.2)
      assert.is_true(number("9007199254740993") > 9007199254740992)
      assert.is_true(number("1e125") < 1e300)
      assert.is_true(number("-1e125") > -1e300)
      assert.is_true(number("0") < 5e-324)
      assert.is_true(number("1e-130") > 5e-324)
      assert.is_false(number("1") < 0 / 0)
      assert.is_false(number("1") == 1) -- Lua does not call __eq for a userdata and a number
    end)

    it("converts, concatenates and negates", function()
      assert.equal(42, number("42"):tonumber())
      assert.equal("integer", math.type(number("42"):tonumber()))
      assert.equal(0.25, number("0.25"):tonumber())
      assert.equal(1.2345678901234568e37, number(N38):tonumber())
      assert.equal("n=1.5", "n=" .. number("1.50"))
      assert.equal("1.5!", number("1.50") .. "!")
      assert.equal("-1.5", tostring(-number("1.5")))
      assert.equal("1.5", tostring(-number("-1.5")))
      assert.equal("0", tostring(-number("0")))
      assert.equal("1.5", number("1.5"):text())
    end)
  end)

  describe("dynamo.binary", function()
    it("holds bytes", function()
      local b = binary("\0\1\255")
      assert.equal("\0\1\255", b:bytes())
      assert.equal(3, #b)
      assert.equal(3, b:len())
      assert.is_true(b == binary("\0\1\255"))
      assert.is_false(b == binary("\0\1"))
      assert.equal("\0\1\255", tostring(b))
      assert.equal("0001ff", b:hex())
      assert.equal("AAH/", b:base64())
      assert.equal(b, binary(b))
      assert.equal('BS{dynamo.binary("AAH/")}', tostring(set { b }))
      assert.has_error(function() binary(5) end)
    end)
  end)

  describe("dynamo.set", function()
    it("drops duplicates, numbers by canonical text", function()
      local s = set { "a", "b", "a" }
      assert.equal(2, #s)
      assert.equal("SS", s:type())
      local n = set { 1, 1.0, number("1.00"), 2.5, number("2.50") }
      assert.equal(2, #n)
      assert.equal('{"NS":["1","2.5"]}', encode_av(n))
      local bs = set { binary("x"), binary("x"), binary("y") }
      assert.equal(2, #bs)
    end)

    it("has the methods of a set", function()
      local s = set { "a", "b" }
      assert.is_true(s:has("a"))
      assert.is_false(s:has("z"))
      assert.is_false(s:has(1))
      assert.equal(s, s:add("z"))
      s:add("a")
      assert.equal(3, #s)
      assert.is_true(s:remove("a"))
      assert.is_false(s:remove("a"))
      assert.is_false(s:has("a"))
      assert.is_true(s:has("b") and s:has("z"))
      local seen = {}
      for v in s:values() do seen[#seen + 1] = v end
      assert.same({ "b", "z" }, seen)
      seen = {}
      for i, v in ipairs(s) do seen[i] = v end
      assert.same({ "b", "z" }, seen)
      seen = {}
      for i, v in pairs(s) do seen[i] = v end
      assert.same({ "b", "z" }, seen)
      assert.equal('SS{"b", "z"}', tostring(s))
      assert.has_error(function() s[5] = "x" end, "dynamo.set: change a set with s:add(v) and s:remove(v)")
    end)

    it("compares by elements", function()
      assert.is_true(set { "a", "b" } == set { "b", "a" })
      assert.is_false(set { "a" } == set { "a", "b" })
      assert.is_false(set { "1" } == set { 1 })
      assert.is_true(set { 1, 2 } == set { number("2.0"), 1.0 })
      assert.is_true(set {} == set({}, "NS"))
    end)

    it("types an empty set by its first element", function()
      local s = set {}
      assert.is_nil(s:type())
      assert.is_nil(core.type_of(s))
      assert.equal("set{}", tostring(s))
      s:add(3)
      assert.equal("NS", s:type())
      assert.is_true(s:has(number("3.0")))
      assert.equal('{"NS":["3"]}', encode_av(s))
      local typed = set({}, "BS")
      assert.equal("BS", typed:type())
      typed:add(binary("q"))
      assert.is_true(typed:has(binary("q")))
    end)

    it("refuses mixed or unsupported elements", function()
      assert.matches("dynamo.set: mixed element types (SS and NS)", err_of(set, { "a", 1 }), 1, true)
      assert.matches("dynamo.set: element 1 is a boolean", err_of(set, { true }), 1, true)
      assert.matches("dynamo.set: element 2 is not valid UTF-8", err_of(set, { "a", "\xff" }), 1, true)
      assert.matches("dynamo.set: mixed element types (NS and SS)", err_of(set, { "a" }, "NS"), 1, true)
      assert.matches("cannot add a S to a NS set", err_of(function() set { 1 }:add("x") end), 1, true)
      assert.matches("cannot add a boolean", err_of(function() set {}:add(true) end), 1, true)
      assert.matches("not valid UTF-8", err_of(function() set { "a" }:add("\xff") end), 1, true)
    end)
  end)

  describe("type_of, list, map, NULL", function()
    it("names AttributeValue types", function()
      local cases = {
        { "x", "S" }, { 1, "N" }, { 1.5, "N" }, { number("1"), "N" }, { binary(""), "B" }, { true, "BOOL" },
        { NULL, "NULL" }, { set { "a" }, "SS" }, { set { 1 }, "NS" }, { set { binary("") }, "BS" },
        { { 1 }, "L" }, { list {}, "L" }, { {}, "M" }, { { a = 1 }, "M" }, { map {}, "M" },
      }
      for _, c in ipairs(cases) do assert.equal(c[2], core.type_of(c[1])) end
      assert.is_nil(core.type_of(print))
      assert.is_nil(core.type_of(nil))
    end)

    it("tags the given table", function()
      local t = { 1, 2 }
      assert.is_true(rawequal(t, list(t)))
      assert.equal('{"M":{}}', encode_av(map(list {})))
      assert.equal('{"L":[]}', encode_av(list(map {})))
    end)

    it("has one NULL", function()
      assert.equal("dynamo.NULL", tostring(NULL))
      assert.is_true(rawequal(NULL, core.NULL))
      assert.is_true(types.is_null(decode_av('{"NULL":true}')))
    end)
  end)

  describe("marshal / unmarshal", function()
    it("gives the AttributeValue form as Lua tables", function()
      local av = core.marshal {
        age = 34, name = "x", score = 0.5, ok = true, none = NULL, big = number(N38),
        bin = binary("\0"), tags = set { "a" }, nums = set { 1 }, l = { 1, "a" }, m = { k = "v" }, e = {},
      }
      assert.same({ N = "34" }, av.age)
      assert.same({ S = "x" }, av.name)
      assert.same({ N = "0.5" }, av.score)
      assert.same({ BOOL = true }, av.ok)
      assert.same({ NULL = true }, av.none)
      assert.same({ N = N38 }, av.big)
      assert.same({ B = "AA==" }, av.bin)
      assert.same({ "a" }, av.tags.SS)
      assert.same({ "1" }, av.nums.NS)
      assert.same({ { N = "1" }, { S = "a" } }, av.l.L)
      assert.same({ k = { S = "v" } }, av.m.M)
      assert.same({}, av.e.M)
      assert.same({ N = "5" }, core.marshal(5))
      assert.same({ L = {} }, core.marshal(list {}))
      assert.same({ M = {} }, core.marshal_value({}))
      assert.same({}, core.marshal({}))
      assert.equal(types.marshal, core.marshal)
    end)

    it("unmarshals back to native values", function()
      local item = {
        age = 34, name = "x", score = 0.5, ok = true, none = NULL, big = number(N38),
        bin = binary(ALL_BYTES), tags = set { "a", "b" }, nums = set { 1, 2.5 }, l = list { 1, "a", list {} },
        m = { k = "v", e = map {} },
      }
      local back = core.unmarshal(core.marshal(item))
      assert.equal(encode_item(item), encode_item(back))
      assert.equal(34, back.age)
      assert.is_true(back.tags == item.tags)
      assert.is_true(back.bin == item.bin)
      assert.equal("L", core.type_of(back.l[3]))
      assert.equal("M", core.type_of(back.m.e))
      assert.equal(5, core.unmarshal_value { N = "5" })
      assert.equal(5, core.unmarshal_value { N = 5 })
      assert.is_true(types.is_null(core.unmarshal_value { NULL = true }))
      assert.equal("x", core.unmarshal_value { B = binary("x") }:bytes())
      -- an AV map read from JSON (arrays tagged) or written by hand (not)
      assert.same({ a = { "x" } }, core.unmarshal { a = { L = { { S = "x" } } } })
      assert.equal("L", core.type_of(core.unmarshal { a = { L = {} } }.a))
    end)

    it("names the path of a malformed AttributeValue", function()
      assert.equal('value.a: unknown AttributeValue type "X"', err_of(core.unmarshal, { a = { X = 1 } }))
      assert.equal("value.a: empty AttributeValue", err_of(core.unmarshal, { a = {} }))
      assert.equal("value.a: AttributeValue with more than one member", err_of(core.unmarshal, { a = { S = "x", N = "1" } }))
      assert.equal("value.a[2]: S value must be a string, got number",
        err_of(core.unmarshal, { a = { L = { { S = "ok" }, { S = 1 } } } }))
      assert.equal("key.n: invalid N value: not a decimal number", err_of(core.unmarshal, { n = { N = "x" } }, "key"))
      assert.equal("value.b: invalid base64 in B value", err_of(core.unmarshal, { b = { B = "!!" } }))
      assert.equal("value: expected a table of AttributeValues, got string", err_of(core.unmarshal, "x"))
      assert.equal("value.s[1]: SS elements must be strings", err_of(core.unmarshal, { s = { SS = { 1 } } }))
    end)
  end)

  describe("json_encode", function()
    it("writes plain JSON with sorted keys", function()
      assert.equal('{"Limit":5,"TableName":"t"}', json_encode { TableName = "t", Limit = 5 })
      assert.equal('[1,"a",true,null,0.1,[],{}]', json_encode { 1, "a", true, NULL, 0.1, list {}, {} })
      assert.equal("{}", json_encode {})
      assert.equal("[]", json_encode(list()))
      assert.equal('"x\\"y"', json_encode('x"y'))
      assert.equal("12.5", json_encode(12.5))
      assert.equal("1e300", json_encode(1e300))
      assert.equal("-5e-324", json_encode(-5e-324))
      assert.equal("1.7976931348623157e308", json_encode(1.7976931348623157e308))
      assert.equal(N38, json_encode(number(N38)))
      assert.equal('"AAE="', json_encode(binary("\0\1")))
      assert.equal('["a"]', json_encode(set { "a" }))
      assert.equal("[1,2.5]", json_encode(set { 1, 2.5 }))
      assert.equal("9223372036854775807", json_encode(math.maxinteger))
    end)

    it("embeds items and AttributeValues", function()
      local rec = { pk = "u1", age = 34, tags = set { "a" } }
      assert.equal('{"Item":{"age":{"N":"34"},"pk":{"S":"u1"},"tags":{"SS":["a"]}},"TableName":"t"}',
        json_encode { TableName = "t", Item = core.as_item(rec) })
      assert.equal('{"age":{"N":"34"},"pk":{"S":"u1"},"tags":{"SS":["a"]}}', json_encode(core.as_item(rec)))
      assert.equal('{":v":{"N":"5"},"x":[{"S":"a"}]}', json_encode { [":v"] = core.as_av(5), x = { core.as_av("a") } })
      assert.equal('{"RequestItems":{"t":[{"PutRequest":{"Item":{"a":{"L":[{"N":"1"}]}}}}]}}',
        json_encode { RequestItems = { t = { { PutRequest = { Item = core.as_item { a = { 1 } } } } } } })
    end)

    it("names the path of what it cannot write", function()
      assert.equal("value.x: NaN cannot be written as JSON", err_of(json_encode, { x = 0 / 0 }))
      assert.equal("params.Item.geo[2]: NaN cannot be stored in DynamoDB",
        err_of(json_encode, { Item = core.as_item { geo = { 1, 0 / 0 } } }, "params"))
      assert.equal("value.f: a function cannot be stored in DynamoDB", err_of(json_encode, { f = print }))
      assert.equal("value.k: map key is not valid UTF-8 (byte 1)", err_of(json_encode, { k = { ["\xff"] = 1 } }))
      local deep = {}
      local cur = deep
      for _ = 1, 200 do
        cur[1] = {}
        cur = cur[1]
      end
      assert.matches("nesting deeper than 128 levels", err_of(json_encode, deep), 1, true)
    end)
  end)

  describe("json_decode", function()
    it("reads plain JSON", function()
      local v = json_decode('{"a":[1,2.5,null,true,false,"x"],"b":{},"c":[],"d":-0,"e":1.0,"f":1e3,"g":12345678901234567890}')
      assert.equal(1, v.a[1])
      assert.equal("integer", math.type(v.a[1]))
      assert.equal(2.5, v.a[2])
      assert.is_true(types.is_null(v.a[3]))
      assert.is_true(v.a[4])
      assert.is_false(v.a[5])
      assert.equal("x", v.a[6])
      assert.equal("L", core.type_of(v.a))
      assert.equal("M", core.type_of(v.b))
      assert.is_nil(getmetatable(v.b))
      assert.equal("L", core.type_of(v.c))
      assert.equal("integer", math.type(v.d))
      assert.equal(1, v.e)
      assert.equal("integer", math.type(v.e))
      assert.equal(1000, v.f)
      assert.equal("integer", math.type(v.f))
      assert.equal("float", math.type(v.g))
      assert.equal(1.2345678901234567e19, v.g)
      assert.equal("\xf0\x9f\x98\x80", json_decode('"\\ud83d\\ude00"'))
      assert.equal(5, json_decode(" 5 "))
      assert.equal(json_encode(v), json_encode(json_decode(json_encode(v))))
    end)

    it("reports malformed JSON with a byte position", function()
      local cases = {
        { "[1,]", "json: unexpected character at byte 4" },
        { "{", "json: unexpected end of input at byte 2" },
        { "", "json: unexpected end of input at byte 1" },
        { '{"a" 1}', "json: expected ':' at byte 6" },
        { '{"a":1,}', "json: expected a member name at byte 8" },
        { "[1 2]", "json: expected ',' or ']' at byte 4" },
        { '"abc', "json: unterminated string at byte 5" },
        { '"\\x"', "json: bad escape at byte 2" },
        { '"\\ud800"', "json: lone high surrogate at byte 2" },
        { '"\xff"', "json: invalid UTF-8 in string at byte 2" },
        { "[1] x", "json: unexpected data after the document at byte 5" },
        { "tru", "json: unexpected character at byte 1" },
        { "-", "json: bad number at byte 2" },
        { string.rep("[", 1100), "json: nesting too deep at byte 1025" },
      }
      for _, c in ipairs(cases) do assert.equal(c[2], err_of(json_decode, c[1])) end
      assert.equal("json: unknown AttributeValue type at byte 7", err_of(decode_item, '{"a":{"X":1}}'))
      assert.equal("json: invalid N value at byte 11", err_of(decode_item, '{"a":{"N":"x1"}}'))
      assert.equal("json: invalid base64 in B value at byte 11", err_of(decode_item, '{"a":{"B":"!"}}'))
      assert.equal("json: AttributeValue with more than one member at byte 14",
        err_of(decode_item, '{"a":{"S":"x","N":"1"}}'))
      assert.equal("json: expected an object of AttributeValues at byte 1", err_of(decode_item, "[]"))
      assert.equal("json: BOOL value must be true or false at byte 14", err_of(decode_item, '{"a":{"BOOL":1}}'))
    end)

    local query = '{"Count":2,"Items":[{"pk":{"S":"a"},"n":{"N":"1"}},{"pk":{"S":"b"},"s":{"SS":["x"]}}],'
      .. '"LastEvaluatedKey":{"pk":{"S":"b"}},"ScannedCount":2}'

    it("unmarshals the items of a response and nothing else", function()
      local r = json_decode(query, true)
      assert.equal(2, r.Count)
      assert.equal("a", r.Items[1].pk)
      assert.equal(1, r.Items[1].n)
      assert.equal("SS", r.Items[2].s:type())
      assert.same({ pk = { S = "b" } }, r.LastEvaluatedKey)
      -- sent back unchanged
      assert.equal('{"ExclusiveStartKey":{"pk":{"S":"b"}}}', json_encode { ExclusiveStartKey = r.LastEvaluatedKey })

      local get = json_decode('{"Item":{"a":{"N":"0.5"},"b":{"L":[]}}}', true)
      assert.equal(0.5, get.Item.a)
      assert.equal("L", core.type_of(get.Item.b))
      local upd = json_decode('{"Attributes":{"a":{"BOOL":true}}}', true)
      assert.is_true(upd.Attributes.a)

      local batch = json_decode('{"Responses":{"t1":[{"k":{"S":"1"}}],"t2":[]},'
        .. '"UnprocessedKeys":{"t1":{"Keys":[{"k":{"S":"2"}}]}}}', true)
      assert.equal("1", batch.Responses.t1[1].k)
      assert.equal(0, #batch.Responses.t2)
      assert.same({ S = "2" }, batch.UnprocessedKeys.t1.Keys[1].k)

      local writes = json_decode('{"UnprocessedItems":{"t":[{"PutRequest":{"Item":{"k":{"S":"1"}}}}]}}', true)
      assert.same({ S = "1" }, writes.UnprocessedItems.t[1].PutRequest.Item.k)

      local tx = json_decode('{"Responses":[{"Item":{"k":{"N":"7"}}},{}]}', true)
      assert.equal(7, tx.Responses[1].Item.k)

      local plain = json_decode(query, false)
      assert.same({ S = "a" }, plain.Items[1].pk)
      assert.same({ S = "a" }, json_decode(query).Items[1].pk)
    end)

    -- An array of items is made the size of the last one: a smaller, a much
    -- bigger (past the hint's cap) and an empty one after it read whole.
    it("reads arrays of items of any size after one another", function()
      local function response(n)
        local parts = {}
        for i = 1, n do parts[i] = ('{"k":{"N":"%d"}}'):format(i) end
        return '{"Items":[' .. table.concat(parts, ",") .. '],"Count":' .. n .. '}'
      end
      for _, n in ipairs { 100, 3, 1500, 0, 1, 100 } do
        local r = json_decode(response(n), true)
        assert.equal(n, #r.Items)
        assert.equal(n, r.Count)
        for i = 1, n do assert.equal(i, r.Items[i].k) end
        assert.is_nil(r.Items[n + 1])
      end
    end)

    -- One escape, multibyte character or bad byte at every position of
    -- strings of 0..40 bytes: the decoder reads plain text a word at a time
    -- while 8 bytes remain, so every offset from a word and from the end counts.
    local GOOD = {
      { "a", "a" }, { "\\n", "\n" }, { '\\"', '"' }, { "\\\\", "\\" }, { "\\/", "/" }, { "\\u00e9", "\xc3\xa9" },
      { "\\ud83d\\ude00", "\xf0\x9f\x98\x80" }, { "\xc3\xa9", "\xc3\xa9" }, { "\xe2\x82\xac", "\xe2\x82\xac" },
      { "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" }, { "\x7f", "\x7f" },
    }
    local BAD = {
      { "\x01", "control character in string" }, { "\x1f", "control character in string" },
      { "\xff", "invalid UTF-8 in string" }, { "\xc3", "invalid UTF-8 in string" },
      { "\xed\xa0\x80", "invalid UTF-8 in string" }, { "\\x", "bad escape" }, { "\\u12x4", "bad \\u escape" },
      { "\\ud800", "lone high surrogate" }, { "\\udc00", "lone low surrogate" },
    }

    it("reads strings of any length with escapes and UTF-8 anywhere", function()
      for len = 0, 40 do
        for _, piece in ipairs(GOOD) do
          for at = 0, len do
            local raw = ("x"):rep(at) .. piece[1] .. ("y"):rep(len - at)
            local want = ("x"):rep(at) .. piece[2] .. ("y"):rep(len - at)
            -- as a value and as a name, with more text after them, and last
            local item = decode_item('{"k":{"S":"' .. raw .. '"},"' .. raw .. '":{"SS":["' .. raw .. '"]}}')
            assert.equal(want, item.k)
            assert.equal(want, item[want][1])
            assert.equal(want, decode_av('{"S":"' .. raw .. '"}'))
            assert.equal(want, json_decode('"' .. raw .. '"'))
            assert.equal(want, json_decode('{"Items":[{"k":{"S":"' .. raw .. '"}}]}', true).Items[1].k)
          end
        end
      end
    end)

    it("reports a bad string byte where it is, whatever the length", function()
      for len = 0, 40 do
        for _, piece in ipairs(BAD) do
          for at = 0, len do
            local raw = ("x"):rep(at) .. piece[1] .. ("y"):rep(len - at)
            local want = "json: " .. piece[2] .. " at byte " .. (12 + at)
            assert.equal(want, err_of(decode_item, '{"a":{"S":"' .. raw .. '"},"b":{"N":"1"}}'))
            assert.equal(want, err_of(decode_item, '{"a":{"S":"' .. raw .. '"}}'))
            assert.equal("json: " .. piece[2] .. " at byte " .. (2 + at), err_of(json_decode, '"' .. raw .. '"'))
          end
        end
      end
    end)

    it("reports a string cut short where the input ends, or at its last escape or character", function()
      -- a cut inside an escape or a multibyte character points at its first byte
      local function inside(piece, kept)
        if piece:byte() >= 0x80 then return "invalid UTF-8 in string" end
        if kept == 1 then return "unterminated string" end -- a lone backslash
        return kept < 6 and "bad \\u escape" or "lone high surrogate"
      end
      local prefix = '{"a":{"S":"'
      for len = 0, 24 do
        for _, piece in ipairs(GOOD) do
          for at = 0, len, 3 do
            local raw = ("x"):rep(at) .. piece[1] .. ("y"):rep(len - at)
            local doc = prefix .. raw .. '"}}'
            for n = #prefix, #doc - 1 do
              local kept, want = n - #prefix
              if kept > at and kept < at + #piece[1] then
                want = "json: " .. inside(piece[1], kept - at) .. " at byte " .. (#prefix + at + 1)
              elseif n <= #prefix + #raw then
                want = "json: unterminated string at byte " .. (n + 1)
              else
                want = "json: unexpected end of input at byte " .. (n + 1)
              end
              assert.equal(want, err_of(decode_item, doc:sub(1, n)))
            end
          end
        end
      end
    end)
  end)

  describe("batch helpers", function()
    local key_id = core.key_id

    it("key_id is equal exactly when DynamoDB sees the same key", function()
      assert.equal(key_id(1), key_id(1.0))
      assert.equal(key_id(1), key_id(number("1.0")))
      assert.equal(key_id(number("1E+2")), key_id(100))
      assert.equal(key_id(0.5), key_id(number("0.50")))
      assert.equal(key_id(number(N38)), key_id(number(N38 .. ".0")))
      assert.not_equal(key_id("1"), key_id(1))
      assert.not_equal(key_id("1"), key_id(binary("1")))
      assert.equal(key_id(binary(ALL_BYTES)), key_id(binary(ALL_BYTES)))
      assert.equal(key_id("a", "b"), key_id("a", "b"))
      assert.equal(key_id("a", 2), key_id("a", 2.0))
      -- no two composite keys share an identity, whatever the bytes
      assert.not_equal(key_id("a", "bc"), key_id("ab", "c"))
      assert.not_equal(key_id("a\0\0\0\2Sb", "c"), key_id("a", "b"))
      assert.not_equal(key_id("a"), key_id("a", ""))
      local long = ("k"):rep(3000)
      assert.equal(long, key_id(long, 1):sub(6, 3005))
    end)

    it("key_id refuses values that cannot be keys", function()
      for _, v in ipairs({ {}, true, NULL, 0 / 0, math.huge, set{ "a" } }) do
        assert.has_error(function() key_id(v) end, "key_id: a key value must be a string, a finite number or a binary")
        assert.has_error(function() key_id("a", v) end)
      end
    end)

    it("prepare_keys keys records whose key attributes are strings, and stops at the first other", function()
      local prepare_keys = core.prepare_keys
      local via_meta = setmetatable({}, { __index = { pk = "m", sk = "n" } })
      local recs = { { pk = "a", sk = "1" }, via_meta, { pk = "c", sk = 3 }, { pk = "d", sk = "4" }, "e", { sk = "6" } }
      local pv, sv, ids = { "stale" }, {}, {}
      assert.equal(3, prepare_keys(recs, 1, #recs, "pk", "sk", pv, sv, ids))
      assert.same({ "a", "m" }, pv)
      assert.same({ "1", "n" }, sv)
      assert.same({ key_id("a", "1"), key_id("m", "n") }, ids)
      assert.equal(5, prepare_keys(recs, 4, #recs, "pk", "sk", pv, sv, ids)) -- "e" is not a table
      assert.equal("d", pv[4])
      assert.equal(key_id("d", "4"), ids[4])
      assert.is_nil(pv[3])
      assert.equal(6, prepare_keys(recs, 6, 6, "pk", "sk", pv, sv, ids)) -- no pk
      assert.equal(7, prepare_keys(recs, 6, 6, "sk", nil, pv, sv, ids)) -- a table without a sort key
      assert.equal("6", pv[6])
      assert.is_nil(sv[6])
      assert.equal(key_id("6"), ids[6])
      assert.equal(1, prepare_keys({}, 1, 0, "pk", "sk", pv, sv, ids)) -- nothing to do: to + 1
    end)

  end)

  describe("member names", function()
    it("decodes many distinct, colliding, long and escaped names in one document exactly", function()
      local items, want = {}, {}
      for i = 1, 50 do
        local item, parts = {}, {}
        for k = 1, 120 do
          local name = ("n%d_%d"):format(k, (i * k) % 7)
          if k % 17 == 0 then name = name .. ("L"):rep(40) end -- longer than the slots take
          item[name] = k
          parts[#parts + 1] = ('"%s":{"N":"%d"}'):format(name, k)
        end
        item["a\"q"] = i
        parts[#parts + 1] = '"a\\\"q":{"N":"' .. i .. '"}'
        want[i] = item
        items[i] = "{" .. table.concat(parts, ",") .. "}"
      end
      local got = json_decode('{"Items":[' .. table.concat(items, ",") .. ']}', true).Items
      assert.equal(50, #got)
      for i = 1, 50 do assert.same(want[i], got[i]) end
    end)
  end)

  describe("pages", function()
    local function read_all(page)
      local out = {}
      while true do
        local item, err = page:next()
        if item == nil then return out, err end
        out[#out + 1] = item
      end
    end

    it("reads Items one at a time, in native form, and keeps the other members", function()
      local page = core.page('{"Count":2,"Items":[{"a":{"N":"1"},"s":{"SS":["x"]}},{"b":{"L":[{"N":"2.5"}]}}],'
        .. '"LastEvaluatedKey":{"pk":{"S":"z"}},"ScannedCount":3}')
      local first = page:next()
      assert.equal(1, first.a)
      assert.equal("SS", core.type_of(first.s))
      assert.same({ Count = 2 }, page:result()) -- members after Items are not read yet
      local second = page:next()
      assert.equal(2.5, second.b[1])
      assert.is_nil(page:next())
      assert.is_nil(page:next()) -- stays at the end
      local rest = page:result()
      assert.equal(2, rest.Count)
      assert.equal(3, rest.ScannedCount)
      assert.same({ pk = { S = "z" } }, rest.LastEvaluatedKey) -- as the server sent it, for ExclusiveStartKey
    end)

    it("takes members in any order, no Items, empty Items and whitespace", function()
      local items, err = read_all(core.page(' { "LastEvaluatedKey" : {"k":{"N":"5"}} , "Items" : [ {"x":{"BOOL":true}} ] } '))
      assert.is_nil(err)
      assert.equal(1, #items)
      assert.is_true(items[1].x)
      for _, text in ipairs({ '{"Items":[],"Count":0}', '{"Count":0}', "{}", '{"Items":{},"Count":0}' }) do
        local page = core.page(text)
        local got, e = read_all(page)
        assert.equal(0, #got, text)
        assert.is_nil(e, text)
      end
    end)

    it("reports a body that is not valid JSON as nil, message, and then stays ended", function()
      local cases = {
        ['{"Items":[{"x":{"BOOL":true}},{"y":'] = "json: unexpected end of input at byte 36",
        ['{"Items":[{"x":{"BOOL":true}}]} x'] = "json: unexpected data after the document at byte 33",
        ["[1]"] = "json: expected a response object at byte 1",
        ['{"Items":[{"x":{"Q":1}}]}'] = "json: unknown AttributeValue type at byte 17",
        [""] = "json: unexpected end of input at byte 1",
      }
      for text, want in pairs(cases) do
        local page = core.page(text)
        local _, err = read_all(page)
        assert.equal(want, err, text)
        assert.is_nil(page:next())
      end
    end)

    it("page_fill reads items in runs, then 0 at the end, and nil, message for a broken page", function()
      local page = core.page('{"Items":[{"n":{"N":"1"}},{"n":{"N":"2"}},{"n":{"N":"3"}}],"Count":3}')
      local buf = {}
      assert.equal(2, core.page_fill(page, buf, 2))
      assert.same({ { n = 1 }, { n = 2 } }, buf)
      assert.equal(1, core.page_fill(page, buf, 2))
      assert.equal(3, buf[1].n)
      assert.equal(0, core.page_fill(page, buf, 2))
      assert.equal(3, core.page_result(page).Count)
      assert.equal(0, core.page_fill(page, buf, 2))
      local n, err = core.page_fill(core.page('{"Items":[{"n":{"N":"1"}},{"n":'), {}, 10)
      assert.is_nil(n)
      assert.equal("json: unexpected end of input at byte 32", err)
      assert.has_error(function() core.page_fill(page, buf, 0) end)
    end)

    it("gives the same items as json_decode for a large page", function()
      local parts = {}
      for i = 1, 3000 do
        parts[i] = ('{"pk":{"S":"p%d"},"n":{"N":"%d"},"m":{"M":{"l":{"L":[{"NULL":true},{"B":"AAE="}]}}}}'):format(i % 7, i)
      end
      local text = '{"Items":[' .. table.concat(parts, ",") .. '],"Count":3000}'
      local whole = json_decode(text, true).Items
      local got = read_all(core.page(text))
      assert.equal(3000, #got)
      for i = 1, 3000, 499 do assert.is_true(same(whole[i], got[i]), i) end
    end)

    -- About 1 MB of text in 1,000 items of 1 KB.
    local function big_page()
      local parts = {}
      for i = 1, 1000 do parts[i] = ('{"i":{"N":"%d"},"s":{"S":"%s"}}'):format(i, ("x"):rep(1000)) end
      return '{"Count":1000,"Items":[' .. table.concat(parts, ",") .. '],"ScannedCount":1000}'
    end

    it("gives its text back when a <close> variable goes out of scope, before any collection", function()
      local text = big_page()
      collectgarbage("stop") -- whatever happens below is the close, not a collection
      local seen, first, held
      do
        local page <close> = core.page(text)
        seen, first = page, page:next()
        held = tostring(page)
      end
      local after = tostring(seen)
      collectgarbage("restart")
      assert.equal(1, first.i)
      assert.equal(("dynamo.page (%d bytes)"):format(#text), held)
      assert.equal("dynamo.page (closed)", after)
      assert.is_nil(seen:next())
    end)

    it("ends once closed: next gives nil, page_fill 0, result the members read before", function()
      local page = core.page('{"Count":3,"Items":[{"n":{"N":"1"}},{"n":{"N":"2"}},{"n":{"N":"3"}}],"ScannedCount":3}')
      assert.matches("^dynamo%.page %(%d+ bytes%)$", tostring(page))
      assert.equal(1, page:next().n)
      page:close()
      assert.equal("dynamo.page (closed)", tostring(page))
      assert.is_nil(page:next())
      assert.is_nil(page:next())
      assert.equal(0, core.page_fill(page, {}, 10))
      assert.same({ Count = 3 }, page:result()) -- ScannedCount, after Items, was never read
      page:close() -- again: nothing more happens
      assert.is_nil(core.page_next(page))
    end)

    it("is closed by its end: a page read through holds no text", function()
      local page = core.page('{"Items":[{"n":{"N":"1"}}],"Count":1}')
      assert.equal(1, page:next().n)
      assert.is_nil(page:next())
      assert.equal("dynamo.page (closed)", tostring(page))
      page:close() -- closing a page read to its end is fine
      assert.equal(1, page:result().Count)
    end)

    it("is collected safely after a close, a broken read or a half read", function()
      for _ = 1, 3 do
        local closed = core.page(big_page())
        closed:next()
        closed:close()
        local broken = core.page('{"Items":[{"n":{"N":"1"}},{"n":')
        read_all(broken)
        local half = core.page(big_page())
        half:next()
        do local p <close> = core.page(big_page()) end
      end
      collectgarbage("collect") -- __gc after __close, and __gc alone
      collectgarbage("collect")
      assert.equal(2, read_all(core.page('{"Items":[{"n":{"N":"1"}},{"n":{"N":"2"}}]}'))[2].n)
    end)

    it("finishes the item under way when a finalizer closes the page during its read", function()
      local item = '{"l":{"L":[' .. ('{"M":{"a":{"S":"x"},"b":{"N":"1"}}},'):rep(3999) .. '{"M":{}}]}}'
      local text = '{"Items":[' .. item .. "," .. item .. '],"Count":2}'
      local reading, hit = false, nil
      collectgarbage("incremental", 10, 1000) -- collect often
      -- whether a cycle ends inside one read depends on the heap, so try pages until one has (bounded)
      for _ = 1, 200 do
        local page, st = core.page(text), {}
        setmetatable({}, { __gc = function()
          st.during = reading
          if reading then st.nested_ok, st.nested = pcall(page.next, page) end
          page:close()
        end })
        reading = true
        st.got = page:next()
        reading = false
        if st.during and st.got then
          st.after, st.str = page:next(), tostring(page)
          hit = st
          break
        end
      end
      collectgarbage("incremental", 200, 100)
      assert.is_truthy(hit, "no finalizer ran during a read")
      assert.equal(4000, #hit.got.l) -- the item being read when the page closed comes whole
      assert.is_false(hit.nested_ok)
      assert.matches("attempt to read a page that is being read", hit.nested)
      assert.is_nil(hit.after)
      assert.equal("dynamo.page (closed)", hit.str)
    end)
  end)

  describe("robustness", function()
    it("survives a finalizer that uses the codec in the middle of a decode", function()
      local results = {}
      local doc = { '{"items":{"L":[' }
      for i = 1, 2000 do doc[#doc + 1] = (i > 1 and "," or "") .. '{"M":{"a":{"S":"' .. i .. '"},"b":{"L":[]}}}' end
      doc[#doc + 1] = "]}}"
      doc = table.concat(doc)
      local function arm()
        setmetatable({}, { __gc = function()
          results[#results + 1] = encode_item { x = #results }
          results[#results + 1] = decode_item('{"y":{"N":"' .. #results .. '"}}').y
          arm()
        end })
      end
      collectgarbage("incremental", 10, 1000) -- collect often
      arm()
      -- whether a cycle ends inside one decode depends on the heap the earlier
      -- specs left, so decode until a finalizer has run (bounded)
      local ok, item
      for _ = 1, 200 do
        ok, item = pcall(decode_item, doc)
        if not ok or #results > 0 then break end
      end
      collectgarbage("incremental", 200, 100)
      assert.is_true(ok, item)
      assert.equal(2000, #item.items)
      assert.equal("2000", item.items[2000].a)
      assert.is_true(#results > 0)
      assert.equal('{"x":{"N":"0"}}', results[1])
      assert.equal(1, results[2])
      -- and the codec still works afterwards
      assert.equal('{"a":{"N":"1"}}', encode_item { a = 1 })
    end)

    it("keeps working after errors", function()
      for _ = 1, 3 do
        assert.has_error(function() encode_item { x = 0 / 0 } end)
        assert.has_error(function() decode_item("{") end)
      end
      assert.equal('{"a":{"S":"b"}}', encode_item { a = "b" })
      assert.same({ a = "b" }, decode_item('{"a":{"S":"b"}}'))
    end)

    it("encodes large values", function()
      local s = ("x"):rep(300000) .. '"\n'
      local item = decode_item(encode_item { s = s, b = binary(s) })
      assert.equal(s, item.s)
      assert.equal(s, item.b:bytes())
    end)
  end)
end)
