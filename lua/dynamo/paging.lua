--- The Lua side of `query`, `scan` (parallel with `segments`) and
-- `query_many` of `dynamo.DynamoTable`: request bodies from the options, and
-- iterators over the C core's pager (core/include/dynamo/pager.h), which owns
-- the page requests, the limits (Limit members and how many items of a page
-- to hand out), the ExclusiveStartKey chain (carried byte for byte, never
-- decoded) and the position.
--
-- An iterator runs in rounds. A round drives the pager with the client's
-- driver (`client:run_op(pager)`: libcurl with up to `concurrency` requests
-- in flight, or the host loop) until each stream that may send has its next
-- page waiting or is finished; then the round's pages are handed out, each
-- read a run of items at a time (so a 1 MB page never becomes thousands of
-- tables at once), then the next round starts. At most one page per stream
-- is held at a time (query_many: at most `concurrency` pages in all).
--
-- Positions: with `on_page = function(position) end` the iterator reports,
-- once the last record of a page has been handed out (at its next call, or
-- when a `for` loop is left by `break`), the position after that page: JSON
-- text (a string; see pager.h for its shape) to store as it is or inside
-- other JSON. `start = position` makes the same query (same options, same
-- queries in the same order) continue after it: it returns exactly the
-- records not handed out by then. Records of a page reported later than the
-- last reported position come again; limits count what came before.
--
-- A `for` loop gets a closing value as the iterator's 4th result: leaving
-- the loop early gives the page buffers back at once (Lua 5.4; elsewhere the
-- collector does).
--
-- DynamoTable.lua makes this module with its helpers:
-- `require("dynamo.paging")(helpers)`.
-- @module dynamo.paging
local core = require("dynamo.core")
local errors = require("dynamo.errors")

local type, tostring, pairs, error, pcall, setmetatable = type, tostring, pairs, error, pcall, setmetatable
local math_type, math_min = math.type, math.min

local pager_new, page_fill = core.pager_new, core.page_fill

-- Items decoded at a time from a page: a few tens of KB, in cache.
local PAGE_RUN = 32
-- DynamoDB's largest Limit.
local MAX_LIMIT = 2147483647

local SORT_OPERATORS = { ["="] = true, ["<"] = true, ["<="] = true, [">"] = true, [">="] = true,
                         begins_with = true, BETWEEN = true }

return function(h)
  local fail, label, check_opts, to_output, encode_request = h.fail, h.label, h.check_opts, h.to_output,
    h.encode_request
  local render, apply_rendered, projection_of, resolve_index, E =
    h.render, h.apply_rendered, h.projection_of, h.resolve_index, h.E

  local M = {}

  -- ---- options ----

  local function check_limit(self, limit)
    if limit == nil then return nil end
    if math_type(limit) ~= "integer" or limit < 0 then
      fail(label(self) .. ": limit must be a non-negative integer, got " .. tostring(limit))
    end
    return limit
  end

  -- The Limit of each request, when asked for. Without it the pager sends
  -- Limit = what is still wanted when there is no filter (the server stops
  -- there), and none with a filter (Limit would count evaluated items).
  local function page_size_of(opts)
    local n = opts.page_size
    if n == nil then return nil end
    if math_type(n) ~= "integer" or n < 1 then fail("page_size must be a positive integer, got " .. tostring(n)) end
    return math_min(n, MAX_LIMIT)
  end

  -- on_page and start, checked.
  local function position_opts(self, opts, what)
    local on_page, start = opts.on_page, opts.start
    if on_page ~= nil and type(on_page) ~= "function" then
      fail(("%s: %s: on_page must be a function(position), got %s"):format(label(self), what, type(on_page)))
    end
    if start ~= nil and type(start) ~= "string" then
      fail(("%s: %s: start must be a position given to on_page (a string), got %s"):format(label(self), what,
        type(start)))
    end
    return on_page, start
  end

  local function base_params(self, opts, index)
    local params = { TableName = self:get_table_name() }
    if index and index.name then params.IndexName = index.name end
    if opts.consistent_read then params.ConsistentRead = true end
    return params
  end

  -- The Query request of query options: params, limit, page size.
  local function query_request(self, opts)
    local pkv = opts.partition_key
    if pkv == nil then fail(label(self) .. ": partition_key should be set.") end
    local index = resolve_index(self, opts.index)
    local limit = check_limit(self, opts.limit)
    local x = E()
    local C, escape = x.ConditionExpression, x.escape
    local skv, op = opts.sort_key, opts.sort_key_operator or "="
    if opts.sort_key_prefix ~= nil then
      skv, op = opts.sort_key_prefix, "begins_with"
    end
    if not SORT_OPERATORS[op] then
      fail(("%s: sort_key_operator %s is not one of = < <= > >= begins_with BETWEEN"):format(label(self),
        tostring(op)))
    end
    local data = {}
    local pk_name, sk_name = index.partition_key_name, index.sort_key_name
    data[pk_name] = pkv
    local kc = C(escape(pk_name), "=", pk_name)
    if skv ~= nil and sk_name then
      if op == "BETWEEN" then
        if type(skv) ~= "table" or skv[1] == nil or skv[2] == nil then
          fail(label(self) .. ": sort_key for BETWEEN must be { low, high }")
        end
        data[sk_name .. "_low"], data[sk_name .. "_high"] = skv[1], skv[2]
        kc = kc & C(escape(sk_name), "BETWEEN", { sk_name .. "_low", sk_name .. "_high" })
      else
        data[sk_name] = skv
        kc = kc & C(escape(sk_name), op, sk_name)
      end
    end
    for k, v in pairs(opts.data or {}) do data[k] = v end
    local r = render{ key_condition = kc, filter = opts.filter_expression,
                      projection = projection_of(opts.projection), data = data }
    local params = apply_rendered(base_params(self, opts, index), r)
    if opts.scan_index_forward == false then params.ScanIndexForward = false end
    return params, limit, page_size_of(opts)
  end

  -- ---- the iterator ----

  -- The error of a failed page (info from the pager); a body that is not a
  -- page names the table and the operation.
  local function page_error(self, op, info, message)
    local e = errors.from_core(info, message)
    if e.code == "InvalidResponse" then e.message = ("%s: %s: %s"):format(label(self), op, e.message) end
    return e
  end

  local function nothing() return nil end

  -- The iterator over a pager made from `spec` (core.pager_new's options):
  -- yields record, stream (1-based), plus a closing value as 4th result.
  local function iterate(self, op, spec, raw, on_page)
    local pager, bad_start = pager_new(self.client.handle, spec)
    if not pager then fail(("%s: %s: start: %s"):format(label(self), op, bad_start)) end
    local client = self.client
    local rc = (not raw) and self.record_class or nil
    local run, rpos, rn = {}, 0, 0 -- the run of decoded items, and how far it was handed out
    local page, at, left = nil, 1, 0 -- the page being read, its stream, its items not yet decoded
    local unreported = false        -- a page ended; its position is reported once its last record is out
    local ended = false

    local function finish()
      ended, unreported = true, false
      rpos, rn, left = 0, 0, 0
      if page then
        page:close()
        page = nil
      end
      pager:free()
    end

    local function report()
      unreported = false
      if on_page then on_page(pager:position()) end
    end

    -- The next page: the round's next one, or the first of a new round.
    local function next_page()
      while true do
        local pg, s, take = pager:take()
        if pg then
          page, at, left = pg, s, take
          return true
        end
        if s ~= nil then -- a stream failed: nil, message, info
          finish()
          error(page_error(self, op, take, s), 0)
        end
        if pager:finished() then
          local ok, info = pager:status() -- a driver that failed ended the pager
          finish()
          if not ok then error(page_error(self, op, info), 0) end
          return false
        end
        client:run_op(pager)
      end
    end

    local function step()
      while true do
        if rpos < rn then
          rpos = rpos + 1
          local item = run[rpos]
          run[rpos] = nil
          if rc then item = to_output(self, item) end
          return item, at
        end
        if left > 0 then
          local got, err = page_fill(page, run, left < PAGE_RUN and left or PAGE_RUN)
          if not got then
            finish()
            error(errors.new("InvalidResponse", ("%s: %s: the response is not valid JSON (%s)"):format(label(self),
              op, tostring(err)), { retryable = false }), 0)
          end
          rpos, rn = 0, got
          left = got > 0 and left - got or 0 -- a page with fewer Items than its Count ends there
          if left == 0 then
            page:close() -- the body goes back for the next response
            page = nil
            unreported = true
          end
        elseif unreported then
          report()
        elseif ended or not next_page() then
          return nil
        end
      end
    end

    -- Leaving a for loop: a break right after a page's last record reports
    -- its position (the loop's body is through with it); an error does not.
    local closer = setmetatable({}, { __close = function(_, err)
      if ended then return end
      if err == nil and unreported and rpos >= rn then report() end
      finish()
    end })
    return step, nil, nil, closer
  end

  -- ---- query, query_many, scan ----

  function M.query_iter(self, opts, raw)
    local params, limit, page_size = query_request(self, opts)
    local on_page, start = position_opts(self, opts, "query")
    if limit == 0 then return nothing end
    return iterate(self, "Query", {
      streams = { { op = "Query", body = encode_request(self, params), limit = limit, page_size = page_size } },
      start = start,
    }, raw, on_page)
  end

  function M.query_many(self, queries, opts)
    if type(queries) ~= "table" then
      fail(("%s: query_many: queries must be an array of query options, got %s"):format(label(self),
        type(queries)))
    end
    local per_round = opts.concurrency or self.client.concurrency or 8
    if math_type(per_round) ~= "integer" or per_round < 1 then
      fail(label(self) .. ": query_many: concurrency must be a positive integer, got " .. tostring(opts.concurrency))
    end
    local on_page, start = position_opts(self, opts, "query_many")
    local streams = {}
    for i = 1, #queries do
      local ok, params, limit, page_size = pcall(query_request, self, check_opts(queries[i], "query_many"))
      if not ok then
        if errors.is(params) then params.message = params.message .. (" (query %d)"):format(i) end
        error(params, 0)
      end
      streams[i] = { op = "Query", body = encode_request(self, params), limit = limit, page_size = page_size }
    end
    return iterate(self, "Query", { streams = streams, max_pages = per_round, start = start }, false, on_page)
  end

  function M.scan_iter(self, opts, raw)
    local limit = check_limit(self, opts.limit)
    local index = opts.index ~= nil and resolve_index(self, opts.index) or nil
    local params = base_params(self, opts, index)
    if opts.filter_expression ~= nil or opts.projection ~= nil then
      local r = render{ filter = opts.filter_expression, projection = projection_of(opts.projection),
                        data = opts.data or {} }
      apply_rendered(params, r)
    end
    local segments = opts.segments
    if segments ~= nil and (math_type(segments) ~= "integer" or segments < 1) then
      fail(label(self) .. ": segments must be a positive integer, got " .. tostring(segments))
    end
    local page_size = page_size_of(opts)
    local on_page, start = position_opts(self, opts, "scan")
    if limit == 0 then return nothing end
    local body = encode_request(self, params)
    if segments == nil or segments == 1 then
      return iterate(self, "Scan", {
        streams = { { op = "Scan", body = body, limit = limit, page_size = page_size } }, start = start,
      }, raw, on_page)
    end
    return iterate(self, "Scan", {
      segments = segments, op = "Scan", body = body, page_size = page_size, limit = limit, start = start,
    }, raw, on_page)
  end

  return M
end
