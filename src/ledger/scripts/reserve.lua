-- reserve: takes one use of the oldest spendable credential under a lease.
-- KEYS[1] the openid's book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] lease id (8 bytes), ARGV[3] hold (s)
-- Returns {lease or {}, events}; lease = {id, deadline, expires, kind, key}
-- Keeps: a use is held by at most one lease; the same lease id asked twice
-- gets the same lease, so a retried call never takes a second use; the
-- deadline is on this server's clock, so no instance's clock can end a
-- lease early.

local key, now, lease_id, hold = KEYS[1], clock(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local book, before, events = open(key, now)

local lease = nil
for _, l in ipairs(book.leases) do
  if l.id == lease_id then lease = l break end
end
if lease == nil then
  for _, e in ipairs(book.entries) do
    if e.uses > 0 then
      e.uses = e.uses - 1
      lease = {id = lease_id, deadline = now + hold, expires = e.expires, kind = e.kind, key = e.key}
      book.leases[#book.leases + 1] = lease
      break
    end
  end
end

close(key, book, before, events)
if lease == nil then return {{}, events} end
return {{lease.id, lease.deadline, lease.expires, lease.kind, lease.key}, events}
