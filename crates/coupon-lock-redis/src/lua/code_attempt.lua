-- Takes one coupon-code attempt of a caller (a user or an address), in one step with the check of
-- its block (SPEC §10): parallel guesses cannot all pass a check made before any of them counted.
-- An attempt is counted before the code is looked up; code_settle.lua gives it back when the code
-- turns out to exist, so only unknown codes count in the end.
--
-- KEYS[1] the hour's attempt counter, KEYS[2] the caller's block flag
-- ARGV[1] seconds until the hour window ends, ARGV[2] attempt limit, ARGV[3] block seconds
-- Returns 0 when the caller is blocked (now or already), else the attempts counted this hour.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local attempts = tonumber(redis.call('GET', KEYS[1]) or '0')
if attempts >= tonumber(ARGV[2]) then
  -- The limit's worth of unknown codes was reached (or is in flight): this one is refused, and the
  -- caller is blocked.
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  return 0
end
attempts = redis.call('INCR', KEYS[1])
if attempts == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return attempts
