-- dynamo.core's sigv4 area: signing through the binding, checked against the
-- stages it exposes, against an independent recomputation of the HMAC chain,
-- and against vectors of the AWS SigV4 test suite read from shared/.
local core = require "dynamo.core"

local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local SUITE_TIME = 1440938160 -- 20150830T123600Z

-- The repository root is two levels above this file (spec/unit/); shared/ is
-- its sibling.
local function shared_dir()
  local source = debug.getinfo(1, "S").source
  local path = source:sub(1, 1) == "@" and source:sub(2) or source
  local dir = path:match("^(.*)[/\\]") or "."
  return dir .. "/../../../shared"
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function fromhex(h)
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local function trim(s)
  return (s:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

-- A .req file: request line, "Name:value" lines (leading whitespace continues
-- the previous value), then an optional blank line and the body.
local function parse_req(text)
  local eol = text:find("\n", 1, true) or #text + 1
  local method, target = text:sub(1, eol - 1):match("^(%S+) (.*) HTTP/1%.1$")
  local path, query = target:match("^([^?]*)%??(.*)$")
  local headers, body = {}, ""
  local pos = eol + 1
  while pos <= #text do
    local e = text:find("\n", pos, true) or #text + 1
    local line = text:sub(pos, e - 1)
    if line == "" then
      body = text:sub(e + 1)
      break
    elseif line:match("^[ \t]") then
      local last = headers[#headers]
      last[2] = last[2] .. " " .. trim(line)
    else
      local name, value = line:match("^([^:]+):(.*)$")
      headers[#headers + 1] = { name, value }
    end
    pos = e + 1
  end
  return { method = method, path = path, query = query, headers = headers, payload = body }
end

local function ddb_request(overrides)
  local t = {
    method = "POST",
    path = "/",
    query = "",
    payload = '{"TableName":"users","Item":{"pk":{"S":"user#1"},"age":{"N":"34"},"name":{"S":"J\195\188rgen"}}}',
    headers = {
      { "Host", "dynamodb.us-east-1.amazonaws.com" },
      { "X-Amz-Date", "20240229T081500Z" },
      { "X-Amz-Target", "DynamoDB_20120810.PutItem" },
      { "Content-Type", "application/x-amz-json-1.0" },
      { "X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE//token+value=" },
    },
    region = "us-east-1",
    service = "dynamodb",
    access_key = "AKIDEXAMPLE",
    secret_key = SECRET,
    token = "FwoGZXIvYXdzEXAMPLE//token+value=",
    time = 1709194500, -- 2024-02-29T08:15:00Z
  }
  for k, v in pairs(overrides or {}) do t[k] = v end
  return t
end

-- The signature recomputed in Lua from the string to sign, for comparison.
local function expected_authorization(t, sts, signed_headers)
  local date = core.amz_date(t.time):sub(1, 8)
  local k = fromhex(core.hmac_sha256_hex("AWS4" .. t.secret_key, date))
  k = fromhex(core.hmac_sha256_hex(k, t.region))
  k = fromhex(core.hmac_sha256_hex(k, t.service))
  k = fromhex(core.hmac_sha256_hex(k, "aws4_request"))
  return ("AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s"):format(
    t.access_key, date, t.region, t.service, signed_headers, core.hmac_sha256_hex(k, sts))
end

describe("dynamo.core sigv4", function()
  describe("a DynamoDB PutItem request", function()
    it("has the canonical request built from its sorted, lowercased headers and body hash", function()
      local t = ddb_request()
      local want = table.concat({
        "POST", "/", "",
        "content-type:application/x-amz-json-1.0",
        "host:dynamodb.us-east-1.amazonaws.com",
        "x-amz-date:20240229T081500Z",
        "x-amz-security-token:FwoGZXIvYXdzEXAMPLE//token+value=",
        "x-amz-target:DynamoDB_20120810.PutItem",
        "",
        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target",
        core.sha256_hex(t.payload),
      }, "\n")
      assert.equal(want, core.sigv4_canonical_request(t))
    end)

    it("has the string to sign made of the date, scope and canonical request hash", function()
      local t = ddb_request()
      local creq = core.sigv4_canonical_request(t)
      assert.equal("AWS4-HMAC-SHA256\n20240229T081500Z\n20240229/us-east-1/dynamodb/aws4_request\n"
        .. core.sha256_hex(creq), core.sigv4_string_to_sign(t))
    end)

    it("is signed with the HMAC chain over its string to sign", function()
      local t = ddb_request()
      local want = expected_authorization(t, core.sigv4_string_to_sign(t),
        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target")
      assert.equal(want, core.sigv4_sign(t))
      -- and the value computed independently when the C tests were written
      assert.equal("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240229/us-east-1/dynamodb/aws4_request, "
        .. "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
        .. "Signature=49440b54921edda811237042c2fcdd045d56d274822b29fafe289bfa815d1f84", want)
    end)

    it("signs the same through a cached signer, first and later calls alike", function()
      local t = ddb_request()
      local signer = core.sigv4_signer()
      local plain = core.sigv4_sign(t)
      assert.equal(plain, signer:sign(t))
      assert.equal(plain, signer:sign(t))
    end)

    it("keeps many headers in a stable order", function()
      local t = ddb_request()
      for i = 1, 30 do t.headers[#t.headers + 1] = { ("X-Extra-%02d"):format(31 - i), " v " .. i .. " " } end
      t.headers[#t.headers + 1] = { "x-extra-05", "again" }
      local creq = core.sigv4_canonical_request(t)
      assert.truthy(creq:find("\nx-extra-01:v 30\n", 1, true))
      assert.truthy(creq:find("\nx-extra-05:v 26,again\n", 1, true))
      assert.equal(expected_authorization(t, core.sigv4_string_to_sign(t), creq:match("\n([^\n]*)\n[^\n]*$")),
        core.sigv4_sign(t))
    end)
  end)

  describe("the AWS test suite through the binding", function()
    local cases = {
      "get-vanilla", "post-vanilla", "get-utf8", "get-header-value-multiline", "get-header-key-duplicate",
      "get-header-value-trim", "get-vanilla-query-order-key-case", "get-vanilla-query-order-encoded",
      "post-x-www-form-urlencoded-parameters", "normalize-path/get-slashes", "normalize-path/get-space",
      "post-sts-token/post-sts-header-before",
    }
    for _, name in ipairs(cases) do
      it("matches " .. name, function()
        local base = ("%s/sigv4-test-suite/%s/%s"):format(shared_dir(), name, name:match("[^/]+$"))
        local t = parse_req(read_file(base .. ".req"))
        t.region, t.service, t.time = "us-east-1", "service", SUITE_TIME
        t.access_key, t.secret_key = "AKIDEXAMPLE", SECRET
        assert.equal(read_file(base .. ".creq"), core.sigv4_canonical_request(t))
        assert.equal(read_file(base .. ".sts"), core.sigv4_string_to_sign(t))
        assert.equal(read_file(base .. ".authz"), core.sigv4_sign(t))
        assert.equal(read_file(base .. ".authz"), core.sigv4_signer():sign(t))
      end)
    end
  end)

  describe("the signer's key cache", function()
    it("re-derives when the date, secret, region or service change", function()
      local signer = core.sigv4_signer()
      local t = ddb_request()
      assert.equal(core.sigv4_sign(t), signer:sign(t))
      t.time = t.time + 86400
      assert.equal(core.sigv4_sign(t), signer:sign(t))
      local before = signer:sign(t)
      t.secret_key = "another/secret+key0000000000000000000000"
      local after = signer:sign(t)
      assert.equal(core.sigv4_sign(t), after)
      assert.are_not.equal(before, after)
      -- an equal secret in a new (long) string is recognised too
      t.secret_key = ("x"):rep(60) .. tostring(os.time() * 0)
      local long = signer:sign(t)
      t.secret_key = ("x"):rep(60) .. "0"
      assert.equal(long, signer:sign(t))
      assert.equal(core.sigv4_sign(t), long)
      t.region = "eu-west-1"
      assert.equal(core.sigv4_sign(t), signer:sign(t))
      t.service = "dynamodb-streams"
      assert.equal(core.sigv4_sign(t), signer:sign(t))
    end)

    it("is a dynamo.Signer that can be closed and still used", function()
      local t = ddb_request()
      local want = core.sigv4_sign(t)
      do
        local signer <close> = core.sigv4_signer()
        assert.matches("^dynamo%.Signer", tostring(signer))
        assert.equal(want, signer:sign(t))
        getmetatable(signer).__close(signer)
        assert.equal(want, signer:sign(t))
      end
      assert.has_error(function() core.sigv4_signer().sign({}, t) end)
    end)
  end)

  describe("errors", function()
    local required = { "method", "path", "region", "service", "access_key", "secret_key", "time", "headers" }
    for _, field in ipairs(required) do
      it("names a missing " .. field .. " and never shows the secret", function()
        local t = ddb_request { [field] = false }
        t[field] = nil
        for _, f in ipairs { core.sigv4_sign, function(x) return core.sigv4_signer():sign(x) end } do
          local ok, err = pcall(f, t)
          assert.is_false(ok)
          assert.truthy(err:find("field '" .. field .. "'", 1, true), err)
          assert.falsy(err:find(SECRET, 1, true))
        end
      end)
    end

    it("reports the exact message for a bad region", function()
      local ok, err = pcall(core.sigv4_sign, ddb_request { region = 42 })
      assert.is_false(ok)
      assert.equal("sigv4_sign: field 'region' must be a string", err)
    end)

    it("rejects malformed headers, times and tokens without echoing values", function()
      local bad = {
        { headers = { "not a pair" } },
        { headers = { { "Host" } } },
        { headers = { { 1, "v" } } },
        { headers = { { "Bad Name", SECRET } } },
        { headers = { { "", "v" } } },
        { time = 1.5 },
        { time = "1709194500" },
        { time = 253402300800 },
        { token = 7 },
        { region = "us/" .. SECRET },
        { method = "" },
        { secret_key = {} },
      }
      for i, o in ipairs(bad) do
        local ok, err = pcall(core.sigv4_sign, ddb_request(o))
        assert.is_false(ok, "case " .. i)
        assert.truthy(err:match("^sigv4_sign: "), err)
        assert.falsy(err:find(SECRET, 1, true), err)
      end
      local ok, err = pcall(core.sigv4_sign, "nope")
      assert.is_false(ok)
      assert.truthy(err:find("request table", 1, true))
    end)

    it("lets the canonical request be built without credentials", function()
      local t = ddb_request()
      t.access_key, t.secret_key, t.region = nil, nil, nil
      assert.truthy(core.sigv4_canonical_request(t):match("^POST\n/\n\n"))
      assert.has_error(function() core.sigv4_string_to_sign(t) end, "sigv4_string_to_sign: field 'region' must be a string")
    end)
  end)

  describe("helpers", function()
    it("formats amz dates in UTC, leap days included", function()
      assert.equal("19700101T000000Z", core.amz_date(0))
      assert.equal("20150830T123600Z", core.amz_date(SUITE_TIME))
      assert.equal("20000229T000000Z", core.amz_date(951782400))
      assert.equal("21000301T000000Z", core.amz_date(4107542400))
      assert.equal("19691231T235959Z", core.amz_date(-1))
      assert.has_error(function() core.amz_date("x") end)
    end)

    it("computes CRC-32, in one go or in pieces", function()
      assert.equal(0xCBF43926, core.crc32("123456789"))
      assert.equal(0, core.crc32(""))
      assert.equal(0x414FA339, core.crc32("The quick brown fox jumps over the lazy dog"))
      assert.equal(core.crc32("123456789"), core.crc32("56789", core.crc32("1234")))
      assert.has_error(function() core.crc32("x", -1) end)
      assert.has_error(function() core.crc32("x", 0x100000000) end)
    end)

    it("computes SHA-256 and HMAC-SHA-256", function()
      assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256_hex(""))
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256_hex("abc"))
      assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        core.hmac_sha256_hex("Jefe", "what do ya want for nothing?"))
      assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        core.hmac_sha256_hex(("\170"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First"))
    end)
  end)
end)
