-- grant add: adds accepted grants for one openid.
-- KEYS[1] the openid's grant book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] cap per template,
-- ARGV[3] retention (s), then pairs: template number, accepts ('L': a
-- long-term subscription)
-- Returns {grants held per template of the batch (GRANT_STANDING for a
-- subscription), events (GEV_* triples)}
-- Keeps: at most cap grants held or leased per template; accepts over it
-- are reported, not kept; a subscription absorbs one-time accepts.

local key, now, cap, retention = KEYS[1], clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local book, events = open(key, now)
local held_now = {}
for i = 4, #ARGV, 2 do
  local template, accepts = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if ARGV[i + 1] == 'L' then
    subscribe(book, template, events)
    accepts = 0
  elseif standing(book, template) then
    accepts = 0
  end
  local room = cap - held(book, template) - leased(book, template)
  if room < 0 then room = 0 end
  local kept = math.min(accepts, room)
  if kept > 0 then
    local e = entry(book, template)
    if e == nil then
      book.entries[#book.entries + 1] = {template = template, grants = kept}
    else
      e.grants = e.grants + kept
    end
    push(events, GEV_ACCEPTED, template, kept)
  end
  if accepts > kept then push(events, GEV_CAPPED, template, accepts - kept) end
  held_now[#held_now + 1] = held(book, template)
end
close(key, book, now, retention)
return {held_now, events}
