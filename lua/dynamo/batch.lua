--- The Lua side of the batch methods of `dynamo.DynamoTable`: records in,
-- hooks and merges, and the account of what was not done. Everything from
-- "these are the entries" to "this is what was done" is the C core's batch
-- engine (core/include/dynamo/batch.h): chunking, de-duplication, retries,
-- re-queue of unprocessed items, many requests in flight.
--
-- Records go to the engine in windows: an array (or DataTable) is one window,
-- prepared and encoded whole before any request, so a bad record raises
-- before anything is sent; an iterator function is read a window at a time,
-- so memory stays bounded. When a batch cannot finish, the error (code
-- `UnprocessedItems` for writes, `UnprocessedKeys` for reads) holds
-- `unprocessed`: every input record not done, as given (from the failed
-- window and from every window after it that was read; an iterator is not
-- read further), `uncertain`: those of them whose write may have reached the
-- server though its answer was lost, and `cause`: the last underlying error.
--
-- DynamoTable.lua makes this module with its record helpers:
-- `require("dynamo.batch")(helpers)`.
-- @module dynamo.batch
local core = require("dynamo.core")
local errors = require("dynamo.errors")

local type, next, pcall, error, getmetatable, tostring, ipairs = type, next, pcall, error, getmetatable, tostring, ipairs

local batch_new, batch_put_items, batch_add_keys, batch_items =
  core.batch_new, core.batch_put_items, core.batch_add_keys, core.batch_items
local prepare_keys = core.prepare_keys

-- Requests per connection in a window read from an iterator: enough that the
-- wait for a window's last answers is a small part of it.
local WINDOW_ROUNDS = 8

return function(h)
  local fail, label, describe, copy = h.fail, h.label, h.describe, h.copy
  local record_source, make_preparer, to_output = h.record_source, h.make_preparer, h.to_output
  local invalidate, now_string, list_of = h.invalidate, h.now_string, h.list_of

  local M = {}

  -- A window of prepared records: parallel arrays of the records as given,
  -- as prepared (converted, normalized), their key values and identities.
  local function new_window()
    return { given = {}, recs = {}, pv = {}, sv = {}, ids = {}, n = 0 }
  end

  -- An iterator of windows over any `records` argument: next_window(w) fills
  -- w and returns its count (0: no more). An array is one window, prepared
  -- whole first; an iterator function is read `size` records at a time.
  -- `prep` (record, position) -> record, pk value, sk value, id replaces the
  -- table's preparer (clear_table's items need no hooks).
  local function windows(self, records, what, size, prep)
    local plain = false
    if not prep then prep, plain = make_preparer(self) end
    local pk, sk = self._pk, self._sk
    local function key_all(w, n, first)
      local recs, pv, sv, ids = w.recs, w.pv, w.sv, w.ids
      local i = 1
      if plain then i = prepare_keys(recs, 1, n, pk, sk, pv, sv, ids) end
      while i <= n do
        recs[i], pv[i], sv[i], ids[i] = prep(recs[i], first + i - 1)
        i = i + 1
        if plain then i = prepare_keys(recs, i, n, pk, sk, pv, sv, ids) end
      end
    end
    local function clear_rest(w, n)
      local given, recs, pv, sv, ids = w.given, w.recs, w.pv, w.sv, w.ids
      for i = n + 1, w.n do given[i], recs[i], pv[i], sv[i], ids[i] = nil, nil, nil, nil, nil end
      w.n = n
      w.first = w.first or 1
      return n
    end
    if type(records) == "function" then
      local position, ended = 0, false
      return function(w)
        local given, recs = w.given, w.recs
        local n = 0
        while n < size and not ended do
          local r = records()
          -- an iterator is not called again once it said nil (a coroutine would be dead)
          if r == nil then
            ended = true
            break
          end
          n = n + 1
          given[n], recs[n] = r, r
        end
        w.first = position + 1
        key_all(w, n, position + 1)
        position = position + n
        return clear_rest(w, n)
      end, true
    end
    local src = record_source(records, what)
    local done = false
    return function(w)
      if done then return clear_rest(w, 0) end
      done = true
      local given, recs = w.given, w.recs
      local n = 0
      while true do
        local r = src()
        if r == nil then break end
        n = n + 1
        given[n], recs[n] = r, r
      end
      w.first = 1
      key_all(w, n, 1)
      return clear_rest(w, n)
    end, false
  end

  local function window_size(self, per_request)
    return per_request * (self.client.concurrency or 8) * WINDOW_ROUNDS
  end

  local function new_batch(self, kind, tname, consistent)
    return batch_new(self.client.handle, { kind = kind, table = tname, pk = self._pk, sk = self._sk,
                                           consistent_read = consistent and true or nil })
  end

  -- Runs a batch through the client's driver (libcurl or the host's).
  local function run(self, b)
    self.client:run_op(b)
    return b:status()
  end

  -- The error of a batch that could not finish. `slot_pos[s]` is the window
  -- position of slot s (nil: s itself); every window position whose key a
  -- failed slot holds is listed, then `rest` (records of windows not run).
  -- `read` counts the records taken from the input so far.
  local function account(self, what, code, b, info, w, slot_pos, rest, read)
    local slots, uncertain = b:not_done()
    local failed, maybe = {}, {}
    local ids = w.ids
    for _, s in ipairs(slots) do
      local id = ids[slot_pos and slot_pos[s] or s]
      failed[id] = true
      if uncertain[s] then maybe[id] = true end
    end
    local list, unsure = {}, {}
    for i = 1, w.n do
      local id = ids[i]
      if failed[id] then
        list[#list + 1] = w.given[i]
        if maybe[id] then unsure[#unsure + 1] = w.given[i] end
      end
    end
    for _, r in ipairs(rest or {}) do list[#list + 1] = r end
    local cause = errors.from_core(info)
    local verb = code == "UnprocessedKeys" and "read" or "written"
    if what:match("delete") then verb = "deleted" end
    return errors.new(code, ("%s: %s: %d of %d records not %s (%s)"):format(label(self), what, #list,
      read or w.n, verb, tostring(cause)), {
      retryable = cause.retryable, unprocessed = list, uncertain = unsure, cause = cause,
      status = cause.status, request_id = cause.request_id,
    })
  end

  local function give_up(...) error(account(...), 0) end

  -- The record of window position i cannot be written: raises naming it.
  local function unwritable(self, w, i, message)
    fail(("%s: record %d %s cannot be written: %s"):format(label(self), w.first + i - 1, describe(w.given[i]),
      message), { data = w.given[i] })
  end

  -- Adds enc[1..m] (tables encoded here, or JSON text) as puts with ids
  -- uids[1..m]; `pos[j]` is the window position of entry j. Names a record
  -- that cannot be written (a bad value, over 400 KB) before any request.
  local function add_puts(self, b, w, enc, uids, m, stamps, pos)
    local ok, k, size = pcall(batch_put_items, b, enc, uids, 1, m, stamps)
    if ok and k == nil then return end
    if ok then
      unwritable(self, w, pos[k], ("its size is %d bytes, over DynamoDB's item limit of 409600 (400 KB)")
        :format(size))
    end
    -- find the record the encoder refused (tables only: text was written by us)
    for j = 1, m do
      if type(enc[j]) == "table" then
        local fine, msg = pcall(core.encode_item, enc[j], "record")
        if not fine then unwritable(self, w, pos[j], tostring(msg)) end
      end
    end
    error(k, 0)
  end

  ---------------------------------------------------------------------------
  -- reads

  -- Reads the keys of window positions given by `pos` (nil: every position
  -- 1..w.n). Returns the batch, and out/flags by slot: out[s] the found item
  -- (merged with its record when `merge`), flags[s] true (found), false (not
  -- found), nil (not done). Raises through `on_fail(b, info)` when the batch
  -- did not finish and on_fail raises.
  local function read_keys(self, tname, w, pos, m, consistent, merge)
    -- batch_items merges by slot: only an identity mapping (pos nil) merges
    assert(pos == nil or not merge)
    local b = new_batch(self, "get", tname, consistent)
    local pk, sk = self._pk, self._sk
    if pos == nil then
      batch_add_keys(b, pk, w.pv, sk, w.sv, w.ids, 1, m)
    else
      local pv, sv, ids = {}, {}, {}
      for j = 1, m do pv[j], sv[j], ids[j] = w.pv[pos[j]], w.sv[pos[j]], w.ids[pos[j]] end
      batch_add_keys(b, pk, pv, sk, sv, ids, 1, m)
    end
    local ok, info = run(self, b)
    local out, flags = {}, {}
    batch_items(b, merge and w.recs or nil, out, flags, 1, m)
    return out, flags, ok, info, b
  end

  -- The output record of an input record that has no item: a copy with its keys.
  local function not_found_output(self, rec, pkv, skv)
    local out = copy(rec)
    out[self._pk] = pkv
    if self._sk then out[self._sk] = skv end
    return out
  end

  -- Reads the keys of window positions `misses` (through the cache) into
  -- out/flags by position, filling the cache. Returns ok, info, batch.
  local function read_through_cache(self, tname, w, misses, m, consistent, out, flags)
    local recs, pv, sv, ids = w.recs, w.pv, w.sv, w.ids
    local cache = self._cache
    local got, gflags, ok, info, b = read_keys(self, tname, w, misses, m, consistent, false)
    for s = 1, m do
      local i = misses[s]
      local f = gflags[s]
      if f == true then
        local stored = got[s]
        if stored[self._pk] == nil then stored[self._pk] = pv[i] end
        if self._sk and stored[self._sk] == nil then stored[self._sk] = sv[i] end
        cache[ids[i]] = stored
        local item = copy(stored)
        for k, v in next, recs[i] do if item[k] == nil then item[k] = v end end
        out[i], flags[i] = item, true
      elseif f == false then
        cache[ids[i]] = false
        flags[i] = false
      end
    end
    return ok, info, b
  end

  --- Iterates `record, found` over the records' items, in input order (see
  -- DynamoTable:batch_get). With `use_cache`, cached keys are not read again.
  function M.get_iter(self, records, opts, what, use_cache)
    local tname = self:get_table_name()
    local consistent = opts.consistent_read
    local next_window, streaming = windows(self, records, what, window_size(self, 100))
    local w = new_window()
    -- by window position: out[i] the found item merged with its record,
    -- flags[i] true (found), false (not found: its output is made when
    -- handed out), nil (not read)
    local out, flags, pos, count = {}, {}, 0, 0
    local failure -- the error to raise once the window's read records are out
    local rc = self.record_class
    local read = 0
    local function fill()
      local n = next_window(w)
      pos, count = 0, n
      if n == 0 then return false end
      read = read + n
      out, flags = {}, {}
      local ok, info, b, slot_pos
      if use_cache then
        local cache, recs, ids = self._cache, w.recs, w.ids
        local misses, m = {}, 0
        for i = 1, n do
          local c = cache[ids[i]]
          if c == nil then
            m = m + 1
            misses[m] = i
          elseif c then
            local item = copy(c)
            for k, v in next, recs[i] do if item[k] == nil then item[k] = v end end
            out[i], flags[i] = item, true
          else
            flags[i] = false
          end
        end
        if m == 0 then return true end
        ok, info, b = read_through_cache(self, tname, w, misses, m, consistent, out, flags)
        slot_pos = misses
      else
        -- every position is a slot: the items land in out/flags merged with their records, in C
        b = new_batch(self, "get", tname, consistent)
        batch_add_keys(b, self._pk, w.pv, self._sk, w.sv, w.ids, 1, n)
        ok, info = run(self, b)
        batch_items(b, w.recs, out, flags, 1, n)
      end
      -- raised once the records read are out; an iterator is not read further
      if not ok then failure = account(self, what, "UnprocessedKeys", b, info, w, slot_pos, nil, read) end
      b:free()
      return true
    end
    local finished = false
    return function()
      while true do
        while pos < count do
          pos = pos + 1
          local f = flags[pos]
          if f ~= nil then
            local r
            if f then
              r = out[pos]
              out[pos] = nil
            else
              r = not_found_output(self, w.recs[pos], w.pv[pos], w.sv[pos])
            end
            if rc ~= nil then r = to_output(self, r) end
            return r, f
          end
        end
        if failure then
          local e = failure
          failure = nil
          finished = true
          error(e, 0)
        end
        if finished or (count > 0 and not streaming) then return nil end
        if not fill() then
          finished = true
          return nil
        end
      end
    end
  end

  ---------------------------------------------------------------------------
  -- writes

  -- The entries one window of batch_upsert writes: the last record of each
  -- key, merged over its stored item when `existing` (an array by entry) is
  -- given. Returns enc, uids, pos, m, stamps (see add_puts).
  local function upsert_entries(self, w, order, m, existing, sine_keys, now, written)
    local recs, pv, sv, ids = w.recs, w.pv, w.sv, w.ids
    local enc, uids = {}, {}
    local nsine = #sine_keys
    local pk, sk = self._pk, self._sk
    local validate = self.validate_record_attributes
    -- the fast path (no stored item to merge, nothing to keep): the record is
    -- encoded as it is, in C, and the dt stamps are written after its
    -- members, which saves a copy of every record
    local stamps = ',"dt_created":{"S":"' .. now .. '"},"dt_modified":{"S":"' .. now .. '"}}'
    for j = 1, m do
      local i = order[j]
      local rec, id = recs[i], ids[i]
      local old = existing and existing[j]
      local item
      if not old and not written and getmetatable(rec) == nil and rec.dt_created == nil
        and rec.dt_modified == nil and rec[pk] ~= nil and (sk == nil or rec[sk] ~= nil) then
        validate(self, rec)
        enc[j], uids[j] = rec, id
        goto continue
      end
      if old then
        local created = old.dt_created
        local keep
        if nsine > 0 then
          keep = {}
          for s = 1, nsine do
            local k = sine_keys[s]
            keep[k] = old[k]
          end
        end
        item = old
        for k, v in next, rec do item[k] = v end
        if keep then
          for k, v in next, keep do item[k] = v end
        end
        item.dt_created = created or rec.dt_created or now
      else
        item = copy(rec)
        item.dt_created = rec.dt_created or now
      end
      item.dt_modified = now
      item[pk] = pv[i]
      if sk then item[sk] = sv[i] end
      validate(self, item)
      local ok, text = pcall(core.encode_item, item, "record")
      if not ok then unwritable(self, w, i, tostring(text)) end
      enc[j], uids[j] = text, id
      if written then written[#written + 1] = item end
      ::continue::
    end
    return enc, uids, m, stamps
  end

  -- The last position of each key in a window, in order of those positions.
  local function last_of_each(w)
    local ids, n = w.ids, w.n
    local last = {}
    for i = 1, n do last[ids[i]] = i end
    local order, m = {}, 0
    for i = 1, n do
      if last[ids[i]] == i then
        m = m + 1
        order[m] = i
      end
    end
    return order, m
  end

  --- batch_upsert / batch_upsert_records (see DynamoTable); `written`
  -- collects the records written (nil: not wanted).
  function M.upsert(self, records, opts, what, written)
    local tname = self:get_table_name()
    local sine_keys = list_of(opts.set_if_not_exists_keys, "set_if_not_exists_keys")
    local read_existing = opts.read_existing ~= false
    local next_window = windows(self, records, what, window_size(self, 25))
    local w = new_window()
    local now = now_string(self)
    local total = 0
    while true do
      local n = next_window(w)
      if n == 0 then break end
      total = total + n
      local order, m = last_of_each(w)
      local existing
      if read_existing then
        local got, flags, ok, info, rb = read_keys(self, tname, w, order, m, false, false)
        -- nothing of this window is written when its stored items could not all be read
        if not ok then give_up(self, what, "UnprocessedItems", rb, info, w, order, nil, total) end
        rb:free()
        existing = {}
        for s = 1, m do existing[s] = flags[s] and got[s] or nil end
      end
      local enc, uids, _, stamps = upsert_entries(self, w, order, m, existing, sine_keys, now, written)
      local b = new_batch(self, "write", tname)
      add_puts(self, b, w, enc, uids, m, stamps, order)
      invalidate(self, uids, m)
      local ok, info = run(self, b)
      if not ok then give_up(self, what, "UnprocessedItems", b, info, w, order, nil, total) end
      b:free()
    end
    return total
  end

  --- Deletes the keys of the records in windows; `collect` receives every
  -- input record with its keys. `prep` as for windows. Returns the number of
  -- distinct keys deleted.
  function M.delete(self, records, what, collect, prep)
    local tname = self:get_table_name()
    local next_window = windows(self, records, what, window_size(self, 25), prep)
    local w = new_window()
    local pk, sk = self._pk, self._sk
    local total, read = 0, 0
    while true do
      local n = next_window(w)
      if n == 0 then break end
      read = read + n
      if collect then
        local given_recs, pv, sv = w.recs, w.pv, w.sv
        for i = 1, n do
          local out = copy(given_recs[i])
          out[pk] = pv[i]
          if sk then out[sk] = sv[i] end
          collect[#collect + 1] = to_output(self, out)
        end
      end
      local b = new_batch(self, "write", tname)
      batch_add_keys(b, pk, w.pv, sk, w.sv, w.ids, 1, n)
      invalidate(self, w.ids, n)
      local ok, info = run(self, b)
      if not ok then give_up(self, what, "UnprocessedItems", b, info, w, nil, nil, read) end
      b:free()
      local seen, m = {}, 0
      for i = 1, n do
        if not seen[w.ids[i]] then
          seen[w.ids[i]] = true
          m = m + 1
        end
      end
      total = total + m
    end
    return total
  end

  M.windows = windows
  return M
end
