-- First-come gate: admit or turn away a batch of requests of one policy, atomically (one round
-- trip for the whole batch; the requests are decided in the order given).
--
-- KEYS[1]  stock   remaining units (-1 = unlimited); absent when new or after a flush
-- KEYS[2]  holders hash user id -> units taken through the gate
-- KEYS[3]  cap     the cap the stock was counted against (-1 = unlimited)
-- ARGV[1]  per-user limit
-- ARGV[2]  stock to start from when KEYS[1] is absent: cap - issued, as PostgreSQL last said
-- ARGV[3]  TTL of the keys in seconds (the gate dies with the campaign)
-- ARGV[4]  the caller's cap (-1 = unlimited)
-- ARGV[5…] the user id of each request
--
-- Returns one answer per request: 0 admitted, 1 sold out, 2 the user already holds their limit.
-- A user who appears twice is counted twice, as two calls in a row would be.
--
-- The gate may only err towards admitting: PostgreSQL refuses the extra, while a request turned
-- away here never reaches it. Rebuilding from PostgreSQL's numbers over-estimates the stock
-- (requests in flight are not counted yet), and a caller that knows a higher cap than the gate
-- (the cap was raised) grows the stock by the difference. A caller with an older, lower cap
-- changes nothing.
local stock = redis.call('GET', KEYS[1])
local cap = tonumber(ARGV[4])
if not stock then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
  stock = ARGV[2]
else
  local known = tonumber(redis.call('GET', KEYS[3]) or ARGV[4])
  if known >= 0 and (cap < 0 or cap > known) then
    if cap < 0 then
      redis.call('SET', KEYS[1], -1, 'KEEPTTL')
    else
      redis.call('INCRBY', KEYS[1], cap - known)
    end
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
    stock = redis.call('GET', KEYS[1])
  end
end
stock = tonumber(stock)
local per_user = tonumber(ARGV[1])
local answers = {}
local taken = 0
for i = 5, #ARGV do
  local held = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  if held >= per_user then
    answers[#answers + 1] = 2
  elseif stock >= 0 and taken >= stock then
    answers[#answers + 1] = 1
  else
    taken = taken + 1
    redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
    answers[#answers + 1] = 0
  end
end
if taken > 0 then
  if stock > 0 then
    redis.call('DECRBY', KEYS[1], taken)
  end
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return answers
