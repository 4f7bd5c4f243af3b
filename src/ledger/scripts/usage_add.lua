-- usage_add: adds report counter deltas for one day.
-- KEYS[1] the day's counter hash
-- ARGV[1] retention (s), then pairs: field, delta
-- Returns the number of fields touched.
-- Keeps: a flush is applied whole or not at all.

local key, retention = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', key, retention)
return (#ARGV - 1) / 2
