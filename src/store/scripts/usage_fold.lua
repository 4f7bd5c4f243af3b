-- usage_fold: folds the per-instant counters of a day long past into totals.
-- KEYS[1] the day's counter hash
-- ARGV[1] n, then n prefixes to fold ("<p>.<second>" fields are summed into "<p>.all"),
-- then prefixes to drop ("<p>.<anything>" fields are deleted)
-- Returns the number of fields removed.
-- Keeps: the sum over "<p>.*" is unchanged by folding, even with deltas
-- arriving concurrently (they are folded next time or summed as they are).
local key, n = KEYS[1], tonumber(ARGV[1])
local fields = redis.call('HGETALL', key)
local removed = 0
for i = 1, #fields, 2 do
  local f, v = fields[i], fields[i + 1]
  for j = 2, n + 1 do
    local p = ARGV[j] .. '.'
    if string.sub(f, 1, #p) == p and f ~= p .. 'all' then
      redis.call('HINCRBY', key, p .. 'all', v)
      redis.call('HDEL', key, f)
      removed = removed + 1
    end
  end
  for j = n + 2, #ARGV do
    local p = ARGV[j] .. '.'
    if string.sub(f, 1, #p) == p then
      redis.call('HDEL', key, f)
      removed = removed + 1
    end
  end
end
return removed
