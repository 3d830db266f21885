-- GET /api/v1/products/<sku> over a list of skus, with a pause between a connection's requests.
-- wrk -s products.lua URL -- SKU_FILE DELAY_MS
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup

function init(args)
  skus, statuses, exhausted = {}, {}, 0
  for line in io.lines(args[1]) do
    skus[#skus + 1] = line
  end
  pause_ms = tonumber(args[2] or "0")
  index = tid * 7919 % #skus
end

function request()
  index = index % #skus + 1
  return wrk.format("GET", "/api/v1/products/" .. skus[index])
end

function delay()
  return pause_ms
end

response = function(status, headers, body) common.count(status) end

done = function(summary, latency, requests) common.report(summary, latency) end
