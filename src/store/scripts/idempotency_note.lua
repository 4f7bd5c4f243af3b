-- idempotency_note: the request holding a key notes the state it would
-- leave if it died (the use it is about to present), claimed for as long
-- as its own claim; once that runs out, the next request with the key
-- gets the state to resolve (idempotency_begin's "u:" form).
-- KEYS[1] the key; ARGV[1] the body fingerprint, ARGV[2] claim (ms),
-- ARGV[3] keep (ms), ARGV[4] the state
-- Returns 1 if noted, 0 if the key is not held for this body any more.
local v = redis.call('GET', KEYS[1])
local fp = ARGV[1]
if not v or string.sub(v, 3, 2 + #fp) ~= fp then return 0 end
local tag = string.sub(v, 1, 2)
if tag ~= 'p:' and tag ~= 'u:' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], 'u:' .. fp .. ':' .. (now + tonumber(ARGV[2])) .. ':' .. ARGV[4], 'PX', ARGV[3])
return 1
