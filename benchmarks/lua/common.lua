-- Shared by the wrk scripts: per-thread status counts and one JSON line from done().
local M = {}

M.threads = {}

function M.setup(thread)
  thread:set("tid", #M.threads)
  table.insert(M.threads, thread)
end

function M.count(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function M.report(summary, latency, extra)
  local merged, exhausted = {}, 0
  for _, thread in ipairs(M.threads) do
    for code, n in pairs(thread:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + n
    end
    exhausted = exhausted + (thread:get("exhausted") or 0)
  end
  local codes = {}
  for code, n in pairs(merged) do
    codes[#codes + 1] = string.format('"%d":%d', code, n)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},' ..
    '"statuses":{%s},"exhausted":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    table.concat(codes, ","), exhausted))
end

return M
