-- wrk script: POST one MCP tools/call per request (protocol 2026-07-28, as the bench client).
--   TOOL=ping TOKEN=<gateway bearer token> wrk -t2 -c64 -d10s -s tests/bench/wrk_call.lua http://127.0.0.1:8001/mcp
-- Prints more percentiles than --latency. wrk 4 corrects for coordinated omission: every slow
-- call adds synthetic samples to the histogram (see tests/bench/TAIL.md).
local tool = os.getenv("TOOL") or "ping"
local token = os.getenv("TOKEN")
local meta = '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"0.1.0"},"io.modelcontextprotocol/clientCapabilities":{}}'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool .. '","arguments":{},' .. meta .. '}}'
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = tool

done = function(summary, latency, requests)
  local qs = {50, 75, 90, 95, 98, 99, 99.5, 99.9}
  local out = {}
  for _, q in ipairs(qs) do
    out[#out + 1] = string.format("p%s=%.1f", q, latency:percentile(q) / 1000)
  end
  io.write(string.format("DIST ms: %s max=%.1f\n", table.concat(out, " "), latency.max / 1000))
  io.write(string.format("errors: connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
