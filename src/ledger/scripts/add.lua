-- add: stores a batch of credentials for one openid.
-- KEYS[1] the openid's book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] cap of live credentials,
-- ARGV[3] lifetime (validity minus safety margin, s), ARGV[4] expiry granularity (s),
-- then per item: kind, stored key, collected_at (unix s, '' = now)
-- Returns {statuses (ADD_*), evicted, available, events}
-- Keeps: an id is stored once while remembered; at most cap live credentials,
-- the soonest-expiring unleased ones evicted first; expiries follow from this
-- server's clock (a collected_at in the future counts as now).

local key, now, cap = KEYS[1], clock(ARGV[1]), tonumber(ARGV[2])
local lifetime, granularity = tonumber(ARGV[3]), tonumber(ARGV[4])
local book, before, events = open(key, now)

local statuses = {}
for i = 5, #ARGV, 3 do
  local kind, k = tonumber(ARGV[i]), ARGV[i + 1]
  local collected = now
  if ARGV[i + 2] ~= '' then collected = math.min(tonumber(ARGV[i + 2]), now) end
  local expires = math.floor((collected + lifetime) / granularity) * granularity
  local status
  if expires <= now then
    status = ADD_EXPIRED
  elseif find(book, k) then
    status = ADD_DUPLICATE
  else
    local entry = {expires = expires, kind = kind, uses = uses_of(kind), burned = false, key = k}
    local at = #book.entries + 1
    for j, e in ipairs(book.entries) do
      -- After every credential that expires no later: ties stay in
      -- collection order, as book.rs inserts them.
      if e.expires > expires then
        at = j
        break
      end
    end
    table.insert(book.entries, at, entry)
    push(events, EV_COLLECTED, kind, entry.uses, expires)
    status = ADD_ACCEPTED
  end
  statuses[#statuses + 1] = status
end

-- Evict the soonest-expiring live credentials no lease holds.
local live = 0
for _, e in ipairs(book.entries) do
  if e.uses > 0 or leased_uses(book, e) > 0 then live = live + 1 end
end
local excess, evicted, i = live - cap, 0, 1
while excess > 0 and i <= #book.entries do
  local e = book.entries[i]
  if e.uses > 0 and leased_uses(book, e) == 0 then
    push(events, EV_EVICTED, e.kind, e.uses, e.expires)
    table.remove(book.entries, i)
    excess, evicted = excess - 1, evicted + 1
  else
    i = i + 1
  end
end

-- Forget the soonest-expiring tombstones beyond cap.
local tombstones = 0
for _, e in ipairs(book.entries) do
  if e.uses == 0 and leased_uses(book, e) == 0 then tombstones = tombstones + 1 end
end
excess, i = tombstones - cap, 1
while excess > 0 and i <= #book.entries do
  local e = book.entries[i]
  if e.uses == 0 and leased_uses(book, e) == 0 then
    table.remove(book.entries, i)
    excess = excess - 1
  else
    i = i + 1
  end
end

local sends = available(book)
close(key, book, before, events)
return {statuses, evicted, sends, events}
