--- A small cooperative host for specs: light threads on coroutines, timers,
-- and non-blocking LuaSocket sockets under one socket.select loop, with a
-- minimal HTTP/1.1 client (keep-alive, Content-Length or chunked bodies). It
-- plays the part of an event loop (OpenResty, cqueues, luv) for dynamo.host:
--
--   local sched = coro_host.new()
--   local client = dynamo.client{ endpoint = ..., transport = sched:http_transport(),
--     sleep = sched:sleeper(), spawn = sched:spawner(), join = sched:joiner() }
--   sched:run(function() ... client:send_many(requests) ... end)
--
-- `new{ eager = true }` starts a spawned thread at once, as ngx.thread.spawn
-- does; otherwise it starts at the loop's next turn, as cqueues does. As with
-- ngx.thread.wait, only the thread that spawned a thread may join it.
-- `stats.alive` counts threads running (`max_alive`: the most at once),
-- `unjoined` those spawned and not joined yet, `zombies` those of them that
-- have ended (`max_zombies`: the most at once).
local socket = require("socket")

local coroutine, table, math, setmetatable, error, tostring, type = coroutine, table, math, setmetatable, error, tostring, type

local M = {}

local Sched = {}
Sched.__index = Sched

-- what a thread of ours yields when it parks; anything else is a stray yield
local PARK = setmetatable({}, { __tostring = function() return "coro_host.PARK" end })

local function now_ms() return socket.gettime() * 1000 end
M.now_ms = now_ms

function M.new(opts)
  opts = opts or {}
  return setmetatable({
    eager = opts.eager or false,
    queue = {},       -- threads to resume, with the values to resume them with
    timers = {},      -- { at = ms, thread = t }
    io = {},          -- { sock = s, mode = "r"|"w", at = ms or nil, thread = t }
    by_co = {},       -- coroutine -> thread
    pool = {},        -- "host:port" -> idle connections
    failures = {},    -- errors raised by threads
    stats = { connections = 0, threads = 0, alive = 0, max_alive = 0, unjoined = 0, zombies = 0, max_zombies = 0 },
  }, Sched)
end

-- ---- threads ----

local function finish(self, t, ok, err)
  t.done = true
  self.stats.alive = self.stats.alive - 1
  if not t.joined then
    local st = self.stats
    st.zombies = st.zombies + 1
    if st.zombies > st.max_zombies then st.max_zombies = st.zombies end
  end
  self.by_co[t.co] = nil
  if not ok then self.failures[#self.failures + 1] = err end
  for i = 1, #t.joiners do self:wake(t.joiners[i]) end
  t.joiners = nil
end

-- A thread that runs on without parking (a driver that never yields) would
-- hang the spec; past this many million instructions in one turn it fails.
local SPIN_LIMIT = 500

function Sched:resume(t, ...)
  t.spin = 0
  local ok, v = coroutine.resume(t.co, ...)
  if coroutine.status(t.co) == "dead" then
    -- a string error gets the thread's traceback; any other value stays as raised
    finish(self, t, ok, (ok or type(v) ~= "string") and v or debug.traceback(t.co, v))
  elseif v ~= PARK then
    error("coro_host: a thread yielded outside the scheduler (" .. tostring(v) .. ")")
  end
end

function Sched:wake(t, ...)
  self.queue[#self.queue + 1] = { t, table.pack(...) }
end

function Sched:current()
  local t = self.by_co[coroutine.running()]
  if not t then error("coro_host: not inside a thread of this scheduler", 2) end
  return t
end

-- Parks the running thread until someone wakes it; returns what it was woken with.
function Sched:park()
  self:current()
  return coroutine.yield(PARK)
end

function Sched:spawn(fn)
  local t = { co = coroutine.create(fn), done = false, joiners = {}, joined = false,
              parent = self.by_co[coroutine.running()], spin = 0 }
  debug.sethook(t.co, function()
    t.spin = t.spin + 1
    if t.spin > SPIN_LIMIT then error("coro_host: a thread runs on without yielding (a spin?)") end
  end, "", 1000000)
  self.by_co[t.co] = t
  local st = self.stats
  st.threads, st.alive, st.unjoined = st.threads + 1, st.alive + 1, st.unjoined + 1
  if st.alive > st.max_alive then st.max_alive = st.alive end
  if self.eager then self:resume(t) else self:wake(t) end
  return t
end

function Sched:join(t)
  local me = self:current()
  if t.parent ~= me then error("coro_host: only the thread that spawned a thread may join it", 2) end
  if not t.joined then
    t.joined = true
    self.stats.unjoined = self.stats.unjoined - 1
    if t.done then self.stats.zombies = self.stats.zombies - 1 end
  end
  if t.done then return end
  t.joiners[#t.joiners + 1] = me
  self:park()
end

function Sched:sleep(ms)
  local t = self:current()
  self.timers[#self.timers + 1] = { at = now_ms() + ms, thread = t }
  self:park()
end

-- Waits until sock is readable ("r") or writable ("w"), or until the
-- deadline (ms, nil for none): returns true, or false on timeout.
function Sched:wait_io(sock, mode, at)
  local t = self:current()
  self.io[#self.io + 1] = { sock = sock, mode = mode, at = at, thread = t }
  return self:park()
end

-- The functions a dynamo.client takes.
function Sched:spawner() return function(fn) return self:spawn(fn) end end
function Sched:joiner() return function(t) return self:join(t) end end
function Sched:sleeper() return function(ms) return self:sleep(ms) end end

-- One turn of the loop: resume what is runnable, else wait for sockets and
-- timers. Returns false when nothing can ever happen again.
function Sched:step()
  if #self.queue > 0 then
    local q = self.queue
    self.queue = {}
    for i = 1, #q do self:resume(q[i][1], table.unpack(q[i][2], 1, q[i][2].n)) end
    return true
  end
  if #self.timers == 0 and #self.io == 0 then return false end
  local now = now_ms()
  local first = math.huge
  for _, w in ipairs(self.timers) do first = math.min(first, w.at) end
  for _, w in ipairs(self.io) do if w.at then first = math.min(first, w.at) end end
  if #self.io > 0 then
    local r, w = {}, {}
    for _, x in ipairs(self.io) do
      local set = x.mode == "r" and r or w
      set[#set + 1] = x.sock
    end
    local timeout = first == math.huge and nil or math.max(0, first - now) / 1000
    local readable, writable = socket.select(r, w, timeout)
    local left = {}
    for _, x in ipairs(self.io) do
      local set = x.mode == "r" and readable or writable
      if set[x.sock] then self:wake(x.thread, true) else left[#left + 1] = x end
    end
    self.io = left
  elseif first > now then
    socket.sleep((first - now) / 1000)
  end
  now = now_ms()
  local timers, io = {}, {}
  for _, x in ipairs(self.timers) do
    if x.at <= now then self:wake(x.thread) else timers[#timers + 1] = x end
  end
  for _, x in ipairs(self.io) do
    if x.at and x.at <= now then self:wake(x.thread, false) else io[#io + 1] = x end
  end
  self.timers, self.io = timers, io
  return true
end

--- Runs fn as the first thread until it ends; returns what it returned.
-- Raises the first error of any thread, and on a deadlock.
function Sched:run(fn, ...)
  local args = table.pack(...)
  local out
  local main = self:spawn(function() out = table.pack(fn(table.unpack(args, 1, args.n))) end)
  main.joined = true -- the loop itself waits for it
  self.stats.unjoined = self.stats.unjoined - 1
  while not main.done do
    if not self:step() then error("coro_host: deadlock: the main thread waits for something that never comes") end
    if #self.failures > 0 then error(self.failures[1], 0) end
  end
  if #self.failures > 0 then error(self.failures[1], 0) end
  return table.unpack(out, 1, out.n)
end

-- ---- a minimal HTTP/1.1 client on non-blocking sockets ----

local Conn = {}
Conn.__index = Conn

-- Connects to host:port by `at` (ms); returns a connection or nil, err.
function Sched:connect(host, port, at)
  local sock = socket.tcp()
  sock:settimeout(0)
  sock:setoption("tcp-nodelay", true)
  while true do
    local ok, err = sock:connect(host, port)
    if ok or err == "already connected" then break end
    if err ~= "timeout" and err ~= "Operation already in progress" then
      sock:close()
      return nil, err
    end
    if not self:wait_io(sock, "w", at) then
      sock:close()
      return nil, "timeout (connect)"
    end
  end
  self.stats.connections = self.stats.connections + 1
  return setmetatable({ sched = self, sock = sock, buf = "", got = 0 }, Conn)
end

function Conn:close() self.sock:close() end

function Conn:send(data, at)
  local i = 1
  while i <= #data do
    local last, err, partial = self.sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = partial + 1
      if not self.sched:wait_io(self.sock, "w", at) then return nil, "timeout (send)" end
    else
      return nil, err
    end
  end
  return true
end

-- Reads more bytes into the buffer; true, or nil, err.
function Conn:fill(at)
  while true do
    local data, err, partial = self.sock:receive(65536)
    data = data or partial
    if data and #data > 0 then
      self.buf = self.buf .. data
      self.got = self.got + #data
      return true
    end
    if err ~= "timeout" then return nil, err end
    if not self.sched:wait_io(self.sock, "r", at) then return nil, "timeout (read)" end
  end
end

function Conn:line(at)
  while true do
    local e = self.buf:find("\r\n", 1, true)
    if e then
      local line = self.buf:sub(1, e - 1)
      self.buf = self.buf:sub(e + 2)
      return line
    end
    local ok, err = self:fill(at)
    if not ok then return nil, err end
  end
end

function Conn:bytes(n, at)
  while #self.buf < n do
    local ok, err = self:fill(at)
    if not ok then return nil, err end
  end
  local out = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return out
end

-- Reads one response: status, headers (lowercase names), body, keep-alive.
function Conn:read_response(at)
  local line, err = self:line(at)
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, "bad status line: " .. line end
  local headers = {}
  while true do
    local h, herr = self:line(at)
    if not h then return nil, herr end
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if not name then return nil, "bad header line: " .. h end
    headers[name:lower()] = value
  end
  local body
  if headers["transfer-encoding"] and headers["transfer-encoding"]:lower():find("chunked", 1, true) then
    local parts = {}
    while true do
      local size_line, serr = self:line(at)
      if not size_line then return nil, serr end
      local size = tonumber(size_line:match("^%x+"), 16)
      if not size then return nil, "bad chunk size: " .. size_line end
      if size == 0 then
        repeat
          local trailer, terr = self:line(at)
          if not trailer then return nil, terr end
        until trailer == ""
        break
      end
      local chunk, cerr = self:bytes(size + 2, at)
      if not chunk then return nil, cerr end
      parts[#parts + 1] = chunk:sub(1, size)
    end
    body = table.concat(parts)
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"])
    if not n then return nil, "bad content-length" end
    local b, berr = self:bytes(n, at)
    if not b then return nil, berr end
    body = b
  else
    -- no length: the body runs to the end of the connection
    while true do
      local ok, ferr = self:fill(at)
      if not ok then
        if ferr == "closed" then break end
        return nil, ferr
      end
    end
    body, self.buf = self.buf, ""
    headers.connection = "close"
  end
  local keep = not (headers.connection and headers.connection:lower() == "close")
  return status, headers, body, keep
end

local function parse_url(url)
  local scheme, host, port, path = url:match("^(https?)://([^/:]+):?(%d*)(/?.*)$")
  if scheme ~= "http" then error("coro_host: only http:// URLs, got " .. tostring(url)) end
  return host, tonumber(port) or 80, path ~= "" and path or "/"
end

-- One HTTP exchange on a pooled or new connection. A pooled connection the
-- server closed meanwhile fails before any answer byte: that one is retried
-- once on a fresh connection.
function Sched:http(request)
  local host, port, path = parse_url(request.url)
  local key = host .. ":" .. port
  local started = now_ms()
  local at = request.timeout_ms and started + request.timeout_ms or nil
  local connect_at = request.connect_timeout_ms and started + request.connect_timeout_ms or at
  if at and connect_at and connect_at > at then connect_at = at end
  local lines = { (request.method or "POST") .. " " .. path .. " HTTP/1.1" }
  local has_host, has_length = false, false
  for name, value in pairs(request.headers or {}) do
    local l = name:lower()
    if l == "host" then has_host = true elseif l == "content-length" then has_length = true end
    lines[#lines + 1] = name .. ": " .. value
  end
  local body = request.body or ""
  if not has_host then lines[#lines + 1] = "Host: " .. key end
  if not has_length then lines[#lines + 1] = "Content-Length: " .. #body end
  local data = table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
  for _ = 1, 2 do
    local idle = self.pool[key]
    local conn = idle and table.remove(idle)
    local reused = conn ~= nil
    if not conn then
      local err
      conn, err = self:connect(host, port, connect_at)
      if not conn then return nil, err end
    end
    conn.got = 0
    local ok, err = conn:send(data, at)
    local status, headers, rbody, keep
    if ok then status, headers, rbody, keep = conn:read_response(at) end
    if status then
      if keep then
        self.pool[key] = self.pool[key] or {}
        table.insert(self.pool[key], conn)
      else
        conn:close()
      end
      return status, headers, rbody
    end
    err = err or headers
    conn:close()
    local stale = reused and conn.got == 0 and not tostring(err):find("^timeout")
    if not stale then return nil, err end
  end
  return nil, "closed"
end

--- A transport for dynamo.client: `transport(request)`. `probe` (optional)
-- is called as probe("start"|"end", request) around each exchange.
function Sched:http_transport(probe)
  return function(request)
    if probe then probe("start", request) end
    local status, headers, body = self:http(request)
    if probe then probe("end", request) end
    return status, headers, body
  end
end

--- Closes the pooled connections.
function Sched:close()
  for _, list in pairs(self.pool) do
    for _, c in ipairs(list) do c:close() end
  end
  self.pool = {}
end

return M
