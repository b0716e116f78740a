--- Where a client's region, endpoint and credentials come from, in the order
-- the AWS SDKs use: explicit arguments, then environment variables, then the
-- shared files (~/.aws/credentials and ~/.aws/config, profile AWS_PROFILE or
-- "default").
-- @module dynamo.config
local M = {}

local getenv = os.getenv

local function nonempty(v)
  if v ~= nil and v ~= "" then return v end
  return nil
end

--- Parses an INI-style AWS shared file into { [section] = { key = value } }.
-- Comment lines start with # or ;. Indented lines (nested service settings)
-- are kept under "<parent>.<key>".
function M.parse_ini(text)
  local sections, current, parent = {}, nil, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    local trimmed = line:match("^%s*(.-)%s*$")
    if trimmed == "" or trimmed:match("^[#;]") then
      -- skip
    elseif trimmed:match("^%[.*%]$") then
      local name = trimmed:match("^%[%s*(.-)%s*%]$")
      current = sections[name] or {}
      sections[name] = current
      parent = nil
    elseif current then
      local indented = line:match("^%s+") ~= nil
      local key, value = trimmed:match("^([^=]-)%s*=%s*(.*)$")
      if key then
        if indented and parent then
          current[parent .. "." .. key] = value
        else
          current[key] = value
          parent = (value == "") and key or nil
        end
      end
    end
  end
  return sections
end

local function read_ini(path)
  if not path then return {} end
  local f = io.open(path, "r")
  if not f then return {} end
  local text = f:read("a")
  f:close()
  return M.parse_ini(text)
end

local function home_file(name)
  local home = nonempty(getenv("HOME"))
  return home and (home .. "/.aws/" .. name) or nil
end

--- The active profile's settings from both shared files (credentials win for keys).
function M.profile(name)
  name = name or nonempty(getenv("AWS_PROFILE")) or nonempty(getenv("AWS_DEFAULT_PROFILE")) or "default"
  local creds = read_ini(nonempty(getenv("AWS_SHARED_CREDENTIALS_FILE")) or home_file("credentials"))
  local conf = read_ini(nonempty(getenv("AWS_CONFIG_FILE")) or home_file("config"))
  local merged = {}
  for k, v in pairs(conf[name == "default" and "default" or ("profile " .. name)] or {}) do merged[k] = v end
  for k, v in pairs(creds[name] or {}) do merged[k] = v end
  return merged, name
end

--- Region: argument, AWS_REGION, AWS_DEFAULT_REGION, profile `region`.
function M.region(explicit, profile)
  return nonempty(explicit) or nonempty(getenv("AWS_REGION")) or nonempty(getenv("AWS_DEFAULT_REGION"))
      or nonempty((profile or {}).region)
end

--- Endpoint: argument, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, profile
-- `endpoint_url`; none of the configured ones when
-- AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true.
function M.endpoint(explicit, profile)
  if nonempty(explicit) then return explicit end
  if (getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") or ""):lower() == "true" then return nil end
  return nonempty(getenv("AWS_ENDPOINT_URL_DYNAMODB")) or nonempty(getenv("AWS_ENDPOINT_URL"))
      or nonempty((profile or {}).endpoint_url)
end

--- Credentials: argument table, environment, profile. Returns nil when none.
function M.credentials(explicit, profile)
  if explicit then return explicit end
  local id, secret = nonempty(getenv("AWS_ACCESS_KEY_ID")), nonempty(getenv("AWS_SECRET_ACCESS_KEY"))
  if id and secret then
    return { access_key_id = id, secret_access_key = secret,
             session_token = nonempty(getenv("AWS_SESSION_TOKEN")) or nonempty(getenv("AWS_SECURITY_TOKEN")) }
  end
  profile = profile or {}
  if nonempty(profile.aws_access_key_id) and nonempty(profile.aws_secret_access_key) then
    return { access_key_id = profile.aws_access_key_id, secret_access_key = profile.aws_secret_access_key,
             session_token = nonempty(profile.aws_session_token) or nonempty(profile.aws_security_token) }
  end
  return nil
end

--- True when an endpoint URL names this machine (the local server).
function M.is_loopback(url)
  local authority = (url or ""):match("^%a[%w+.-]*://([^/]+)")
  if not authority then return false end
  local host = authority:match("^%[([^%]]+)%]") or authority:gsub(":%d+$", "")
  return host == "localhost" or host:match("^127%.") ~= nil or host == "::1"
end

return M
