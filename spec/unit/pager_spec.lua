-- The core's pager through its binding (dynamo.Pager), driven by a recording
-- fake transport through the client's host loop, and by hand through
-- next/feed: request bodies byte for byte (Limit, ExclusiveStartKey,
-- Segment), pages and their take, failures, the position and resuming.
local cjson = require("cjson")

describe("dynamo.core pager", function()
  local dynamo, core

  before_each(function()
    dynamo = require("dynamo")
    core = dynamo.core
  end)

  -- A client whose requests go to answer(op, body_text, n) -> status, JSON text.
  local function client_with(answer)
    local seen = {}
    local client = dynamo.client{
      endpoint = "http://127.0.0.1:1", region = "us-east-1", max_attempts = 1,
      credentials = { access_key_id = "spec", secret_access_key = "spec-secret" },
      transport = function(request)
        local op = request.headers["x-amz-target"]:match("%.(%w+)$")
        seen[#seen + 1] = request.body
        local status, text = answer(op, request.body, #seen)
        return status, { ["content-type"] = "application/x-amz-json-1.0" }, text
      end,
      sleep = function() end,
    }
    return client, seen
  end

  -- Every page of a pager as { stream, take, items = {...} }, round after round.
  local function drain(client, p)
    local out = {}
    while true do
      while true do
        local page, stream, take = p:take()
        if not page then
          assert(stream == nil, stream)
          break
        end
        local items = {}
        local n = core.page_fill(page, items, take)
        page:close()
        out[#out + 1] = { stream = stream, take = take, items = items, n = n, position = p:position() }
      end
      if p:finished() then return out end
      client:run_op(p)
    end
  end

  local Q = '{"TableName":"t","KeyConditionExpression":"#a = :a","ExpressionAttributeNames":{"#a":"pk"},' ..
            '"ExpressionAttributeValues":{":a":{"S":"p"}}'
  -- Keys as a server may write them: escapes, a 38-digit number; they go back byte for byte.
  local K1 = '{"pk":{"S":"p"},"sk":{"S":"q\\"u\\\\o\\u00e9\\/1"}}'
  local K2 = '{"pk":{"S":"p"},"sk":{"N":"12345678901234567890123456789012345678"}}'

  local function items(...)
    local out = {}
    for i, sk in ipairs({ ... }) do out[i] = '{"pk":{"S":"p"},"sk":{"S":"' .. sk .. '"}}' end
    return '"Items":[' .. table.concat(out, ",") .. "]"
  end

  it("follows a query's pages, carrying each LastEvaluatedKey byte for byte, with Limit from page_size and limit", function()
    local answers = {
      '{"Count":2,' .. items("a", "b") .. ',"LastEvaluatedKey":' .. K1 .. ',"ScannedCount":2}',
      '{"Count":2,' .. items("c", "d") .. ',"LastEvaluatedKey":' .. K2 .. ',"ScannedCount":2}',
      '{"Count":1,' .. items("e") .. ',"LastEvaluatedKey":{"pk":{"S":"p"},"sk":{"S":"e"}},"ScannedCount":1}',
    }
    local client, seen = client_with(function(_, _, n) return 200, answers[n] end)
    local p = core.pager_new(client.handle, { streams = { { op = "Query", body = Q .. "}", limit = 5, page_size = 2 } } })
    assert.equal('{"streams":[{"count":0}]}', p:position())
    local pages = drain(client, p)
    assert.same({
      Q .. ',"Limit":2}',
      Q .. ',"Limit":2,"ExclusiveStartKey":' .. K1 .. "}",
      Q .. ',"Limit":1,"ExclusiveStartKey":' .. K2 .. "}",
    }, seen)
    assert.equal(3, #pages)
    assert.same({ 2, 2, 1 }, { pages[1].take, pages[2].take, pages[3].take })
    assert.equal("d", pages[2].items[2].sk)
    assert.equal('{"streams":[{"key":' .. K1 .. ',"count":2}]}', pages[1].position)
    assert.equal('{"streams":[{"key":' .. K2 .. ',"count":4}]}', pages[2].position)
    assert.equal('{"streams":[{"done":true,"count":5}]}', pages[3].position) -- the limit ends it
    assert.is_true(p:finished())
    assert.is_true(p:status())
    assert.same({ requests = 3, pages = 3, count = 5, scanned = 5, taken = 5 }, p:stats())
  end)

  it("resumes from a position with the same request, and the counts toward the limits", function()
    local client, seen = client_with(function()
      return 200, '{"Count":3,' .. items("x", "y", "z") .. ',"LastEvaluatedKey":' .. K1 .. "}"
    end)
    local position = '{"streams":[{"key":' .. K2 .. ',"count":4}]}'
    local p = core.pager_new(client.handle, { streams = { { op = "Query", body = Q .. "}", limit = 6 } }, start = position })
    local pages = drain(client, p)
    assert.same({ Q .. ',"Limit":2,"ExclusiveStartKey":' .. K2 .. "}" }, seen)
    assert.equal(1, #pages)
    assert.equal(2, pages[1].take) -- the server ignored Limit: the limit cuts the page
    assert.equal('{"streams":[{"done":true,"count":6}]}', pages[1].position)
    -- a finished stream sends nothing
    local done = core.pager_new(client.handle, { streams = { { op = "Query", body = Q .. "}" } }, start = pages[1].position })
    assert.is_true(done:finished())
    assert.equal(1, #seen)
  end)

  it("runs a parallel scan's segments and resumes each from its own key", function()
    local client, seen = client_with(function(_, body)
      local seg = tonumber(body:match('"Segment":(%d+)'))
      if body:find("ExclusiveStartKey", 1, true) then return 200, '{"Count":1,' .. items("s" .. seg .. "b") .. "}" end
      local lek = seg == 1 and "" or (',"LastEvaluatedKey":{"pk":{"S":"s' .. seg .. '"}}')
      return 200, '{"Count":1,' .. items("s" .. seg .. "a") .. lek .. "}"
    end)
    local p = core.pager_new(client.handle, { segments = 3, op = "Scan", body = '{"TableName":"t"}' })
    local first = {}
    for _ = 1, 3 do
      local page, stream, take = p:take()
      if not page then
        client:run_op(p)
        page, stream, take = p:take()
      end
      first[stream] = take
      page:close()
    end
    assert.same({ 1, 1, 1 }, first)
    assert.same({
      '{"TableName":"t","Segment":0,"TotalSegments":3}',
      '{"TableName":"t","Segment":1,"TotalSegments":3}',
      '{"TableName":"t","Segment":2,"TotalSegments":3}',
    }, seen)
    local position = p:position()
    assert.equal('{"streams":[{"key":{"pk":{"S":"s0"}},"count":1},{"done":true,"count":1},'
      .. '{"key":{"pk":{"S":"s2"}},"count":1}]}', position)
    p:free()
    -- the position survives being kept as JSON
    local kept = core.json_decode(core.json_encode({ position = position })).position
    local again = core.pager_new(client.handle, { segments = 3, op = "Scan", body = '{"TableName":"t"}', start = kept })
    local pages = drain(client, again)
    assert.equal(2, #pages)
    assert.same({
      '{"TableName":"t","ExclusiveStartKey":{"pk":{"S":"s0"}},"Segment":0,"TotalSegments":3}',
      '{"TableName":"t","ExclusiveStartKey":{"pk":{"S":"s2"}},"Segment":2,"TotalSegments":3}',
    }, { seen[4], seen[5] })
    assert.equal('{"streams":[{"done":true,"count":2},{"done":true,"count":1},{"done":true,"count":2}]}',
      again:position())
  end)

  it("an overall limit gives each request what is left; a stream limit of 0 sends nothing", function()
    local client, seen = client_with(function() return 200, '{"Count":2,' .. items("a", "b") .. "}" end)
    local p = core.pager_new(client.handle, { limit = 3, streams = {
      { op = "Query", body = Q .. "}" }, { op = "Query", body = Q .. "}", limit = 0 },
      { op = "Query", body = Q .. "}", page_size = 7 },
    } })
    local pages = drain(client, p)
    -- this host sends one request at a time: the third stream asks for what the first left
    assert.same({ Q .. ',"Limit":3}', Q .. ',"Limit":1}' }, seen)
    local taken = 0
    for _, pg in ipairs(pages) do taken = taken + pg.take end
    assert.equal(3, taken)
    assert.matches('^{"streams":%[{"done":true,"count":2},{"done":true,"count":0},{"done":true,"count":1}%]}$',
      p:position())
  end)

  it("hands out a failed stream's error in arrival order, and a body that is not a page as InvalidResponse", function()
    local client = client_with(function(_, body)
      if body:find('"Segment":0', 1, true) then return 200, '{"Count":1,' .. items("a") .. "}" end
      if body:find('"Segment":1', 1, true) then
        return 400, '{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"gone"}'
      end
      return 200, '{"Count":1,"Items":[{}]'
    end)
    local p = core.pager_new(client.handle, { segments = 3, op = "Scan", body = '{"TableName":"t"}' })
    client:run_op(p)
    local page, stream = p:take()
    assert.equal(1, stream)
    page:close()
    local none, message, info = p:take()
    assert.is_nil(none)
    assert.equal("ResourceNotFoundException: gone", message)
    assert.equal("ResourceNotFoundException", info.code)
    assert.equal(400, info.status)
    none, message, info = p:take()
    assert.is_nil(none)
    assert.equal("InvalidResponse", info.code)
    assert.equal("the response is not valid JSON (json: unexpected end of input at byte 23)", info.message)
    assert.equal("InvalidResponse: " .. info.message, message)
    assert.is_nil(p:take())
    assert.is_true(p:finished())
    local ok, first = p:status()
    assert.is_false(ok)
    assert.equal("ResourceNotFoundException", first.code)
  end)

  it("a host loop drives it through next/feed: a round ends at done, a call belongs to its pager", function()
    local client = client_with(function() return 200, "{}" end)
    local p = core.pager_new(client.handle, { streams = { { op = "Scan", body = '{"TableName":"t"}', page_size = 1 } } })
    local kind, call = p:next(5)
    assert.equal("call", kind)
    assert.equal("idle", (p:next()))
    local other = core.pager_new(client.handle, { streams = {} })
    assert.has_error(function() other:feed(call) end, "bad argument #1 to 'feed' (a call of this pager expected)")
    assert.has_error(function() p:feed(call) end, "pager:feed: the call is not finished")
    local step, request = call:next(core.now_ms())
    assert.equal("send", step)
    assert.equal('{"TableName":"t","Limit":1}', request.body)
    call:feed(200, {}, '{"Count":1,"Items":[{"pk":{"S":"a"}}],"LastEvaluatedKey":{"pk":{"S":"a"}}}')
    assert.equal("done", (call:next(core.now_ms())))
    p:feed(call)
    assert.has_error(function() call:next(core.now_ms()) end, "attempt to use a closed call")
    assert.equal("done", (p:next())) -- done for now: a page waits
    assert.is_false(p:finished())
    local page, _, take = p:take()
    assert.equal(1, take)
    assert.equal("a", page:next().pk)
    kind, call = p:next()
    assert.equal("call", kind)
    p:abort("gave up")
    assert.has_error(function() call:next(core.now_ms()) end, "attempt to use a closed call")
    assert.is_true(p:finished())
    local ok, info = p:status()
    assert.is_false(ok)
    assert.equal("gave up", info.message)
  end)

  it("refuses what is not a position, and misuse", function()
    local client = client_with(function() return 200, "{}" end)
    local one = { streams = { { op = "Scan", body = '{"TableName":"t"}' } } }
    for _, start in ipairs({ "", "[]", '{"streams":[]}', '{"streams":[{"count":-1}]}', '{"streams":[{},{}]}',
                             '{"streams":[{"key":[1]}]}' }) do
      one.start = start
      local p, message = core.pager_new(client.handle, one)
      assert.is_nil(p)
      assert.equal("not a position of 1 stream(s) (a text pager:position() wrote is expected)", message)
    end
    one.start = { streams = {} }
    assert.has_error(function() core.pager_new(client.handle, one) end,
      "bad field 'start' to 'pager_new' (position text expected, got table)")
    assert.has_error(function() core.pager_new(client.handle, {}) end)
    assert.has_error(function()
      core.pager_new(client.handle, { segments = 2, op = "Scan", body = "{}", streams = {} })
    end)
    assert.has_error(function()
      core.pager_new(client.handle, { streams = { { op = "Scan", body = '{"TableName":"t","Limit":3}' } } })
    end, "bad stream #1 to 'pager_new' (op Query or Scan and a JSON object body without Limit, "
      .. "ExclusiveStartKey, Segment or TotalSegments expected)")
    assert.has_error(function()
      core.pager_new(client.handle, { streams = { { op = "GetItem", body = "{}" } } })
    end)
    assert.has_error(function()
      core.pager_new(client.handle, { streams = { { op = "Scan", body = "{}", page_size = 0 } } })
    end)
    assert.has_error(function() core.pager_new(client.handle, { streams = {}, limit = 0 }) end)
    local p = core.pager_new(client.handle, { streams = {} })
    assert.is_true(p:finished())
    assert.equal('{"streams":[]}', p:position())
    assert.equal("dynamo.Pager (0 streams)", tostring(p))
    p:free()
    p:free()
    assert.equal("dynamo.Pager (freed)", tostring(p))
    assert.has_error(function() p:take() end, "attempt to use a freed pager")
    assert.has_error(function() p:position() end, "attempt to use a freed pager")
  end)

  it("a freed pager closes the calls it handed out; a page it handed out lives on", function()
    local client = client_with(function() return 200, "{}" end)
    local p = core.pager_new(client.handle, { streams = {
      { op = "Scan", body = '{"TableName":"t"}' }, { op = "Scan", body = '{"TableName":"u"}' } } })
    local _, call = p:next()
    call:next(core.now_ms())
    call:feed(200, {}, '{"Count":1,"Items":[{"pk":{"S":"a"}}]}')
    p:feed(call)
    local _, call2 = p:next()
    local page = p:take()
    p:free()
    assert.has_error(function() call2:next(core.now_ms()) end, "attempt to use a closed call")
    collectgarbage()
    assert.equal("a", page:next().pk)
    assert.is_nil(page:next())
    -- a to-be-closed pager frees itself
    do
      local q <close> = core.pager_new(client.handle, { streams = {} })
      assert.is_true(q:finished())
    end
    assert.is_not_nil(cjson)
  end)
end)
