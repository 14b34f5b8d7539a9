-- Counts an unknown coupon code from one caller (a user or an address) within the current hour and
-- blocks the caller once the count reaches the limit.
--
-- KEYS[1] the hour's attempt counter, KEYS[2] the caller's block flag
-- ARGV[1] seconds until the hour window ends, ARGV[2] attempt limit, ARGV[3] block seconds
local attempts = redis.call('INCR', KEYS[1])
if attempts == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if attempts >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
end
return attempts
