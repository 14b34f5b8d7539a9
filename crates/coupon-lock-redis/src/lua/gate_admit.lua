-- First-come gate: admit one request or turn it away, atomically (one round trip).
--
-- KEYS[1]  stock   remaining units (-1 = unlimited); absent when new or after a flush
-- KEYS[2]  holders hash user id -> units taken through the gate
-- KEYS[3]  cap     the cap the stock was counted against (-1 = unlimited)
-- ARGV[1]  user id
-- ARGV[2]  per-user limit
-- ARGV[3]  stock to start from when KEYS[1] is absent: cap - issued, as PostgreSQL last said
-- ARGV[4]  TTL of the keys in seconds (the gate dies with the campaign)
-- ARGV[5]  the caller's cap (-1 = unlimited)
--
-- Returns 0 admitted, 1 sold out, 2 the user already holds their limit.
--
-- The gate may only err towards admitting: PostgreSQL refuses the extra, while a request turned
-- away here never reaches it. Rebuilding from PostgreSQL's numbers over-estimates the stock
-- (requests in flight are not counted yet), and a caller that knows a higher cap than the gate
-- (the cap was raised) grows the stock by the difference. A caller with an older, lower cap
-- changes nothing.
local stock = redis.call('GET', KEYS[1])
local cap = tonumber(ARGV[5])
if not stock then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
  stock = ARGV[3]
else
  local known = tonumber(redis.call('GET', KEYS[3]) or ARGV[5])
  if known >= 0 and (cap < 0 or cap > known) then
    if cap < 0 then
      redis.call('SET', KEYS[1], -1, 'KEEPTTL')
    else
      redis.call('INCRBY', KEYS[1], cap - known)
    end
    redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
    stock = redis.call('GET', KEYS[1])
  end
end
stock = tonumber(stock)
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held >= tonumber(ARGV[2]) then
  return 2
end
if stock == 0 then
  return 1
end
if stock > 0 then
  redis.call('DECR', KEYS[1])
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 0
