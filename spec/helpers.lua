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
