-- dynamo.client against a real DynamoDB-compatible server (dynalite).
local helpers = require("spec.helpers")

describe("dynamo.client against dynalite", function()
  local dynamo, client, table_name

  setup(function()
    dynamo = require("dynamo")
    client = helpers.client()
    table_name = helpers.create_table(client, { prefix = "client" })
  end)

  teardown(function()
    if client then pcall(client.call, client, "DeleteTable", { TableName = table_name }) end
  end)

  it("lists tables and describes the one it made", function()
    local out = client:call("ListTables", {})
    local found = false
    for _, name in ipairs(out.TableNames) do found = found or name == table_name end
    assert.is_true(found)
    local d = client:call("DescribeTable", { TableName = table_name })
    assert.equal("ACTIVE", d.Table.TableStatus)
    assert.equal("pk", d.Table.KeySchema[1].AttributeName)
  end)

  it("raises DynamoTableError with the AWS error type as code", function()
    local ok, err = pcall(client.call, client, "DescribeTable", { TableName = "no_such_table_here" })
    assert.is_false(ok)
    assert.is_true(dynamo.errors.is(err, "ResourceNotFoundException"))
    assert.is_false(err.retryable)
    assert.equal(400, err.status)
    assert.matches("ResourceNotFoundException: ", tostring(err), 1, true)
  end)

  it("raises ValidationException for a malformed request, at once", function()
    local before = client:stats().requests
    local ok, err = pcall(client.call, client, "PutItem", { TableName = table_name, Item = { pk = { S = "x" } } })
    assert.is_false(ok)
    assert.equal("ValidationException", err.code)
    assert.equal(1, client:stats().requests - before)
  end)

  it("rejects a bad operation name and bad params before sending", function()
    local before = client:stats().requests
    assert.has_error(function() client:call("get item", {}) end)
    local ok, err = pcall(client.call, client, "PutItem", { TableName = table_name, Item = { pk = { N = 0 / 0 } } })
    assert.is_false(ok)
    assert.equal("Validation", err.code)
    assert.equal(before, client:stats().requests)
  end)

  it("reuses one connection for many requests", function()
    local c = helpers.client()
    for _ = 1, 30 do c:call("ListTables", {}) end
    local s = c:stats()
    assert.equal(30, s.requests)
    assert.equal(1, s.connections)
    assert.is_true(s.waits >= 1 and s.waits <= 90, "waits " .. tostring(s.waits))
    c:close()
  end)

  it("fails with code Transport after max_attempts when nothing listens", function()
    local c = dynamo.client{ endpoint = "http://127.0.0.1:9", region = "us-east-1", max_attempts = 2,
                             credentials = { access_key_id = "a", secret_access_key = "s" } }
    local ok, err = pcall(c.call, c, "ListTables", {})
    assert.is_false(ok)
    assert.equal("Transport", err.code)
    assert.is_true(err.retryable)
    assert.equal(2, err.attempts)
    c:close()
  end)

  -- Writes n items under partition pk (item i padded with len0 + i copies of
  -- a letter from `first`) and returns the Query body that reads them and a
  -- check of items from..to of a page.
  local function paged_items(c, pk, n, first, len0)
    local function pad(i) return string.rep(string.char(first + i % 26), len0 + i) end
    local parts = {}
    for i = 1, n do
      parts[i] = { PutRequest = { Item = dynamo.marshal{ pk = pk, sk = ("%03d"):format(i), pad = pad(i) } } }
    end
    for i = 1, n, 25 do
      c:call("BatchWriteItem", { RequestItems = { [table_name] = { table.unpack(parts, i, math.min(i + 24, n)) } } })
    end
    local body = dynamo.core.json_encode{ TableName = table_name, ConsistentRead = true,
      KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = { S = pk } } }
    local function check(page, from, to)
      for i = from, to do
        local item = page:next()
        assert.equal(("%03d"):format(i), item.sk)
        assert.equal(pad(i), item.pad)
      end
    end
    return body, check
  end

  -- A page read to its end gives its memory to the client for the next
  -- response; one still being read keeps its own, and a page outlives its client.
  it("reads pages interleaved, one after another and after the client is closed", function()
    local c = helpers.client()
    local body, check = paged_items(c, "pages", 60, 97, 200)
    local a = c:send_page("Query", body)
    check(a, 1, 30)
    for _ = 1, 3 do -- each read whole while `a` is half read: `a`'s text must stay intact
      local b = c:send_page("Query", body)
      check(b, 1, 60)
      assert.is_nil(b:next())
      assert.equal(60, b:result().Count)
    end
    check(a, 31, 60)
    assert.is_nil(a:next())
    local last = c:send_page("Query", body)
    check(last, 1, 10)
    c:close()
    check(last, 11, 60)
    assert.is_nil(last:next())
    assert.equal(60, last:result().Count)
  end)

  -- A closed page gives its memory to the driver at once, half read or not;
  -- the responses that reuse it read whole.
  it("reads whole pages after pages closed half read, by <close> and by page:close()", function()
    local c = helpers.client()
    local body, check = paged_items(c, "closing", 40, 65, 300)
    for round = 1, 3 do
      local seen
      do
        local page <close> = c:send_page("Query", body)
        seen = page
        check(page, 1, round * 5)
      end
      assert.equal("dynamo.page (closed)", tostring(seen))
      assert.is_nil(seen:next())
      local other = c:send_page("Query", body)
      check(other, 1, 3)
      other:close()
      other:close()
      assert.is_nil(other:next())
      local whole = c:send_page("Query", body)
      check(whole, 1, 40)
      assert.is_nil(whole:next())
      assert.equal(40, whole:result().Count)
    end
    local last = c:send_page("Query", body)
    check(last, 1, 2)
    c:close()
    last:close() -- after its client: the memory is freed instead
    assert.equal("dynamo.page (closed)", tostring(last))
  end)

  describe("round trips every value type losslessly", function()
    local item
    before_each(function()
      item = {
        pk = "types", sk = "all",
        s = "héllo ✓", empty_s = "",
        int = 42, neg = -7, zero = 0,
        int_max = math.maxinteger, int_min = math.mininteger,
        float = 0.1, small = 1e-7, big = 1e21, quarter = 123.25,
        decimal = dynamo.number("12345678901234567890123456789012345678"),
        fraction38 = dynamo.number("0.12345678901234567890123456789012345678"),
        yes = true, no = false,
        null = dynamo.NULL,
        bin = dynamo.binary("\0\1\2\255binary"),
        ss = dynamo.set{ "a", "b", "c" },
        ns = dynamo.set{ 1, 2.5, dynamo.number("99999999999999999999999") },
        bs = dynamo.set{ dynamo.binary("\0"), dynamo.binary("\255\254") },
        list = { 1, "two", { three = 3 }, { 4, 5 } },
        empty_list = dynamo.list{},
        map = { a = { b = { c = "deep" } }, n = 1 },
        empty_map = {},
      }
    end)

    it("PutItem then GetItem gives back the same bytes on the wire", function()
      client:call("PutItem", { TableName = table_name, Item = dynamo.marshal(item) })
      local out = client:call("GetItem", { TableName = table_name, ConsistentRead = true,
                                           Key = dynamo.marshal{ pk = "types", sk = "all" } })
      local back = dynamo.unmarshal(out.Item)
      assert.equal(dynamo.core.encode_item(item), dynamo.core.encode_item(back))
      assert.equal(math.maxinteger, back.int_max)
      assert.equal(math.mininteger, back.int_min)
      assert.equal("integer", math.type(back.int))
      assert.equal(0.1, back.float)
      assert.equal("12345678901234567890123456789012345678", tostring(back.decimal))
      assert.equal(dynamo.NULL, back.null)
      assert.equal("\0\1\2\255binary", tostring(back.bin))
      assert.is_true(back.ss:has("b"))
      assert.equal(0, #back.empty_list)
    end)

    it("writes back a read item unchanged", function()
      client:call("PutItem", { TableName = table_name, Item = dynamo.marshal(item) })
      local key = dynamo.marshal{ pk = "types", sk = "all" }
      local first = client:call("GetItem", { TableName = table_name, Key = key, ConsistentRead = true })
      local native = dynamo.unmarshal(first.Item)
      client:call("PutItem", { TableName = table_name, Item = dynamo.marshal(native) })
      local second = client:call("GetItem", { TableName = table_name, Key = key, ConsistentRead = true })
      assert.equal(dynamo.core.json_encode(first.Item), dynamo.core.json_encode(second.Item))
    end)
  end)
end)
