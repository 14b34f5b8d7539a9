-- First-come gate: return the unit an admitted request took, because PostgreSQL refused it for
-- another reason than stock (the user already held a coupon, a transient failure).
--
-- KEYS[1] stock, KEYS[2] holders, KEYS[3] returns, ARGV[1] user id. Unlimited stock (-1) stays as
-- it is.
--
-- Every give-back counts in KEYS[3], which lives as long as the stock: instances that answer a
-- sold-out policy from memory compare it (gate_sold_out.lua) to learn that the holders changed.
local stock = redis.call('GET', KEYS[1])
if stock and tonumber(stock) >= 0 then
  redis.call('INCR', KEYS[1])
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('INCR', KEYS[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held > 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
elseif held == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 0
