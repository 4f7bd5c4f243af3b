-- idempotency_begin: claims an idempotency key or reports what it holds.
-- KEYS[1] the key; ARGV[1] the body fingerprint (fixed length), ARGV[2] claim ttl (ms)
-- Stored value: "p:<fingerprint>" while a first request runs (the key's TTL is
-- the claim), "d:<fingerprint>:<response>" when done, and
-- "u:<fingerprint>:<claimed until, ms>:<state>" while an earlier request's
-- outcome is unknown (0 = nobody is resolving it; times on this server's clock).
-- Returns {"new"} | {"in_progress"} | {"mismatch"} | {"done", response} | {"pending", state}
-- Keeps: one request at a time runs under a key; a key never serves another
-- body; a pending state is never dropped by a claim (a crashed resolver's
-- claim simply runs out).
local v = redis.call('GET', KEYS[1])
local fp, hold = ARGV[1], tonumber(ARGV[2])
if not v then
  redis.call('SET', KEYS[1], 'p:' .. fp, 'PX', hold)
  return {'new'}
end
if string.sub(v, 3, 2 + #fp) ~= fp then return {'mismatch'} end
local tag = string.sub(v, 1, 2)
if tag == 'p:' then return {'in_progress'} end
if tag == 'd:' then return {'done', string.sub(v, 4 + #fp)} end
local rest = string.sub(v, 4 + #fp)
local sep = string.find(rest, ':', 1, true)
local claimed_until = tonumber(string.sub(rest, 1, sep - 1))
local state = string.sub(rest, sep + 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if claimed_until > now then return {'in_progress'} end
redis.call('SET', KEYS[1], 'u:' .. fp .. ':' .. (now + hold) .. ':' .. state, 'KEEPTTL')
return {'pending', state}
