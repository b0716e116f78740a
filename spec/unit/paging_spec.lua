-- query, scan and query_many over the core's pager, through a fake transport
-- that serves partitions page by page: request shapes (ExclusiveStartKey byte
-- for byte, Limit, Segment), on_page and start, and what a loop left early
-- gives back.
local cjson = require("cjson")

describe("dynamo.DynamoTable paging", function()
  local dynamo, errors, T

  before_each(function()
    dynamo = require("dynamo")
    errors = require("dynamo.errors")
    T = dynamo.DynamoTable:extend{ table = "paged" }
  end)

  -- A server of partitions: data[pk] = number of items (sk "k1é", "k2é", ...).
  -- A Scan segment s of n serves partition "s<s>". Each page holds at most
  -- Limit or per_page items; LastEvaluatedKey is written with a \u escape,
  -- which must come back byte for byte. Records the raw request bodies.
  local function server(data, per_page)
    local seen = {}
    local function answer(op, text)
      local body = cjson.decode(text)
      local pk
      if op == "Query" then
        pk = body.ExpressionAttributeValues[next(body.ExpressionAttributeValues)].S
      else
        pk = "s" .. math.tointeger(body.Segment or 0)
      end
      local from = 0
      if body.ExclusiveStartKey then from = tonumber(body.ExclusiveStartKey.sk.S:match("^k(%d+)")) end
      local size = data[pk] or 0
      local last = math.min(size, from + math.min(body.Limit or per_page, per_page))
      local items = {}
      for i = from + 1, last do items[#items + 1] = ('{"pk":{"S":"%s"},"sk":{"S":"k%d\xc3\xa9"}}'):format(pk, i) end
      local lek = last < size and (',"LastEvaluatedKey":{"pk":{"S":"%s"},"sk":{"S":"k%d\\u00e9"}}'):format(pk, last) or ""
      return ('{"Count":%d,"Items":[%s]%s,"ScannedCount":%d}'):format(#items, table.concat(items, ","), lek, #items)
    end
    local client = dynamo.client{
      endpoint = "http://127.0.0.1:1", region = "us-east-1", max_attempts = 1,
      credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
      transport = function(request)
        local op = request.headers["x-amz-target"]:match("%.(%w+)$")
        seen[#seen + 1] = request.body
        return 200, { ["content-type"] = "application/x-amz-json-1.0" }, answer(op, request.body)
      end,
      sleep = function() end,
    }
    return T{ client = client }, seen
  end

  local function key(r) return r.pk .. "/" .. r.sk end

  it("reports the position after each page's last record, and start continues exactly there", function()
    local t, seen = server({ p = 5 }, 10)
    local got, positions, at = {}, {}, {}
    for r in t:query{ partition_key = "p", page_size = 2, on_page = function(position)
      positions[#positions + 1] = position
      at[#at + 1] = #got
    end } do
      got[#got + 1] = key(r)
    end
    assert.same({ "p/k1é", "p/k2é", "p/k3é", "p/k4é", "p/k5é" }, got)
    assert.same({ 2, 4, 5 }, at) -- after the last record of each page, before the next one
    assert.equal('{"streams":[{"key":{"pk":{"S":"p"},"sk":{"S":"k2\\u00e9"}},"count":2}]}', positions[1])
    assert.equal('{"streams":[{"done":true,"count":5}]}', positions[3])
    -- the key goes back as the server wrote it
    assert.truthy(seen[2]:find(',"Limit":2,"ExclusiveStartKey":{"pk":{"S":"p"},"sk":{"S":"k2\\u00e9"}}}', 1, true))
    -- from each position: exactly the records after it
    for i, position in ipairs(positions) do
      local n = #seen
      local rest = {}
      for r in t:query{ partition_key = "p", page_size = 2, start = dynamo.json_decode(dynamo.json_encode(position)) } do
        rest[#rest + 1] = key(r)
      end
      assert.same({ table.unpack(got, at[i] + 1) }, rest)
      if i < #positions then
        assert.equal(seen[i + 1], seen[n + 1]) -- the request the first run sent after that page
      else
        assert.equal(n, #seen) -- nothing left: nothing sent
      end
    end
  end)

  it("a break right after a page's last record reports that page; a break inside a page does not", function()
    local t = server({ p = 6 }, 3)
    local positions, n = {}, 0
    for _ in t:query{ partition_key = "p", on_page = function(pos) positions[#positions + 1] = pos end } do
      n = n + 1
      if n == 3 then break end -- the loop's body is through with the page
    end
    assert.equal(1, #positions)
    assert.equal('{"streams":[{"key":{"pk":{"S":"p"},"sk":{"S":"k3\\u00e9"}},"count":3}]}', positions[1])
    local more = {}
    for r in t:query{ partition_key = "p", start = positions[1],
                      on_page = function(pos) positions[#positions + 1] = pos end } do
      more[#more + 1] = r.sk
      if #more == 2 then break end
    end
    assert.equal(1, #positions) -- page 2 was not handed out whole
    assert.same({ "k4é", "k5é" }, more)
    -- without a for loop nothing closes it; the iterator just stops being called
    local it = t:query{ partition_key = "p", on_page = function(pos) positions[#positions + 1] = pos end }
    assert.equal("k1é", it().sk)
    assert.equal(1, #positions)
  end)

  it("a loop left early gives the page back; the iterator then ends", function()
    local t, seen = server({ p = 6 }, 3)
    local f, s, c, closing = t:query{ partition_key = "p" }
    assert.equal("table", type(closing))
    assert.is_function(getmetatable(closing).__close)
    for r in f, s, c, closing do
      assert.equal("k1é", r.sk)
      break
    end
    assert.is_nil(f())
    assert.equal(1, #seen)
  end)

  it("limits count what came before the position", function()
    local t, seen = server({ p = 9 }, 2)
    local positions = {}
    local first = {}
    for r in t:query{ partition_key = "p", limit = 5, on_page = function(pos) positions[#positions + 1] = pos end } do
      first[#first + 1] = r.sk
      if #first == 4 then break end
    end
    assert.equal(2, #positions)
    local rest = {}
    for r in t:query{ partition_key = "p", limit = 5, start = positions[2] } do rest[#rest + 1] = r.sk end
    assert.same({ "k5é" }, rest)
    assert.equal(1, cjson.decode(seen[#seen]).Limit)
  end)

  it("a parallel scan's position holds every segment; start continues each", function()
    local t, seen = server({ s0 = 4, s1 = 1, s2 = 0, s3 = 5 }, 2)
    local all = {}
    for r in t:scan{ segments = 4 } do all[#all + 1] = key(r) end
    table.sort(all)
    assert.equal(10, #all)
    local n0 = #seen
    local positions, got = {}, {}
    for r in t:scan{ segments = 4, on_page = function(pos) positions[#positions + 1] = pos end } do
      if #positions == 2 then break end
      got[#got + 1] = key(r)
    end
    local segs = {}
    for i = n0 + 1, #seen do segs[#segs + 1] = cjson.decode(seen[i]).TotalSegments end
    assert.same({ 4, 4, 4, 4 }, segs) -- the first round: each segment once
    local rest = {}
    for r in t:scan{ segments = 4, start = positions[2] } do rest[#rest + 1] = key(r) end
    local union = {}
    for _, k in ipairs(got) do union[#union + 1] = k end
    for _, k in ipairs(rest) do union[#union + 1] = k end
    table.sort(union)
    assert.same(all, union)
    assert.has_error(function() t:scan{ start = positions[2] } end) -- one stream, not four
  end)

  it("query_many: one position for all the queries", function()
    local t = server({ a = 5, b = 0, c = 3 }, 2)
    local queries = { { partition_key = "a" }, { partition_key = "b" }, { partition_key = "c", limit = 2 } }
    local positions, got = {}, {}
    for r, i in t:query_many(queries, { on_page = function(pos) positions[#positions + 1] = pos end }) do
      got[#got + 1] = i .. ":" .. r.sk
    end
    assert.same({ "1:k1é", "1:k2é", "3:k1é", "3:k2é", "1:k3é", "1:k4é", "1:k5é" }, got)
    assert.equal('{"streams":[{"done":true,"count":5},{"done":true,"count":0},{"done":true,"count":2}]}',
      positions[#positions])
    local handed = { 2, 4, 6, 7 } -- records out when each page's position was reported
    assert.equal(#handed, #positions)
    for p = 1, #positions do
      -- the records not handed out; each query's in order, the queries interleaved anew
      local rest, want = {}, { table.unpack(got, handed[p] + 1) }
      for r, i in t:query_many(queries, { start = positions[p] }) do rest[#rest + 1] = i .. ":" .. r.sk end
      table.sort(rest)
      table.sort(want)
      assert.same(want, rest)
    end
    assert.has_error(function() t:query_many({ { partition_key = "a" } }, { start = positions[1] }) end)
  end)

  it("checks on_page and start", function()
    local t, seen = server({ p = 1 }, 1)
    local ok, err = pcall(t.query, t, { partition_key = "p", start = 7 })
    assert.is_false(ok)
    assert.is_true(errors.is(err, "Validation"))
    assert.matches("start must be a position given to on_page", err.message, 1, true)
    ok, err = pcall(t.scan, t, { on_page = "x" })
    assert.is_true(errors.is(err, "Validation"))
    assert.matches("on_page must be a function", err.message, 1, true)
    ok, err = pcall(t.query, t, { partition_key = "p", start = '{"streams":"x"}' })
    assert.is_true(errors.is(err, "Validation"))
    assert.equal("DynamoTable(paged): Query: start: not a position of 1 stream(s) (a text pager:position() wrote "
      .. "is expected)", err.message)
    ok, err = pcall(t.query_many, t, { { partition_key = "p" } }, { start = {} })
    assert.is_true(errors.is(err, "Validation"))
    assert.equal(0, #seen)
  end)
end)
