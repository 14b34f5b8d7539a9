-- First-come gate: admit one request or turn it away, atomically (one round trip).
--
-- KEYS[1]  stock   remaining units (-1 = unlimited); absent when new or after a flush
-- KEYS[2]  holders hash user id -> units taken through the gate
-- ARGV[1]  user id
-- ARGV[2]  per-user limit
-- ARGV[3]  stock to start from when KEYS[1] is absent: cap - issued, as PostgreSQL last said
-- ARGV[4]  TTL of both keys in seconds (the gate dies with the campaign)
--
-- Returns 0 admitted, 1 sold out, 2 the user already holds their limit.
--
-- Rebuilding from PostgreSQL's numbers can only over-estimate the stock (requests in flight are
-- not counted yet), so the gate may admit a few too many and PostgreSQL refuses them; it never
-- turns away a request while PostgreSQL still has stock.
local stock = redis.call('GET', KEYS[1])
if not stock then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  stock = ARGV[3]
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
