-- template number: the deployment's number for a template id, assigned on
-- first sight.
-- KEYS[1] the template dictionary hash
-- ARGV[1] template id, ARGV[2] capacity
-- Returns the number (1..capacity).
-- Keeps: a template's number never changes; two ids never share one
-- ("<id>" → n and "#<n>" → id, "n" the last number given).

local known = redis.call('HGET', KEYS[1], ARGV[1])
if known then return tonumber(known) end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if n > tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], 'n', -1)
  return redis.error_reply('fl: the template dictionary is full')
end
redis.call('HSET', KEYS[1], ARGV[1], n, '#' .. n, ARGV[1])
return n
