-- Replay pre-built raw HTTP requests, each at most once, and count the answers' status codes.
-- wrk -s replay.lua URL -- FILE_PREFIX   (thread N reads FILE_PREFIX.N: "<length>\n<bytes>"...)
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup

function init(args)
  local file = assert(io.open(args[1] .. "." .. tid, "rb"))
  local data = file:read("*a")
  file:close()
  requests, statuses, exhausted, index = {}, {}, 0, 0
  local pos = 1
  while pos <= #data do
    local newline = string.find(data, "\n", pos, true)
    local length = tonumber(string.sub(data, pos, newline - 1))
    requests[#requests + 1] = string.sub(data, newline + 1, newline + length)
    pos = newline + length + 1
  end
end

function request()
  index = index + 1
  if index > #requests then
    -- Out of unique requests: stop this thread; the re-sent one is counted, not hidden.
    exhausted = exhausted + 1
    wrk.thread:stop()
    index = #requests
  end
  return requests[index]
end

response = function(status, headers, body) common.count(status) end

done = function(summary, latency, requests) common.report(summary, latency) end
