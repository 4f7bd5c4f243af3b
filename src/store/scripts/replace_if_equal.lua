-- replace_if_equal: compare-and-set.
-- KEYS[1] the key; ARGV[1] '1' if it must hold ARGV[2], '0' if it must hold
-- nothing; ARGV[3] the new value, ARGV[4] its time to live in ms.
-- Returns 1 if written, 0 if the key held something else.
-- Keeps: a record read, changed and written back by two instances at once
-- takes one change after the other, never one over the other.
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
