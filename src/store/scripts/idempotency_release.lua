-- idempotency_release: a request that sent nothing and holds nothing gives
-- its key back, whether it only claimed it ("p:") or had noted a use
-- ("u:"), so a repeat runs afresh.
-- KEYS[1] the key; ARGV[1] the body fingerprint
-- Returns 1 if released, 0 if the key held something else.
local v = redis.call('GET', KEYS[1])
local fp = ARGV[1]
if v == 'p:' .. fp or (v and string.sub(v, 1, 3 + #fp) == 'u:' .. fp .. ':') then
  return redis.call('DEL', KEYS[1])
end
return 0
