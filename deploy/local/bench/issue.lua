-- wrk script of `just bench issue`: POST /api/coupons/download for one FIRST_COME policy, every
-- request from a distinct user (run base + thread number × 10^8 + a counter), counting answers by
-- status. Arguments after `--`: the policy id, a user-id base unique to the run, and `keys` to
-- send a distinct Idempotency-Key with every request.

local threads = {}
local next_thread = 1

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  policy = args[1]
  base = tonumber(args[2])
  keys = args[3] == "keys"
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  local user = base + tid * 100000000 + counter
  local body = '{"couponPolicyId":' .. policy .. ',"userId":' .. user .. '}'
  local headers = { ["Content-Type"] = "application/json", ["X-User-Id"] = tostring(user) }
  if keys then
    headers["Idempotency-Key"] = "download-" .. user
  end
  return wrk.format("POST", "/api/coupons/download", headers, body)
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
  local created = by_status[201] or 0
  local other = 0
  for status, n in pairs(by_status) do
    if status ~= 201 then
      other = other + n
      io.write(string.format("status %d: %d\n", status, n))
    end
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT created=%d other=%d socket_errors=%d seconds=%.2f rate=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    created, other,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
