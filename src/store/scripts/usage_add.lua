-- usage_add: adds one flush's report counter deltas for one day, once.
-- KEYS[1] the day's counter hash
-- ARGV[1] retention (s), ARGV[2] the flushing instance's name, ARGV[3] its
-- flush sequence number, then pairs: field, delta
-- Returns 1 if applied, 0 if this flush was applied to this day before.
-- Keeps: a flush is applied to a day exactly once, however often it is
-- retried: the day remembers, per instance, the last sequence number it
-- applied ("flush.<instance>"), and an instance retries a failed flush
-- before it sends a newer one.
local key, retention = KEYS[1], tonumber(ARGV[1])
local marker, seq = 'flush.' .. ARGV[2], tonumber(ARGV[3])
local applied = tonumber(redis.call('HGET', key, marker) or '0')
if applied >= seq then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', key, marker, seq)
redis.call('EXPIRE', key, retention)
return 1
