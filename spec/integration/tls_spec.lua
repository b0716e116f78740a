-- TLS verification is on: a server whose certificate nobody vouches for is
-- refused before any request is sent. The server is `openssl s_server` with a
-- self-signed certificate made for this spec, on a free loopback port.
local helpers = require("spec.helpers")

describe("dynamo.client over TLS", function()
  local dynamo, dir, pid, port

  setup(function()
    dynamo = require("dynamo")
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. helpers.shell_quote(dir)))
    local q = helpers.shell_quote
    assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -days 1 -keyout %s -out %s"
      .. " >/dev/null 2>&1"):format(q(dir .. "/key.pem"), q(dir .. "/cert.pem"))))
    local out = dir .. "/server.out"
    local p = assert(io.popen(("timeout 120 openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -www > %s 2>&1 & echo $!")
      :format(q(dir .. "/cert.pem"), q(dir .. "/key.pem"), q(out))))
    pid = tonumber(p:read("l"))
    p:close()
    for _ = 1, 100 do
      port = (helpers.read_file(out) or ""):match("ACCEPT 127%.0%.0%.1:(%d+)")
      if port then break end
      os.execute("sleep 0.05")
    end
    assert(port, "openssl s_server did not start: " .. tostring(helpers.read_file(out)))
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    if dir then os.execute("rm -rf " .. helpers.shell_quote(dir)) end
  end)

  it("refuses a self-signed certificate with a Transport error naming the certificate", function()
    local client = dynamo.client{ endpoint = "https://127.0.0.1:" .. port, region = "us-east-1", max_attempts = 1,
                                  credentials = { access_key_id = "a", secret_access_key = "tls-spec-secret" } }
    local ok, err = pcall(client.call, client, "ListTables", {})
    assert.is_false(ok)
    assert.equal("Transport", err.code)
    assert.matches("certificate", err.message)
    assert.is_nil(tostring(err):find("tls-spec-secret", 1, true))
    client:close()
  end)
end)
