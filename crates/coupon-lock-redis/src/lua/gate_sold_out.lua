-- First-come gate: read a sold-out gate in one step, for the instances' in-memory sold-out memo.
--
-- KEYS[1] stock, KEYS[2] holders, KEYS[3] cap, KEYS[4] returns
-- ARGV[1] per-user limit; ARGV[2] '1' to list the holders, '0' for the mark alone
--
-- Returns nil unless the stock is exactly 0. Otherwise { mark, holder... }: the mark joins the
-- cap and the give-back count, the two things that change when a sold-out gate could admit again
-- (a raised cap, a returned unit); the holders are the users at their per-user limit, whom the
-- gate answers "already holding" rather than "sold out".
if redis.call('GET', KEYS[1]) ~= '0' then
  return nil
end
local answer = { (redis.call('GET', KEYS[3]) or '') .. '/' .. (redis.call('GET', KEYS[4]) or '0') }
if ARGV[2] == '1' then
  local limit = tonumber(ARGV[1])
  local held = redis.call('HGETALL', KEYS[2])
  for i = 1, #held, 2 do
    if tonumber(held[i + 1]) >= limit then
      answer[#answer + 1] = held[i]
    end
  end
end
return answer
