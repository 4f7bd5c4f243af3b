-- idempotency_begin: claims an idempotency key or reports what it holds.
-- KEYS[1] the key; ARGV[1] the body fingerprint (fixed length), ARGV[2] claim ttl (ms)
-- Stored value: "p:<fingerprint>" while running, "d:<fingerprint>:<response>" when done.
-- Returns {"new"} | {"in_progress"} | {"mismatch"} | {"done", response}
-- Keeps: one request at a time runs under a key; a key never serves another body.
local v = redis.call('GET', KEYS[1])
local fp = ARGV[1]
if not v then
  redis.call('SET', KEYS[1], 'p:' .. fp, 'PX', ARGV[2])
  return {'new'}
end
if string.sub(v, 3, 2 + #fp) ~= fp then return {'mismatch'} end
if string.sub(v, 1, 2) == 'p:' then return {'in_progress'} end
return {'done', string.sub(v, 4 + #fp)}
