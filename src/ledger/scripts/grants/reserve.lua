-- grant reserve: takes one grant of a template under a lease.
-- KEYS[1] the openid's grant book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] retention (s),
-- ARGV[3] template number, ARGV[4] lease id (8 bytes), ARGV[5] hold (s),
-- ARGV[6] '1' when the account's list says the template is long-term
-- Returns {lease or {}, grants of the template left (GRANT_STANDING for a
-- long-term subscription), events}; lease = {id, deadline, template}
-- Keeps: a grant is held by at most one lease; the same lease id asked twice
-- gets the same lease; a long-term subscription is leased, never spent, and
-- one-time grants of a long-term template become its subscription.

local key, now, retention = KEYS[1], clock(ARGV[1]), tonumber(ARGV[2])
local template, lease_id, hold = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local book, events = open(key, now)
local lease = nil
for _, l in ipairs(book.leases) do
  if l.id == lease_id then lease = l break end
end
if lease == nil then
  if ARGV[6] == '1' and held(book, template) > 0 then subscribe(book, template, events) end
  local e = entry(book, template)
  if e ~= nil and e.grants > 0 then
    if e.grants ~= GRANT_STANDING then e.grants = e.grants - 1 end
    lease = {id = lease_id, deadline = now + hold, template = template}
    book.leases[#book.leases + 1] = lease
  end
end
local left = held(book, template)
close(key, book, now, retention)
if lease == nil then return {{}, left, events} end
return {{lease.id, lease.deadline, lease.template}, left, events}
