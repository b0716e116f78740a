--- Shared spec helpers: module paths, a local DynamoDB-compatible server
-- (dynalite) on a free loopback port, unique table names, a recording fake
-- transport for request-shape specs.
local helpers = {}

local function repo_root()
  local source = debug.getinfo(1, "S").source:sub(2)
  local dir = source:match("^(.*)/spec/helpers%.lua$")
  if dir == nil or dir == "" then dir = "." end
  return dir
end
helpers.root = repo_root()

-- Specs run against the build named by DYNAMO_BUILD_DIR (scripts/test sets it
-- for the sanitizer pass), else build/.
local build = os.getenv("DYNAMO_BUILD_DIR") or (helpers.root .. "/build")
local function prepend(path, entry)
  if path:sub(1, #entry) == entry then return path end
  return entry .. path
end
package.path = prepend(package.path, helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;")
package.cpath = prepend(package.cpath, build .. "/?.so;")

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
helpers.shell_quote = shell_quote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end
helpers.read_file = read_file

local function sleep(seconds) os.execute("sleep " .. tostring(seconds)) end

-- Prefix for helper programs (node, curl) started from a spec: the sanitizer
-- pass preloads its runtime into lua5.4, and those programs need not carry it.
helpers.plain_env = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "

local server -- the server this process started, shared by every spec file

--- Starts (once per process) a dynalite server on a free loopback port and
-- returns its endpoint URL. When DYNAMO_TEST_ENDPOINT is set (scripts/test
-- starts one server for the whole run) that server is used instead.
function helpers.endpoint()
  local given = os.getenv("DYNAMO_TEST_ENDPOINT")
  if given and given ~= "" then return given end
  if server then return server.endpoint end
  local core = require("dynamo.core")
  local out = os.tmpname()
  local launcher = helpers.root .. "/scripts/server/start.js"
  local cmd = string.format("node %s --port 0 --watch-pid %d > %s 2>&1 & echo $!",
    shell_quote(launcher), core.getpid(), shell_quote(out))
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("l"))
  p:close()
  local port
  for _ = 1, 200 do
    local text = read_file(out) or ""
    port = text:match("listening (%d+)")
    if port then break end
    if text:match("%S") and not port and text:match("rror") then break end
    sleep(0.05)
  end
  if not port then
    local text = read_file(out) or ""
    os.remove(out)
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    error("could not start dynalite (run scripts/setup first?): " .. text)
  end
  os.remove(out)
  server = { pid = pid, endpoint = "http://127.0.0.1:" .. port }
  return server.endpoint
end

--- Stops the server this process started, if any.
function helpers.stop_server()
  if server and server.pid then os.execute("kill " .. server.pid .. " 2>/dev/null") end
  server = nil
end

--- Compatibility form used by some specs: returns endpoint, stop function.
function helpers.start_dynalite()
  return helpers.endpoint(), function() end
end

-- The control side of a fault proxy: one HTTP request through the curl
-- command (Debian package curl, installed by scripts/setup); returns the
-- decoded JSON answer or raises.
local function proxy_control(base, method, path, body)
  local cmd = string.format("%scurl -s -S --max-time 10 -X %s %s%s", helpers.plain_env, method,
    body and ("-H 'content-type: application/json' --data-binary " .. shell_quote(body) .. " ") or "",
    shell_quote(base .. path))
  local p = assert(io.popen(cmd .. " 2>&1"))
  local text = p:read("a")
  local ok, _, code = p:close()
  if not ok then error(("fault proxy control %s %s failed (curl exit %s): %s"):format(method, path, code, text), 3) end
  local core = require("dynamo.core")
  local decoded_ok, doc = pcall(core.json_decode, text)
  if not decoded_ok then error(("fault proxy control %s %s: not JSON: %s"):format(method, path, text), 3) end
  if type(doc) == "table" and doc.error then
    error(("fault proxy control %s %s: %s"):format(method, path, tostring(doc.error)), 3)
  end
  return doc
end

local function proxy_config_json(tbl)
  local core = require("dynamo.core")
  local doc = {}
  for _, k in ipairs({ "rate", "delay_ms", "seed" }) do
    if tbl[k] ~= nil then doc[k] = tbl[k] end
  end
  if tbl.faults ~= nil then
    doc.faults = type(tbl.faults) == "table" and table.concat(tbl.faults, ",") or tostring(tbl.faults)
  end
  return core.json_encode(doc)
end

--- The object helpers.fault_proxy returns, for a proxy started elsewhere (a
-- benchmark script's): `endpoint` is its URL; stop() kills `pid` when given.
function helpers.attach_fault_proxy(endpoint, pid, upstream)
  local base = endpoint:gsub("/+$", "")
  local proxy = { endpoint = base, port = tonumber(base:match(":(%d+)$")), pid = pid, upstream = upstream }
  -- accept proxy.f(x) and proxy:f(x)
  local function args(a, b) if a == proxy then return b end return a end
  function proxy.configure(a, b)
    return proxy_control(base, "POST", "/__proxy/config", proxy_config_json(args(a, b) or {}))
  end
  function proxy.stats(a, b)
    local log = args(a, b)
    return proxy_control(base, "GET", log and "/__proxy/stats?log=1" or "/__proxy/stats")
  end
  function proxy.reset() return proxy_control(base, "POST", "/__proxy/reset") end
  function proxy.stop()
    if proxy.pid then os.execute("kill " .. proxy.pid .. " 2>/dev/null") end
    proxy.pid = nil
  end
  if not proxy.upstream then proxy.upstream = proxy.stats().config.upstream end
  return proxy
end

--- Starts a fault-injecting proxy (spec/support/fault_proxy.js) in front of
-- `opts.upstream` (default helpers.endpoint()) and returns
--   { endpoint = URL, port = n, pid = n, configure(tbl), stats([log]), reset(), stop() }
-- `opts` and configure's table take `rate` (0..1), `faults` (a list or a
-- comma string of 500, 503, throttle, drop_before, drop_after, half_body,
-- bad_crc, partial; default all), `delay_ms` and `seed`; configure with a
-- seed restarts the proxy's request count, so the same seed gives the same
-- faults again. stats(true) adds `log`, the decisions in order. The proxy
-- exits with this process (--watch-pid). The methods work called with `.` or `:`.
function helpers.fault_proxy(opts)
  opts = opts or {}
  local core = require("dynamo.core")
  local upstream = opts.upstream or helpers.endpoint()
  local script = helpers.root .. "/spec/support/fault_proxy.js"
  local flags = { "--upstream", upstream, "--watch-pid", tostring(core.getpid()) }
  if opts.rate ~= nil then flags[#flags + 1] = "--rate"; flags[#flags + 1] = tostring(opts.rate) end
  if opts.seed ~= nil then flags[#flags + 1] = "--seed"; flags[#flags + 1] = tostring(opts.seed) end
  if opts.delay_ms ~= nil then flags[#flags + 1] = "--delay-ms"; flags[#flags + 1] = tostring(opts.delay_ms) end
  if opts.faults ~= nil then
    flags[#flags + 1] = "--faults"
    flags[#flags + 1] = type(opts.faults) == "table" and table.concat(opts.faults, ",") or tostring(opts.faults)
  end
  for i, f in ipairs(flags) do flags[i] = shell_quote(f) end
  local out = os.tmpname()
  local cmd = string.format("%snode %s %s > %s 2>&1 & echo $!", helpers.plain_env, shell_quote(script),
    table.concat(flags, " "), shell_quote(out))
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("l"))
  p:close()
  local port, text
  for _ = 1, 200 do
    text = read_file(out) or ""
    port = text:match("listening (%d+)")
    if port or text:match("fault_proxy:") then break end
    sleep(0.05)
  end
  os.remove(out)
  if not port then
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    error("could not start the fault proxy: " .. text)
  end
  return helpers.attach_fault_proxy("http://127.0.0.1:" .. port, pid, upstream)
end

--- A client on the local server with fixed dummy credentials.
function helpers.client(opts)
  local dynamo = require("dynamo")
  local o = { endpoint = helpers.endpoint(), region = "us-east-1",
              credentials = { access_key_id = "spec", secret_access_key = "spec-secret" } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return dynamo.client(o)
end

local counter = 0
--- A table name no other spec (or earlier run on a shared server) uses.
function helpers.table_name(prefix)
  counter = counter + 1
  local core = require("dynamo.core")
  return string.format("%s_%d_%d_%d", prefix or "spec", core.getpid(), core.now_ms() % 100000000, counter)
end

--- Creates a pk/sk (S/S, or given types) table and returns its name.
function helpers.create_table(client, opts)
  opts = opts or {}
  local name = opts.name or helpers.table_name(opts.prefix)
  local defs = { { AttributeName = "pk", AttributeType = opts.pk_type or "S" } }
  local schema = { { AttributeName = "pk", KeyType = "HASH" } }
  if opts.sort_key ~= false then
    defs[2] = { AttributeName = "sk", AttributeType = opts.sk_type or "S" }
    schema[2] = { AttributeName = "sk", KeyType = "RANGE" }
  end
  client:call("CreateTable", { TableName = name, AttributeDefinitions = defs, KeySchema = schema,
                               BillingMode = "PAY_PER_REQUEST" })
  for _ = 1, 100 do
    local d = client:call("DescribeTable", { TableName = name })
    if d.Table.TableStatus == "ACTIVE" then break end
    sleep(0.02)
  end
  return name
end

--- A host transport that records every request and answers from a script:
-- `responses` is an array of { status, headers, body } or functions(request)
-- returning them; the last entry repeats.
function helpers.fake_transport(responses)
  local t = { requests = {} }
  t.fn = function(request)
    t.requests[#t.requests + 1] = request
    local r = responses[math.min(#t.requests, #responses)]
    if type(r) == "function" then return r(request) end
    return r[1], r[2] or {}, r[3] or "{}"
  end
  return t
end

return helpers
