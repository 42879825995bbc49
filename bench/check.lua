-- check.lua — wrk script for bench/services.py: POST a JSON-RPC body over keep-alive
-- HTTP/1.1 like post.lua, and check every answer: a call counts as failed unless the
-- status is 200 and the body carries a JSON-RPC "result" (the node answers a JSON-RPC
-- error with status 200, which h2load and post.lua cannot see). One line at the end:
--   CHECKSTATS requests=N ok=N failed=N err_connect=N err_read=N err_write=N err_timeout=N
--   CHECKFAIL <status> <first 200 bytes of a failed answer>   (the first 3 per thread)
--   BENCH_BODY       the request body (required)
--   P2P_BENCH_TOKEN  when set, sent as "Authorization: Bearer <token>"
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"jsonrpc":"2.0","method":"system/ping","id":1}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("P2P_BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  ok = 0
  failed = 0
  samples = ""
end

response = function(status, headers, body)
  if status == 200 and body and body:find('"result"', 1, true) then
    ok = ok + 1
  else
    failed = failed + 1
    if failed <= 3 then
      samples = samples .. string.format("CHECKFAIL %d %s\n", status,
        ((body or ""):sub(1, 200):gsub("[\r\n]", " ")))
    end
  end
end

done = function(summary, latency, requests)
  local ok_all, failed_all = 0, 0
  for _, t in ipairs(threads) do
    ok_all = ok_all + t:get("ok")
    failed_all = failed_all + t:get("failed")
    io.write(t:get("samples"))
  end
  local e = summary.errors
  io.write(string.format(
    "CHECKSTATS requests=%d ok=%d failed=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
    summary.requests, ok_all, failed_all, e.connect, e.read, e.write, e.timeout))
end
