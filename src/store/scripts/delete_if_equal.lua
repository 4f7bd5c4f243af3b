-- delete_if_equal: compare-and-delete.
-- KEYS[1] the key, ARGV[1] the value it must still hold
-- Returns 1 if deleted, 0 if the key held something else (or nothing).
-- Keeps: a lock is released, a token invalidated or an idempotency claim
-- dropped only by whoever still owns that exact value.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
