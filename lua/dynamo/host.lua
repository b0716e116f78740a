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
--   op:next(waited) -> "call", call   a core call to run now (asked only when a slot is free);
--                                    waited: ms this worker slept since it last asked
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
--   sleepers          set of { at = monotonic ms, depth = n }: workers asleep on an op's wait
--   err               the first error raised in a worker (kept as raised)
--
-- A worker is a light thread that holds at most one call. Whenever it is
-- free it takes work while slots are free: the first call for itself, each
-- further one for a new worker it spawns, so one hand-back that unblocks many
-- calls fills every free slot at once. "idle" and "done" end the worker,
-- since whoever hands back the next call asks again. On "wait" a worker
-- sleeps and asks again, unless a sleeper no deeper in the tree of threads
-- wakes by then. Each worker joins the workers it spawned before it ends
-- (OpenResty lets only a thread's parent wait for it) and host.run's caller,
-- itself the first worker (depth 0), joins its own; so that a long run with
-- many rounds of waits does not grow a chain of threads each waiting for
-- its child, the shallowest worker is the one that stays on across a wait.

local function record_error(run, e)
  if e == nil then e = "dynamo.host: a worker raised an error with no value" end
  if run.err == nil then run.err = e end
end

-- A sleeper record for a worker at `depth` that heard "wait", ms, or nil
-- when a sleeper no deeper wakes by then. A deeper sleeper due sooner is
-- joined: this one wakes with it and takes over.
local function claim_wait(run, depth, ms)
  local at = monotonic_ms() + ms
  for s in next, run.sleepers do
    if s.depth <= depth and s.at <= at then return nil end
  end
  for s in next, run.sleepers do
    if s.at < at then at = s.at end
  end
  local s = { at = at, depth = depth }
  run.sleepers[s] = true
  return s
end

-- After a sleep: true when a shallower sleeper is due as soon (it will ask).
local function outranked(run, s)
  for o in next, run.sleepers do
    if o.depth < s.depth and o.at <= s.at then return true end
  end
  return false
end

local spawn_worker

-- Takes work from the op while slots are free, for worker `w`. Returns the
-- call w runs next, or nil and the sleeper record w sleeps on, or nothing.
local function take(run, w)
  local op, mine = run.op, nil
  while run.in_flight < run.limit and run.err == nil do
    -- how long w slept since it last asked: an op trusts its driver to have
    -- waited (a host clock may not move in step with the op's)
    local kind, arg = op:next(w.waited or 0)
    w.waited = 0
    if kind == "call" then
      run.in_flight = run.in_flight + 1
      if mine == nil then
        mine = arg
      else
        spawn_worker(run, w, arg, nil)
      end
    elseif kind == "wait" then
      if type(arg) ~= "number" or arg < 0 then
        error("dynamo.host: op:next returned \"wait\" with " .. tostring(arg) .. " (milliseconds expected)", 0)
      end
      -- w sleeps itself, or with a call in hand spawns a sleeper
      local s = claim_wait(run, mine == nil and w.depth or w.depth + 1, arg)
      if s then
        if mine == nil then return nil, s end
        spawn_worker(run, w, nil, s)
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

-- Worker w's loop: run the call in hand (or sleep on the sleeper record in
-- hand), hand it back, take more work; end when there is none for it.
local function work(run, w, call, sleeper)
  local h = run.h
  while true do
    if sleeper then
      -- whole ms, as a call's waits are, and at least one even when the
      -- deadline has passed: a worker that heard "wait" yields before it
      -- asks again, so the threads it waits for get to run
      local ms = sleeper.at - monotonic_ms()
      ms = ms > 1 and math_ceil(ms) or 1
      local ok, e = pcall(h.sleep, ms)
      w.waited = ms
      run.sleepers[sleeper] = nil
      if not ok then error(e, 0) end
      if outranked(run, sleeper) then return end
      sleeper = nil
    elseif call then
      local finished = run_call(h, call, run)
      run.in_flight = run.in_flight - 1
      if not finished then return end
      run.op:feed(call)
      call = nil
    end
    if run.err ~= nil then return end
    call, sleeper = take(run, w)
    if call == nil and sleeper == nil then return end
  end
end

-- Joins one child thread, recording (not raising) what join raises.
local function join_child(run, child)
  local ok, e = pcall(run.h.join, child.handle)
  if not ok then record_error(run, e) end
end

-- Joins w's children that have ended (a join that does not wait) and keeps
-- the others: a host may keep an ended thread until it is joined (OpenResty
-- does), and a long run spawns many.
local function reap(run, w)
  local children, kept = w.children, 0
  for i = 1, #children do
    local child = children[i]
    children[i] = nil
    if child.ended then
      join_child(run, child)
    else
      kept = kept + 1
      children[kept] = child
    end
  end
end

-- Runs worker w in the calling thread: its loop, then the joins of the
-- workers it spawned, ended ones first. Errors are recorded, never raised.
-- w.ended tells w's parent that a join will not wait.
local function worker(run, w, call, sleeper)
  local ok, e = pcall(work, run, w, call, sleeper)
  if not ok then record_error(run, e) end
  reap(run, w)
  for i = 1, #w.children do join_child(run, w.children[i]) end
  w.ended = true
end

spawn_worker = function(run, parent, call, sleeper)
  reap(run, parent)
  local w = { depth = parent.depth + 1, children = {}, ended = false, handle = nil }
  local ok, handle = pcall(run.h.spawn, function() worker(run, w, call, sleeper) end)
  if not ok then
    -- the thread never started: its call will not be handed back
    if call then run.in_flight = run.in_flight - 1 end
    if sleeper then run.sleepers[sleeper] = nil end
    error(handle, 0)
  end
  w.handle = handle
  local children = parent.children
  children[#children + 1] = w
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
  local run = { op = op, h = h, limit = limit, in_flight = 0, sleepers = {}, err = nil }
  worker(run, { depth = 0, children = {} }, nil, nil)
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
