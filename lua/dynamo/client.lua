--- `dynamo.client{...}`: a DynamoDB client. The C core signs, sends (libcurl,
-- persistent connections, up to `concurrency` requests in flight), checks and
-- retries; this module resolves configuration and turns failures into
-- `dynamo.DynamoTableError` objects.
--
--   local client = dynamo.client{ region = "us-west-1" }
--   local out = client:call("DescribeTable", { TableName = "users" })
--
-- With `transport = function(request) return status, headers, body end` the
-- client drives the same state machine from Lua instead of libcurl (the host
-- driver): the function may yield its coroutine, so an event loop can serve
-- other requests meanwhile. `sleep = function(ms) end` replaces the blocking
-- sleep used between retries.
-- @module dynamo.client
local core = require("dynamo.core")
local errors = require("dynamo.errors")
local config = require("dynamo.config")

local json_encode = core.json_encode
local now_ms = core.now_ms
local type, pcall, tostring, setmetatable, next = type, pcall, tostring, setmetatable, next

local Client = {}
Client.__index = Client
Client.__name = "dynamo.Client"

local DEFAULTS = { max_attempts = 4, timeout_ms = 10000, connect_timeout_ms = 3000, concurrency = 8 }

local function check_positive_integer(opts, name)
  local v = opts[name]
  if v == nil then return DEFAULTS[name] end
  if math.type(v) ~= "integer" or v < 1 then
    error(("dynamo.client: '%s' must be a positive integer, got %s"):format(name, tostring(v)), 3)
  end
  return v
end

local function validation_error(message)
  return errors.new("Validation", message, { retryable = false })
end

--- Creates a client. Every field is optional; see the module description.
-- @tparam[opt] table opts region, endpoint, credentials = {access_key_id,
--   secret_access_key, session_token}, profile, concurrency, max_attempts,
--   timeout_ms, connect_timeout_ms, transport, sleep, seed
function Client.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dynamo.client: options must be a table", 2) end
  local profile = config.profile(opts.profile)
  local region = config.region(opts.region, profile)
  local endpoint = config.endpoint(opts.endpoint, profile)
  if not region then
    if endpoint then
      region = "us-east-1" -- a custom endpoint (the local server) still needs a signing region
    else
      error(errors.new("Configuration",
        "no region: pass region = ... or set AWS_REGION (or use a local endpoint)"), 2)
    end
  end
  endpoint = endpoint or ("https://dynamodb." .. region .. ".amazonaws.com")
  if not endpoint:match("^https?://[^/]+") then
    error(errors.new("Configuration", "endpoint must be an http:// or https:// URL, got " .. tostring(endpoint)), 2)
  end
  local creds = config.credentials(opts.credentials, profile)
  if creds == nil then
    if config.is_loopback(endpoint) then
      -- the local server checks that requests are signed, not who signed them
      creds = { access_key_id = "local", secret_access_key = "local" }
    else
      error(errors.new("Configuration", "no AWS credentials: pass credentials = {...}, set AWS_ACCESS_KEY_ID and "
        .. "AWS_SECRET_ACCESS_KEY, or add them to the shared credentials file"), 2)
    end
  end
  if type(creds.access_key_id) ~= "string" or type(creds.secret_access_key) ~= "string" then
    error(errors.new("Configuration", "credentials need access_key_id and secret_access_key strings"), 2)
  end
  if opts.transport ~= nil and type(opts.transport) ~= "function" then
    error("dynamo.client: 'transport' must be a function(request) -> status, headers, body", 2)
  end
  local self = setmetatable({
    region = region,
    endpoint = endpoint,
    concurrency = check_positive_integer(opts, "concurrency"),
    max_attempts = check_positive_integer(opts, "max_attempts"),
    timeout_ms = check_positive_integer(opts, "timeout_ms"),
    transport = opts.transport,
    sleep = opts.sleep or core.sleep_ms,
  }, Client)
  self.handle = core.client_new{
    endpoint = endpoint, region = region,
    access_key = creds.access_key_id, secret_key = creds.secret_access_key, session_token = creds.session_token,
    max_attempts = self.max_attempts, timeout_ms = self.timeout_ms,
    connect_timeout_ms = check_positive_integer(opts, "connect_timeout_ms"),
    concurrency = self.concurrency, seed = opts.seed,
  }
  return self
end

-- Runs one call through the host transport: the sans-IO state machine in C
-- decides what to send and when to wait; this loop only does the I/O.
local function host_call(self, op, body, decode)
  local call = self.handle:prepare(op, body)
  local transport, sleep = self.transport, self.sleep
  while true do
    local kind, arg = call:next(now_ms())
    if kind == "send" then
      local ok, status, headers, rbody = pcall(transport, arg)
      if not ok then
        call:fail("transport", tostring(status))
      elseif type(status) ~= "number" then
        call:fail("transport", tostring(headers or "transport returned no status"))
      else
        call:feed(status, headers or {}, rbody or "")
      end
    elseif kind == "wait" then
      sleep(arg)
    else
      return call:result(decode)
    end
  end
end

-- One operation through the host transport or libcurl; `decode` as the
-- core's call takes it (false, true or "page"). Raises DynamoTableError.
function Client:_send(op, body, decode)
  local out, msg, info
  if self.transport then
    out, msg, info = host_call(self, op, body, decode)
  else
    out, msg, info = self.handle:call(op, body, decode)
  end
  if not out then error(errors.from_core(info, msg), 0) end
  return out
end

--- Sends a JSON body for `op` and returns the decoded response. With
-- `unmarshal`, items in the response (Item, Items, Attributes, Responses)
-- come back as native Lua values. Raises DynamoTableError on failure (code
-- "InvalidResponse" for a body that is not valid JSON).
function Client:send(op, body, unmarshal)
  return self:_send(op, body, unmarshal and true or false)
end

--- Sends a Query or Scan body and returns its response as a page whose items
-- are read one at a time: `page:next()` gives the next item (native values)
-- or nil after the last; `page:result()` then holds the other members
-- (LastEvaluatedKey in AttributeValue form, Count, ...). A page never holds
-- more than one decoded item, whatever the response's size. A page read to
-- its end gives its memory back; `page:close()` (or `local page <close> =`)
-- does so at once, after which `next()` gives nil and `result()` the members
-- read before. Raises as send.
function Client:send_page(op, body)
  return self:_send(op, body, "page")
end

-- Many operations at once, decoded as `decode` says (see _send); a failed one
-- is a DynamoTableError object in its slot (nothing raises, so no result is lost).
local function send_all(self, requests, decode)
  if self.transport then
    local out = {}
    for i, r in ipairs(requests) do
      local ok, res = pcall(self._send, self, r[1], r[2], decode)
      out[i] = ok and res or (errors.is(res) and res or errors.new("Transport", tostring(res)))
    end
    return out
  end
  -- decoded in C straight from the response buffers
  local out, failed = self.handle:call_many(requests, decode)
  if failed then
    for i in next, failed do out[i] = errors.from_core(out[i]) end
  end
  return out
end

--- Sends many requests at once (up to `concurrency` in flight) and returns
-- their decoded responses in input order; a failed one is a DynamoTableError
-- object in its slot (nothing raises, so no result is lost).
-- @tparam table requests array of { op, body_json }
function Client:send_many(requests, unmarshal)
  return send_all(self, requests, unmarshal and true or false)
end

--- As send_many for Query or Scan requests, whose responses come back as
-- pages (see send_page).
function Client:send_pages(requests)
  return send_all(self, requests, "page")
end

-- Runs an op of the core (a dynamo.Batch, a dynamo.Pager) through the host
-- transport, one call at a time: each call the op hands out is driven like a
-- single call.
local function host_run_op(self, op)
  local waited = 0
  while true do
    local kind, arg = op:next(waited)
    waited = 0
    if kind == "call" then
      local call = arg
      local transport, sleep = self.transport, self.sleep
      while true do
        local ckind, carg = call:next(now_ms())
        if ckind == "send" then
          local ok, status, headers, rbody = pcall(transport, carg)
          if not ok then
            call:fail("transport", tostring(status))
          elseif type(status) ~= "number" then
            call:fail("transport", tostring(headers or "transport returned no status"))
          else
            call:feed(status, headers or {}, rbody or "")
          end
        elseif ckind == "wait" then
          sleep(carg)
        else
          break
        end
      end
      op:feed(call)
    elseif kind == "wait" then
      self.sleep(arg)
      waited = arg
    else
      return
    end
  end
end

--- Runs an op of the core (a batch: see dynamo.batch; a pager's round: see
-- dynamo.paging) with this client's driver: libcurl with up to `concurrency`
-- requests in flight, or the host transport. Returns when the op says
-- "done" (for a pager: done for now, its pages waiting).
function Client:run_op(op)
  if self.transport then return host_run_op(self, op) end
  return op:run()
end

--- Sends any DynamoDB operation. `params` is the request as plain Lua tables,
-- values in AttributeValue form (see dynamo.marshal); returns the decoded
-- response the same way (see dynamo.unmarshal). Raises DynamoTableError with
-- the AWS error type as `code` (e.g. "ResourceNotFoundException").
function Client:call(op, params)
  if type(op) ~= "string" or not op:match("^%u%a+$") then
    error(validation_error("client:call: operation must be a DynamoDB operation name such as 'GetItem', got "
      .. tostring(op)), 2)
  end
  if params ~= nil and type(params) ~= "table" then
    error(validation_error("client:call: params must be a table"), 2)
  end
  local ok, body = pcall(json_encode, params or {}, "params")
  if not ok then error(validation_error(tostring(body)), 2) end
  return self:send(op, body)
end

--- Replaces the credentials (rotation); later requests use the new keys.
function Client:set_credentials(creds)
  self.handle:set_credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
end

--- { requests = n, connections = n, retries = n, waits = n } since the client
-- was made; `waits`: times the curl driver slept for answers (with every call
-- of a batch in flight it sleeps once for the newest, not once per answer).
function Client:stats() return self.handle:stats() end

--- Releases the connections; later calls raise.
function Client:close() self.handle:close() end
Client.__close = Client.close

Client.__tostring = function(self)
  return ("dynamo.Client(%s, %s)"):format(self.region, self.endpoint)
end

return Client
