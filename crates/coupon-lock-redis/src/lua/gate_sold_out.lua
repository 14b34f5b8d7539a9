-- First-come gate: the mark of a sold-out gate, for the instances' in-memory sold-out memo.
--
-- KEYS[1] stock, KEYS[2] cap, KEYS[3] returns
--
-- Returns nil unless the stock is exactly 0. Otherwise the mark: the cap and the give-back count
-- joined, the two things that change when a sold-out gate could admit again (a raised cap, a
-- returned unit). While the mark stays the same, the holders hash does not change, so the caller
-- may read the holders in several HSCAN steps (never one long call that blocks Redis) between two
-- reads of an equal mark.
if redis.call('GET', KEYS[1]) ~= '0' then
  return nil
end
return (redis.call('GET', KEYS[2]) or '') .. '/' .. (redis.call('GET', KEYS[3]) or '0')
