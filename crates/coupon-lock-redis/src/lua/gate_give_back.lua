-- First-come gate: return the unit an admitted request took, because PostgreSQL refused it for
-- another reason than stock (the user already held a coupon, a transient failure).
--
-- KEYS[1] stock, KEYS[2] holders, ARGV[1] user id. Unlimited stock (-1) stays as it is.
local stock = redis.call('GET', KEYS[1])
if stock and tonumber(stock) >= 0 then
  redis.call('INCR', KEYS[1])
end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held > 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
elseif held == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 0
