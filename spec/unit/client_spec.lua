-- dynamo.client: configuration, the host driver, error objects. No server:
-- a recording fake transport answers.
local helpers = require("spec.helpers")

local function ok_response(body)
  return { 200, { ["content-type"] = "application/x-amz-json-1.0" }, body or "{}" }
end

local function error_response(status, aws_type, message)
  return { status, {}, string.format('{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"%s"}',
    aws_type, message) }
end

describe("dynamo.config", function()
  local config = require("dynamo.config")

  it("parses shared files, with nested service settings", function()
    local t = config.parse_ini(table.concat({
      "# comment", "[default]", "aws_access_key_id = AKID", "aws_secret_access_key=SECRET",
      "", "[profile dev]", "region = eu-west-1", "services = local", "dynamodb =",
      "  endpoint_url = http://127.0.0.1:8000", "; another comment",
    }, "\n"))
    assert.equal("AKID", t.default.aws_access_key_id)
    assert.equal("SECRET", t.default.aws_secret_access_key)
    assert.equal("eu-west-1", t["profile dev"].region)
    assert.equal("http://127.0.0.1:8000", t["profile dev"]["dynamodb.endpoint_url"])
  end)

  it("recognises loopback endpoints only", function()
    assert.is_true(config.is_loopback("http://127.0.0.1:8000"))
    assert.is_true(config.is_loopback("http://localhost:4567/"))
    assert.is_true(config.is_loopback("http://[::1]:8000"))
    assert.is_false(config.is_loopback("https://dynamodb.us-east-1.amazonaws.com"))
    assert.is_false(config.is_loopback("http://10.0.0.1:8000"))
  end)

  it("prefers explicit settings over profile values", function()
    assert.equal("ap-south-1", config.region("ap-south-1", { region = "eu-west-1" }))
    assert.equal("http://x:1", config.endpoint("http://x:1", { endpoint_url = "http://y:2" }))
    local c = config.credentials({ access_key_id = "A", secret_access_key = "B" }, {})
    assert.equal("A", c.access_key_id)
  end)
end)

describe("dynamo.client with a host transport", function()
  local dynamo

  setup(function() dynamo = require("dynamo") end)

  local function client_with(responses, opts)
    local fake = helpers.fake_transport(responses)
    local waits = {}
    local o = { endpoint = "http://127.0.0.1:8000", region = "us-east-1", transport = fake.fn,
                credentials = { access_key_id = "AKIDSPEC", secret_access_key = "very-secret-key" },
                sleep = function(ms) waits[#waits + 1] = ms end, seed = 7 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return dynamo.client(o), fake, waits
  end

  it("signs a DynamoDB request and decodes the answer", function()
    local client, fake = client_with({ ok_response('{"TableNames":["a","b"],"Count":2}') })
    local out = client:call("ListTables", { Limit = 10 })
    assert.same({ "a", "b" }, { out.TableNames[1], out.TableNames[2] })
    assert.equal(2, out.Count)
    local req = fake.requests[1]
    assert.equal("POST", req.method)
    assert.equal("http://127.0.0.1:8000/", req.url)
    assert.equal('{"Limit":10}', req.body)
    local h = {}
    for k, v in pairs(req.headers) do h[k:lower()] = v end
    assert.equal("DynamoDB_20120810.ListTables", h["x-amz-target"])
    assert.equal("application/x-amz-json-1.0", h["content-type"])
    assert.matches("^AWS4%-HMAC%-SHA256 Credential=AKIDSPEC/%d+/us%-east%-1/dynamodb/aws4_request", h.authorization)
    assert.matches("x%-amz%-target", h.authorization)
    assert.is_nil(req.body:find("very-secret-key", 1, true))
  end)

  it("retries throttling and 5xx, waiting between attempts, then succeeds", function()
    local client, fake, waits = client_with({
      error_response(400, "ThrottlingException", "slow down"),
      { 500, {}, "{}" },
      ok_response('{"TableNames":[]}'),
    })
    local out = client:call("ListTables", {})
    assert.equal(0, #out.TableNames)
    assert.equal(3, #fake.requests)
    assert.equal(2, #waits)
    assert.is_true(waits[1] >= 0 and waits[1] <= 1000)   -- throttling: base 1 s, full jitter
    assert.is_true(waits[2] >= 0 and waits[2] <= 50)     -- transient, second attempt: 25 ms * 2
  end)

  it("surfaces a client error at once with code, status and retryable", function()
    local client, fake, waits = client_with({ error_response(400, "ConditionalCheckFailedException", "The conditional request failed") })
    local ok, err = pcall(client.call, client, "PutItem", { TableName = "t" })
    assert.is_false(ok)
    assert.is_true(dynamo.errors.is(err, "ConditionalCheckFailedException"))
    assert.equal("The conditional request failed", err.message)
    assert.equal(400, err.status)
    assert.is_false(err.retryable)
    assert.equal(1, #fake.requests)
    assert.equal(0, #waits)
    assert.equal("ConditionalCheckFailedException: The conditional request failed", tostring(err))
  end)

  it("gives up after max_attempts with a retryable error", function()
    local client, fake = client_with({ { 503, {}, "{}" } }, { max_attempts = 3 })
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.equal(3, #fake.requests)
    assert.is_true(err.retryable)
    assert.equal(3, err.attempts)
  end)

  it("raises InvalidResponse for a success whose body is not JSON, in send and send_many", function()
    local client = client_with({ ok_response('{"TableNames":[') })
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.is_true(dynamo.errors.is(err, "InvalidResponse"))
    assert.matches("not valid JSON", err.message)
    assert.is_false(err.retryable)
    local many = client_with({ ok_response("{}"), ok_response("nope") })
    local results = many:send_many({ { "ListTables", "{}" }, { "ListTables", "{}" } })
    assert.same({}, results[1])
    assert.is_true(dynamo.errors.is(results[2], "InvalidResponse"))
  end)

  it("send_page gives a page whose items are read one at a time", function()
    local client = client_with({ ok_response('{"Count":1,"Items":[{"a":{"N":"7"}}],"ScannedCount":1}') })
    local page = client:send_page("Scan", '{"TableName":"t"}')
    assert.equal(7, page:next().a)
    assert.is_nil(page:next())
    assert.equal(1, page:result().ScannedCount)
    local failing = client_with({ error_response(400, "ResourceNotFoundException", "no table") })
    local ok, err = pcall(failing.send_page, failing, "Scan", "{}")
    assert.is_false(ok)
    assert.is_true(dynamo.errors.is(err, "ResourceNotFoundException"))
  end)

  it("closes a page at once, by <close> or page:close(), and goes on with the next", function()
    local body = '{"Count":2,"Items":[{"a":{"N":"7"}},{"a":{"N":"8"}}],"ScannedCount":2}'
    local client = client_with({ ok_response(body), ok_response(body), ok_response(body) })
    local seen
    do
      local page <close> = client:send_page("Scan", '{"TableName":"t"}')
      seen = page
      assert.equal(7, page:next().a)
    end
    assert.equal("dynamo.page (closed)", tostring(seen))
    assert.is_nil(seen:next())
    assert.same({ Count = 2 }, seen:result()) -- what was read before the close
    local other = client:send_page("Scan", '{"TableName":"t"}')
    other:close()
    assert.is_nil(other:next())
    local whole = client:send_page("Scan", '{"TableName":"t"}')
    assert.equal(7, whole:next().a)
    assert.equal(8, whole:next().a)
    assert.is_nil(whole:next())
    assert.equal(2, whole:result().ScannedCount)
  end)

  it("turns a transport that raises into a Transport error, never leaking the secret", function()
    local client = client_with({ function() error("connection reset by peer") end }, { max_attempts = 2 })
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.equal("Transport", err.code)
    assert.matches("connection reset", err.message)
    assert.is_nil(tostring(err):find("very-secret-key", 1, true))
  end)

  it("lets the transport yield its coroutine", function()
    local pending = {}
    local client = dynamo.client{
      endpoint = "http://127.0.0.1:8000", region = "us-east-1",
      credentials = { access_key_id = "A", secret_access_key = "S" },
      transport = function(req)
        local resp = coroutine.yield(req)     -- the "event loop" answers later
        return resp[1], resp[2], resp[3]
      end,
      sleep = function() error("no retry expected") end,
    }
    local co = coroutine.create(function() return client:call("ListTables", {}) end)
    local ok, req = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("POST", req.method)
    pending[1] = co
    local ok2, out = coroutine.resume(pending[1], ok_response('{"TableNames":["x"]}'))
    assert.is_true(ok2)
    assert.equal("x", out.TableNames[1])
  end)

  it("rejects bad options and bad operation names", function()
    assert.has_error(function() dynamo.client{ endpoint = "http://127.0.0.1:1", concurrency = 0 } end)
    assert.has_error(function() dynamo.client{ endpoint = "ftp://nowhere" } end)
    local client, fake = client_with({ ok_response() })
    local ok, err = pcall(client.call, client, "list tables", {})
    assert.is_false(ok)
    assert.equal("Validation", err.code)
    assert.equal(0, #fake.requests)
  end)

  it("needs credentials for a non-local endpoint", function()
    local ok, err = pcall(dynamo.client, { endpoint = "https://dynamodb.eu-west-1.amazonaws.com",
                                          region = "eu-west-1", profile = "no-such-profile-for-specs" })
    if os.getenv("AWS_ACCESS_KEY_ID") then
      assert.is_true(ok)
    else
      assert.is_false(ok)
      assert.equal("Configuration", err.code)
    end
  end)
end)
