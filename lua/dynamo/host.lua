--- The host driver: runs core calls, and operations made of many calls, through
-- I/O the host supplies (OpenResty cosockets, cqueues, luv), with up to
-- `concurrency` requests in flight when the host can run light threads.
--
-- A host `h` is a table:
--
--   transport(request) -> status, headers, body | nil, err   (may yield; err "timeout..." is a timeout)
--   sleep(ms)                   waits without blocking the host's event loop
--   spawn(fn) -> handle         optional: runs fn as a light thread, at once or later
--   join(handle)                waits until that thread has ended (called by the thread that spawned it)
--   concurrency                 calls in flight at most (1 without spawn)
--   timeout_ms, connect_timeout_ms   copied into every request
--   stats = { requests = n, retries = n }   counted here
--
-- An op (the Lua side of dynamo/op.h) gives calls and takes them back:
--
--   op:next() -> "call", call   a core call to run now (asked only when a slot is free)
--              | "wait", ms     nothing can start for ms milliseconds
--              | "idle"         nothing can start until a call in flight is handed back
--              | "done"         every call has been handed back
--   op:feed(call)               takes back a finished call
--   op:abort(message)           optional: the run failed; the calls not handed back are dropped
--
-- The driver runs each call to its end (its retries and backoff included),
-- then hands it back. It never needs to know how much work an op holds: after
-- each hand-back it asks op:next() again while slots are free.
-- @module dynamo.host
local core = require("dynamo.core")

local now_ms, monotonic_ms = core.now_ms, core.monotonic_ms
local type, tostring, pcall, error, next = type, tostring, pcall, error, next
local math_ceil = math.ceil

local host = {}

-- Feeds the call what one transport(request) attempt gave: (ok, status,
-- headers, body) as pcall returned them.
local function deliver(call, ok, status, headers, body)
  if not ok then
    -- the transport raised: a transport failure, its message kept
    return call:fail("transport", tostring(status))
  end
  if status == nil or status == false then
    local err = headers
    if type(err) == "string" and err:sub(1, 7) == "timeout" then
      return call:fail("timeout", err)
    end
    return call:fail("transport", err == nil and "the transport returned no status" or tostring(err))
  end
  if type(status) ~= "number" or status % 1 ~= 0 then
    error(("dynamo.host: the transport returned status %s (an integer, or nil and an error, expected)")
      :format(tostring(status)), 0)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error(("dynamo.host: the transport returned headers of type %s (table expected)"):format(type(headers)), 0)
  end
  if body ~= nil and type(body) ~= "string" then
    error(("dynamo.host: the transport returned a body of type %s (string expected)"):format(type(body)), 0)
  end
  call:feed(status, headers, body)
end

-- Runs one core call to its end through h. `run` is the state of a host.run
-- (nil for a single call): once it holds an error the call is left unfinished
-- at its next step. Returns true when the call finished.
local function run_call(h, call, run)
  local transport, sleep, stats = h.transport, h.sleep, h.stats
  local attempts = 0
  while true do
    if run and run.err ~= nil then return false end
    local kind, arg = call:next(now_ms())
    if kind == "send" then
      attempts = attempts + 1
      if stats then
        stats.requests = stats.requests + 1
        if attempts > 1 then stats.retries = stats.retries + 1 end
      end
      arg.timeout_ms = h.timeout_ms
      arg.connect_timeout_ms = h.connect_timeout_ms
      deliver(call, pcall(transport, arg))
    elseif kind == "wait" then
      sleep(arg)
    else
      return true
    end
  end
end

--- Runs one core call (from `client.handle:prepare`) to its end through the
-- host `h`; read the outcome with `call:result(...)`.
function host.call(call, h)
  run_call(h, call, nil)
  return call
end

-- ---- host.run: many calls in flight ----
--
-- State shared by the workers of one run (`run`):
--   op, h, limit      the op, the host, calls in flight at most
--   in_flight         calls taken from the op and not yet handed back
--   wakes             deadline (monotonic ms) -> sleepers due then
--   err               the first error raised in a worker (kept as raised)
--
-- A worker is a light thread that holds at most one call. Whenever it is
-- free it takes work while slots are free: the first call for itself, each
-- further one for a new worker it spawns, so one hand-back that unblocks many
-- calls fills every free slot at once. When the op says "wait", one worker
-- sleeps until the earliest deadline and asks again (a later deadline needs
-- no sleeper of its own); "idle" and "done" end the worker, since whoever
-- hands back the next call asks again. Each worker joins the workers it
-- spawned before it ends (OpenResty lets only a thread's parent wait for it),
-- and host.run's caller, itself the first worker, joins its own.

local function record_error(run, e)
  if run.err == nil then run.err = e end
end

local function add_wake(run, at)
  run.wakes[at] = (run.wakes[at] or 0) + 1
end

local function remove_wake(run, at)
  local n = run.wakes[at] - 1
  run.wakes[at] = n > 0 and n or nil
end

-- True when a new sleeper is needed for a wait of ms (no sleeper wakes by
-- then); registers its deadline, returned second.
local function claim_wait(run, ms)
  local at = monotonic_ms() + ms
  for t in next, run.wakes do
    if t <= at then return false end
  end
  add_wake(run, at)
  return true, at
end

local spawn_worker

-- Takes work from the op while slots are free. Returns the call this worker
-- runs next, or nil and a deadline this worker sleeps until, or nothing.
local function take(run, children)
  local op, mine = run.op, nil
  while run.in_flight < run.limit and run.err == nil do
    local kind, arg = op:next()
    if kind == "call" then
      run.in_flight = run.in_flight + 1
      if mine == nil then
        mine = arg
      else
        spawn_worker(run, children, arg, nil)
      end
    elseif kind == "wait" then
      if type(arg) ~= "number" or arg < 0 then
        error("dynamo.host: op:next returned \"wait\" with " .. tostring(arg) .. " (milliseconds expected)", 0)
      end
      local needed, at = claim_wait(run, arg)
      if needed then
        if mine == nil then return nil, at end
        spawn_worker(run, children, nil, at)
      end
      return mine
    elseif kind == "idle" or kind == "done" then
      return mine
    else
      error("dynamo.host: op:next returned " .. tostring(kind) .. " (\"call\", \"wait\", \"idle\" or \"done\" expected)", 0)
    end
  end
  return mine
end

-- The worker's loop: run the call in hand (or sleep until the deadline in
-- hand), hand it back, take more work; end when there is none for it.
local function work(run, children, call, wake_at)
  local h = run.h
  while true do
    if wake_at then
      local ms = wake_at - monotonic_ms()
      local ok, e = true, nil
      if ms > 0 then ok, e = pcall(h.sleep, math_ceil(ms)) end -- whole ms, as a call's waits are
      remove_wake(run, wake_at)
      wake_at = nil
      if not ok then error(e, 0) end
    elseif call then
      local finished = run_call(h, call, run)
      run.in_flight = run.in_flight - 1
      if not finished then return end
      run.op:feed(call)
      call = nil
    end
    if run.err ~= nil then return end
    call, wake_at = take(run, children)
    if call == nil and wake_at == nil then return end
  end
end

-- Runs one worker in the calling thread: its loop, then the joins of the
-- workers it spawned. Errors are recorded, never raised.
local function worker(run, call, wake_at)
  local children = {}
  local ok, e = pcall(work, run, children, call, wake_at)
  if not ok then record_error(run, e) end
  for i = 1, #children do
    local joined, je = pcall(run.h.join, children[i])
    if not joined then record_error(run, je) end
  end
end

spawn_worker = function(run, children, call, wake_at)
  local ok, handle = pcall(run.h.spawn, function() worker(run, call, wake_at) end)
  if not ok then
    -- the thread never started: its call will not be handed back
    if call then run.in_flight = run.in_flight - 1 end
    if wake_at then remove_wake(run, wake_at) end
    error(handle, 0)
  end
  children[#children + 1] = handle
end

--- Runs `op` to its end through the host `h` (see the module description):
-- up to h.concurrency calls in flight when h has spawn and join, else one
-- at a time in the calling coroutine. Returns when every call has been handed
-- back. An error raised by the op, the host's sleep, spawn or join, or a
-- transport that breaks the contract ends the run: the other workers finish
-- the attempts they have in flight, op:abort(message) is called when the op
-- has one, and the first error is raised again as it was.
function host.run(op, h)
  local limit = 1
  if h.spawn then
    limit = h.concurrency or 1
    if type(limit) ~= "number" or limit < 1 then error("dynamo.host: concurrency must be a positive integer", 2) end
  end
  local run = { op = op, h = h, limit = limit, in_flight = 0, wakes = {}, err = nil }
  worker(run, nil, nil)
  if run.err == nil then
    -- every worker has ended, so nothing is in flight and no one sleeps:
    -- an op that is not done now would never be
    local ok, kind = pcall(op.next, op)
    if not ok then
      record_error(run, kind)
    elseif kind ~= "done" then
      record_error(run, "dynamo.host: the op says \"" .. tostring(kind) .. "\" with no call in flight (op bug)")
    end
  end
  if run.err ~= nil then
    if op.abort then pcall(op.abort, op, tostring(run.err)) end
    error(run.err, 0)
  end
end

-- ---- an op over a list of independent calls ----

local ListOp = {}
ListOp.__index = ListOp

--- An op over an array of prepared calls (send_many, send_pages): gives them
-- out in order and calls `on_done(i, call)` as call i is handed back.
function host.list_op(calls, on_done)
  local index = {}
  for i = 1, #calls do index[calls[i]] = i end
  return setmetatable({ calls = calls, index = index, on_done = on_done, started = 0, left = #calls }, ListOp)
end

function ListOp:next()
  local i = self.started
  if i < #self.calls then
    i = i + 1
    self.started = i
    return "call", self.calls[i]
  end
  return self.left == 0 and "done" or "idle"
end

function ListOp:feed(call)
  local i = self.index[call]
  if i == nil then error("dynamo.host: op:feed: not a call of this op in flight", 2) end
  self.index[call] = nil
  self.calls[i] = false -- its memory can go once on_done is through with it
  self.left = self.left - 1
  self.on_done(i, call)
end

return host
