-- grant settle: ends a grant lease by commit (spent), refund (given back)
-- or burn (every grant of its template dropped), or holds it. On a
-- long-term subscription a commit spends nothing, a refund gives nothing
-- back and a burn ends the subscription.
-- KEYS[1] the openid's grant book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] retention (s),
-- ARGV[3] lease id (8 bytes), ARGV[4] mode (SETTLE_*)
-- Returns {result (SETTLED_*), grants burned, events}
-- Keeps: a lease settles once; a second settle finds nothing.

local key, now, retention = KEYS[1], clock(ARGV[1]), tonumber(ARGV[2])
local lease_id, mode = ARGV[3], tonumber(ARGV[4])
local book, events = open(key, now)
local lease, at = nil, nil
for i, l in ipairs(book.leases) do
  if l.id == lease_id then lease, at = l, i break end
end
local result, burned = SETTLED_UNKNOWN_LEASE, 0
if lease ~= nil and mode == SETTLE_HOLD then
  lease.deadline = math.max(lease.deadline, now + retention)
  result = SETTLED_HELD
elseif lease ~= nil then
  table.remove(book.leases, at)
  local standing_now = standing(book, lease.template)
  if mode == SETTLE_COMMIT and standing_now then
    push(events, GEV_SENT_LONG_TERM, lease.template, 1)
    result = SETTLED_SPENT
  elseif mode == SETTLE_COMMIT then
    push(events, GEV_SPENT, lease.template, 1)
    result = SETTLED_SPENT
  elseif mode == SETTLE_BURN and standing_now then
    burn_all(book, lease.template, events)
    result = SETTLED_BURNED
  elseif mode == SETTLE_REFUND then
    give_back(book, lease.template, events)
    result = SETTLED_REFUNDED
  else
    burned = 1 + burn_all(book, lease.template, {})
    push(events, GEV_BURNED, lease.template, burned)
    result = SETTLED_BURNED
  end
  tidy(book)
end
close(key, book, now, retention)
return {result, burned, events}
