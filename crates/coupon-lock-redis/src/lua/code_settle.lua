-- Settles an attempt taken by code_attempt.lua once the code was looked up: a code that exists
-- gives the attempt back; an unknown one keeps it, and the caller is blocked once it holds the
-- limit's worth of them.
--
-- KEYS[1] the hour's attempt counter, KEYS[2] the caller's block flag
-- ARGV[1] 1 when the code was unknown, 0 when it exists; ARGV[2] attempt limit, ARGV[3] block seconds
if ARGV[1] == '0' then
  -- Not below zero: the counter may have expired with its hour since the attempt was taken.
  if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    redis.call('DECR', KEYS[1])
  end
  return 0
end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  return 1
end
return 0
