-- Fixed-window rate limit: counts one request in the current minute and hour windows.
--
-- KEYS[1] the minute window's counter, KEYS[2] the hour window's counter (window index in the key)
-- ARGV[1] seconds until the minute window ends, ARGV[2] seconds until the hour window ends
--
-- Returns {minute count, hour count}. Counters expire with their window, so nothing needs cleaning.
local minute = redis.call('INCR', KEYS[1])
if minute == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local hour = redis.call('INCR', KEYS[2])
if hour == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return {minute, hour}
