-- post.lua — wrk script for bench/run.sh: POST a JSON-RPC body over keep-alive
-- HTTP/1.1 and print the figures run.sh parses in one machine-readable line.
--   BENCH_BODY       the request body (required)
--   P2P_BENCH_TOKEN  when set, sent as "Authorization: Bearer <token>"
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"jsonrpc":"2.0","method":"system/ping","id":1}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("P2P_BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKSTATS requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    math.floor(latency.mean), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
