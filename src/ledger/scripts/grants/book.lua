-- The packed grant book of one openid and the rules every grant script
-- shares. A translation of src/ledger/grants/book.rs: same steps, same
-- order (the contract and property tests compare the two). Prepended to the
-- grant scripts after the named codes of src/ledger/codes.rs; defines no
-- globals.
--
-- Stored form, one string per openid at KEYS[1] (integers big-endian):
--   u8 version=1 | u32 kept until | u16 lease count | leases | entries
--   lease: u32 deadline | 8 bytes lease id | u16 template
--   entry: u16 template | u16 grants (GRANT_STANDING: a long-term
--          subscription, which sends lease without spending)
-- Templates are numbers from the deployment's template dictionary.

local GRANT_VERSION = 1

-- The one clock of every instance: this server's, unless a test pinned it.
local function clock(pinned)
  if pinned ~= nil and pinned ~= '' then return tonumber(pinned) end
  return tonumber(redis.call('TIME')[1])
end

local function decode(blob, now)
  local book = {leases = {}, entries = {}}
  if not blob then return book end
  local version, kept_until, count, pos = struct.unpack('>BI4I2', blob)
  if version ~= GRANT_VERSION then error('fl: unknown grant book version') end
  if kept_until <= now then return book end
  for i = 1, count do
    local deadline, id, template
    deadline, id, template, pos = struct.unpack('>I4c8I2', blob, pos)
    book.leases[i] = {id = id, deadline = deadline, template = template}
  end
  local n = 0
  while pos <= #blob do
    local template, grants
    template, grants, pos = struct.unpack('>I2I2', blob, pos)
    n = n + 1
    book.entries[n] = {template = template, grants = grants}
  end
  return book
end

local function push(events, code, template, grants)
  events[#events + 1] = code
  events[#events + 1] = template
  events[#events + 1] = grants
end

local function entry(book, template)
  for _, e in ipairs(book.entries) do
    if e.template == template then return e end
  end
  return nil
end

local function held(book, template)
  local e = entry(book, template)
  if e == nil then return 0 end
  return e.grants
end

local function leased(book, template)
  local n = 0
  for _, l in ipairs(book.leases) do
    if l.template == template then n = n + 1 end
  end
  return n
end

local function tidy(book)
  local kept = {}
  for _, e in ipairs(book.entries) do
    if e.grants > 0 or leased(book, e.template) > 0 then kept[#kept + 1] = e end
  end
  book.entries = kept
end

local function standing(book, template)
  return held(book, template) == GRANT_STANDING
end

-- A lease's grant back; nothing for a long-term subscription.
local function give_back(book, template, events)
  local e = entry(book, template)
  if e == nil then
    book.entries[#book.entries + 1] = {template = template, grants = 1}
  elseif e.grants == GRANT_STANDING then
    return
  else
    e.grants = e.grants + 1
  end
  push(events, GEV_REFUNDED, template, 1)
end

-- Makes a template a long-term subscription, absorbing its one-time grants
-- (held and leased: its leases settle as the subscription's).
local function subscribe(book, template, events)
  local e = entry(book, template)
  local absorbed = leased(book, template)
  if e == nil then
    book.entries[#book.entries + 1] = {template = template, grants = GRANT_STANDING}
  elseif e.grants == GRANT_STANDING then
    return
  else
    absorbed, e.grants = absorbed + e.grants, GRANT_STANDING
  end
  push(events, GEV_SUBSCRIBED, template, absorbed)
end

local function housekeep(book, now, events)
  local live, stale = {}, {}
  for _, l in ipairs(book.leases) do
    if l.deadline <= now then stale[#stale + 1] = l else live[#live + 1] = l end
  end
  book.leases = live
  for _, l in ipairs(stale) do give_back(book, l.template, events) end
end

-- Drops every grant of a template (or ends its long-term subscription) and
-- cancels its leases; returns how many grants went.
local function burn_all(book, template, events)
  if standing(book, template) then
    local kept, live = {}, {}
    for _, e in ipairs(book.entries) do
      if e.template ~= template then kept[#kept + 1] = e end
    end
    for _, l in ipairs(book.leases) do
      if l.template ~= template then live[#live + 1] = l end
    end
    book.entries, book.leases = kept, live
    push(events, GEV_ENDED, template, 0)
    return 0
  end
  local e = entry(book, template)
  local burned = 0
  if e ~= nil then burned, e.grants = e.grants, 0 end
  local live = {}
  for _, l in ipairs(book.leases) do
    if l.template == template then burned = burned + 1 else live[#live + 1] = l end
  end
  book.leases = live
  if burned > 0 then push(events, GEV_BURNED, template, burned) end
  tidy(book)
  return burned
end

-- Loads the book as of now, lapsed leases given back.
local function open(key, now)
  local book = decode(redis.call('GET', key), now)
  local events = {}
  housekeep(book, now, events)
  return book, events
end

-- Stores the book, kept `retention` seconds (and past its last lease).
local function close(key, book, now, retention)
  if #book.entries == 0 and #book.leases == 0 then
    redis.call('DEL', key)
    return
  end
  local until_ = now + retention
  for _, l in ipairs(book.leases) do
    if l.deadline > until_ then until_ = l.deadline end
  end
  local parts = {struct.pack('>BI4I2', GRANT_VERSION, until_, #book.leases)}
  for _, l in ipairs(book.leases) do
    parts[#parts + 1] = struct.pack('>I4c8I2', l.deadline, l.id, l.template)
  end
  for _, e in ipairs(book.entries) do
    parts[#parts + 1] = struct.pack('>I2I2', e.template, e.grants)
  end
  redis.call('SET', key, table.concat(parts), 'EXAT', until_)
end

