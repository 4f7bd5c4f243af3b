-- settle: ends a lease by commit (spent), burn (the credential is dead) or
-- refund (the use goes back).
-- KEYS[1] the openid's book
-- ARGV[1] now (unix s), ARGV[2] lease id (8 bytes), ARGV[3] mode (1 commit, 2 burn, 3 refund)
-- Returns {result (1 spent, 2 burned, 3 refunded, 4 lapsed, 5 unknown lease), uses burned, events}
-- Keeps: a lease settles once; a second settle finds nothing and changes nothing.

local key, now, lease_id, mode = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local book, before, events = open(key, now)

local lease, at = nil, nil
for i, l in ipairs(book.leases) do
  if l.id == lease_id then lease, at = l, i break end
end

local result, burned = 5, 0
if lease ~= nil then
  table.remove(book.leases, at)
  if mode == 1 then
    push(events, EV_SPENT, lease.kind, 1, lease.expires)
    result = 1
  elseif mode == 3 then
    local outcome = return_use(book, lease, now, events)
    if outcome == 'refunded' then result = 3
    elseif outcome == 'burned' then result, burned = 2, 1
    else result = 4 end
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
    result = 2
  end
end

close(key, book, before, events)
return {result, burned, events}
