--- Error objects raised by the library: `dynamo.DynamoTableError`.
-- Fields: `message`, `code` (the AWS error type after its `#`, such as
-- `ConditionalCheckFailedException`, or a local code: `Validation`,
-- `Transport`, `Timeout`, `Json`, `Checksum`), `retryable`, `status`,
-- `request_id`, `data`, and for batches `unprocessed`.
-- `tostring(err)` gives "code: message"; errors concatenate as strings.
-- @module dynamo.errors
local util = require("dynamo.util")

local M = {}

local DynamoTableError = {}
DynamoTableError.__index = DynamoTableError
DynamoTableError.__name = "dynamo.DynamoTableError"

local function describe_data(data)
  if data == nil then return nil end
  -- a record's own metamethods may raise: the message still reads
  local ok, text = pcall(util.describe, data)
  return ok and text or nil
end

DynamoTableError.__tostring = function(e)
  local text = (e.code and e.code ~= "" and (e.code .. ": ") or "") .. tostring(e.message)
  if e.show_data and e.data ~= nil then
    local d = describe_data(e.data)
    if d then text = text .. " data=" .. d end
  end
  return text
end
DynamoTableError.__concat = function(a, b) return tostring(a) .. tostring(b) end

--- Makes an error object. `fields` may hold status, request_id, retryable, data ...
-- @tparam string code
-- @tparam string message
-- @tparam[opt] table fields
function M.new(code, message, fields)
  local e = setmetatable({}, DynamoTableError)
  for k, v in pairs(fields or {}) do e[k] = v end
  e.code = code
  e.message = message or code
  if e.retryable == nil then e.retryable = false end
  return e
end

--- True when `v` is a DynamoTableError (with the given code, if any).
function M.is(v, code)
  return getmetatable(v) == DynamoTableError and (code == nil or v.code == code)
end

--- Raises a new error at the caller's caller.
function M.raise(code, message, fields)
  error(M.new(code, message, fields), 0)
end

--- Turns the info table of the C client (see bindings/ldynamo_client.c) into an error object.
function M.from_core(info, fallback_message)
  info = info or {}
  return M.new(info.code or "Transport", info.message or fallback_message or "request failed", {
    status = info.status,
    request_id = info.request_id,
    retryable = info.retryable == true,
    retry_class = info.retry_class,
    attempts = info.attempts,
  })
end

M.DynamoTableError = DynamoTableError
return M
