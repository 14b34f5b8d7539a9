-- wrk script of `just bench reserve`: reserve → use cycles, each on a coupon of its own. Every
-- request() returns the two requests of one cycle pipelined on one connection, so the use is read
-- by the server after its reserve was answered, in order (HTTP/1.1 pipelining). wrk times each
-- response from the moment the pair was written: the use's latency is the whole cycle's.
-- Arguments after `--`: the first coupon id, the number of coupons, the first user id (coupon
-- first + k belongs to user first_user + k), a run tag that makes reservation ids unique, the
-- number of wrk threads, and `keys` to send a distinct Idempotency-Key with every request.

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  first_coupon = tonumber(args[1])
  coupons = tonumber(args[2])
  first_user = tonumber(args[3])
  tag = args[4]
  nthreads = tonumber(args[5])
  keys = args[6] == "keys"
  -- Threads walk disjoint slices: k = tid, tid + nthreads, tid + 2 × nthreads, …
  k = tid
  statuses = {}
  cycles = 0
end

function request()
  if k >= coupons then
    -- Out of coupons: ask for something harmless until wrk stops.
    return wrk.format("GET", "/health/live") .. wrk.format("GET", "/health/live")
  end
  local coupon, user = first_coupon + k, first_user + k
  local rid = tag .. "-" .. k
  k = k + nthreads
  local headers = { ["Content-Type"] = "application/json", ["X-User-Id"] = tostring(user) }
  local reserve = '{"reservationId":"' .. rid .. '","userId":' .. user .. ',"couponId":' .. coupon ..
    ',"orderAmount":50000,"orderId":"O-' .. rid .. '"}'
  local use = '{"reservationId":"' .. rid .. '","orderId":"O-' .. rid .. '","paymentId":"P-' .. rid .. '"}'
  local use_headers = headers
  if keys then
    headers = { ["Content-Type"] = "application/json", ["X-User-Id"] = tostring(user), ["Idempotency-Key"] = "reserve-" .. rid }
    use_headers = { ["Content-Type"] = "application/json", ["X-User-Id"] = tostring(user), ["Idempotency-Key"] = "use-" .. rid }
  end
  return wrk.format("POST", "/api/coupons/reserve", headers, reserve) ..
    wrk.format("POST", "/api/coupons/use", use_headers, use)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local by_status = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  for status, n in pairs(by_status) do
    io.write(string.format("status %d: %d\n", status, n))
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT ok=%d seconds=%.2f requests_per_s=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f socket_errors=%d\n",
    by_status[200] or 0, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
