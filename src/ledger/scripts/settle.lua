-- settle: ends a lease by commit (spent), burn (the credential is dead) or
-- refund (the use goes back), or holds it until the credential expires.
-- KEYS[1] the openid's book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] lease id (8 bytes), ARGV[3] mode (SETTLE_*)
-- Returns {result (SETTLED_*), uses burned, events}
-- Keeps: a lease settles once; a second settle finds nothing and changes
-- nothing; a held lease's use goes to no other send.

local key, now, lease_id, mode = KEYS[1], clock(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local book, before, events = open(key, now)

local lease, at = nil, nil
for i, l in ipairs(book.leases) do
  if l.id == lease_id then lease, at = l, i break end
end

local result, burned = SETTLED_UNKNOWN_LEASE, 0
if lease ~= nil and mode == SETTLE_HOLD then
  lease.deadline = math.max(lease.deadline, lease.expires)
  result = SETTLED_HELD
elseif lease ~= nil then
  table.remove(book.leases, at)
  if mode == SETTLE_COMMIT then
    push(events, EV_SPENT, lease.kind, 1, lease.expires)
    result = SETTLED_SPENT
  elseif mode == SETTLE_REFUND then
    result = return_use(book, lease, now, events)
    if result == SETTLED_BURNED then burned = 1 end
  else
    local rest = 0
    local e = leased_entry(book, lease)
    if e ~= nil and not e.burned then
      rest = e.uses
      e.uses = 0
      e.burned = true
    end
    burned = 1 + rest
    push(events, EV_BURNED, lease.kind, burned, lease.expires)
    result = SETTLED_BURNED
  end
end

close(key, book, before, events)
return {result, burned, events}
