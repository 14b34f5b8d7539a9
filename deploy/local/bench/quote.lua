-- wrk script of `just bench quote`: POST /api/coupons/quote for a random user of the bench's
-- wallets, each of which holds the same mix of coupons. Arguments after `--`: the number of users
-- (ids 1..n) and the number of coupons each holds (checked in every answer).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  users = tonumber(args[1])
  wallet = tonumber(args[2])
  statuses = {}
  short = 0
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local user = math.random(1, users)
  local headers = { ["Content-Type"] = "application/json", ["X-User-Id"] = tostring(user) }
  local body = '{"userId":' .. user .. ',"orderAmount":50000,"orderId":"Q-' .. user .. '"}'
  return wrk.format("POST", "/api/coupons/quote", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    -- A plain find per line: no copy of the body (gsub would make one per answer).
    local n, at = 0, 1
    while true do
      at = body:find('"couponId"', at, true)
      if not at then break end
      n, at = n + 1, at + 10
    end
    if n ~= wallet then short = short + 1 end
  end
end

function done(summary, latency, requests)
  local by_status, wrong = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
    end
    wrong = wrong + thread:get("short")
  end
  for status, n in pairs(by_status) do
    io.write(string.format("status %d: %d\n", status, n))
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT ok=%d wrong_wallet=%d seconds=%.2f requests_per_s=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f socket_errors=%d\n",
    by_status[200] or 0, wrong, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
