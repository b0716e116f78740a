-- Resumable paging against dynalite: a query, a parallel scan and a
-- query_many stopped after two pages, their position written to a file as
-- JSON and read back, then resumed: together they give every item exactly
-- once. Through libcurl and through a host transport.
local helpers = require("spec.helpers")

describe("paging positions against dynalite", function()
  local dynamo, client, T, t, name

  local PARTS = { a = 23, b = 7, c = 12 }

  setup(function()
    dynamo = require("dynamo")
    client = helpers.client()
    name = helpers.table_name("paging")
    T = dynamo.DynamoTable:extend{ table = name }
    t = T{ client = client }
    t:create_table()
    t:wait_until_exists()
    local records = {}
    for pk, n in pairs(PARTS) do
      for i = 1, n do records[#records + 1] = { pk = pk, sk = ("%03d"):format(i), n = i } end
    end
    t:batch_upsert_records(records, { read_existing = false })
  end)

  teardown(function()
    if t then pcall(t.delete_table, t) end
  end)

  -- The position kept in a file as JSON, and read back.
  local function keep(position)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(dynamo.json_encode({ position = position }))
    f:close()
    f = assert(io.open(path))
    local text = f:read("a")
    f:close()
    os.remove(path)
    return dynamo.json_decode(text).position
  end

  -- Runs iterate(opts) until `pages` pages were reported, then resumes from
  -- the position kept; returns the keys of both runs and the pages seen.
  local function stop_and_resume(iterate, pages)
    local first, kept, seen = {}, nil, 0
    for r in iterate{ on_page = function(position)
      seen = seen + 1
      if seen == pages then kept = keep(position) end
    end } do
      if seen == pages then break end -- a record of the next page, not taken
      first[#first + 1] = r.pk .. "/" .. r.sk
    end
    assert.equal(pages, seen)
    local rest, later = {}, 0
    for r in iterate{ start = kept, on_page = function() later = later + 1 end } do
      rest[#rest + 1] = r.pk .. "/" .. r.sk
    end
    return first, rest, later
  end

  local function expect_exactly(want, first, rest)
    local seen, union = {}, {}
    for _, list in ipairs({ first, rest }) do
      for _, k in ipairs(list) do
        assert.is_nil(seen[k], "duplicate " .. k)
        seen[k] = true
        union[#union + 1] = k
      end
    end
    table.sort(union)
    table.sort(want)
    assert.same(want, union)
  end

  local function keys_of(pks)
    local out = {}
    for _, pk in ipairs(pks) do
      for i = 1, PARTS[pk] do out[#out + 1] = pk .. "/" .. ("%03d"):format(i) end
    end
    return out
  end

  -- A host transport that forwards every request to dynalite.
  local function host_client()
    return dynamo.client{
      endpoint = client.endpoint, region = "us-east-1",
      credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
      transport = function(request)
        local op = request.headers["x-amz-target"]:match("%.(%w+)$")
        local body = assert(client.handle:call(op, request.body))
        return 200, { ["content-type"] = "application/x-amz-json-1.0" }, body
      end,
      sleep = function() end,
    }
  end

  for _, driver in ipairs({ "libcurl", "host" }) do
    describe("through " .. driver, function()
      local m
      before_each(function()
        m = driver == "host" and T{ client = host_client() } or t
      end)

      it("a query over 5 pages stopped after page 2 resumes with the rest of the partition", function()
        local first, rest, later = stop_and_resume(function(o)
          o.partition_key, o.page_size, o.consistent_read = "a", 5, true
          return m:query(o)
        end, 2)
        assert.equal(10, #first)
        assert.equal(3, later) -- pages 3, 4 and 5
        expect_exactly(keys_of({ "a" }), first, rest)
      end)

      it("a parallel scan of 4 segments stopped after 2 pages resumes with the rest of the table", function()
        local first, rest = stop_and_resume(function(o)
          o.segments, o.page_size = 4, 3
          return m:scan(o)
        end, 2)
        assert.is_true(#first >= 2 and #first <= 6)
        expect_exactly(keys_of({ "a", "b", "c" }), first, rest)
      end)

      it("a query_many stopped after 2 pages resumes with the rest of every query", function()
        local first, rest = stop_and_resume(function(o)
          o.concurrency = 2
          return m:query_many({ { partition_key = "a", page_size = 4 }, { partition_key = "b", page_size = 4 },
                                { partition_key = "c", page_size = 4 } }, o)
        end, 2)
        assert.equal(8, #first)
        expect_exactly(keys_of({ "a", "b", "c" }), first, rest)
      end)

      it("a limit spans the two runs", function()
        local first, rest = stop_and_resume(function(o)
          o.partition_key, o.page_size, o.limit = "c", 4, 10
          return m:query(o)
        end, 1)
        assert.equal(4, #first)
        assert.equal(6, #rest)
        local want = {}
        for i = 1, 10 do want[i] = "c/" .. ("%03d"):format(i) end
        expect_exactly(want, first, rest)
      end)
    end)
  end
end)
