-- The packed book of one openid and the rules every ledger script shares.
-- A translation of src/ledger/book.rs: same steps, same order, same
-- tie-breaks (the contract and property tests compare the two).
-- Prepended to add.lua, reserve.lua, settle.lua and read.lua, after the
-- named codes (KIND_*, ADD_*, SETTLE_*, SETTLED_*, EV_*) that Rust defines
-- for both sides (src/ledger/codes.rs); defines no globals.
--
-- Stored form, one string per openid at KEYS[1] (all integers big-endian):
--   u8 version=2 | u16 lease count | leases | credentials (sorted)
--   lease:      u32 deadline | u32 expires | 8 bytes lease id | u8 meta | [u8 len] | id
--   credential: u32 expires  | u8 meta | [u8 len] | id
--   meta bits: 0-1 uses left, 2 prepay, 3 id is packed hex, 4 burned,
--   5 the id is 16 packed bytes (a WeChat formId) and has no length byte
-- A credential's key is one byte (1 packed hex, 0 verbatim) followed by the id.
-- Version 1 (a length byte before every id) is read as well, and rewritten
-- as version 2 by the next write.

local VERSION, PREPAY, HEX, BURNED, SIXTEEN = 2, 4, 8, 16, 32

local function uses_of(kind) if kind == KIND_PREPAY then return 3 end return 1 end

-- The one clock of every instance (docs/ledger.md): this server's, in whole
-- seconds. A non-empty `pinned` replaces it; only tests pin it, to move
-- time by hand.
local function clock(pinned)
  if pinned ~= nil and pinned ~= '' then return tonumber(pinned) end
  return tonumber(redis.call('TIME')[1])
end

local function split_key(key)
  local flags = 0
  if string.byte(key, 1) == 1 then flags = HEX end
  return flags, string.sub(key, 2)
end

-- The key stored after a meta byte at pos; returns it and the next pos.
local function read_key(blob, pos, meta)
  local flag, len = 0, 16
  if bit.band(meta, HEX) ~= 0 then flag = 1 end
  if bit.band(meta, SIXTEEN) == 0 then len, pos = struct.unpack('B', blob, pos) end
  return string.char(flag) .. string.sub(blob, pos, pos + len - 1), pos + len
end

-- A key as stored: its meta bits and the bytes after the meta byte.
local function write_key(key)
  local flags, body = split_key(key)
  if flags == HEX and #body == 16 then return flags + SIXTEEN, body end
  return flags, string.char(#body) .. body
end

local function decode(blob)
  local book = {leases = {}, entries = {}}
  if not blob then return book end
  local version, count, pos = struct.unpack('>BI2', blob)
  if version ~= VERSION and version ~= 1 then error('fl: unknown book version') end
  for i = 1, count do
    local deadline, expires, id, meta, key
    deadline, expires, id, meta, pos = struct.unpack('>I4I4c8B', blob, pos)
    key, pos = read_key(blob, pos, meta)
    local kind = KIND_FORM
    if bit.band(meta, PREPAY) ~= 0 then kind = KIND_PREPAY end
    book.leases[i] = {id = id, deadline = deadline, expires = expires, kind = kind, key = key}
  end
  local n = 0
  while pos <= #blob do
    local expires, meta, key
    expires, meta, pos = struct.unpack('>I4B', blob, pos)
    key, pos = read_key(blob, pos, meta)
    local kind = KIND_FORM
    if bit.band(meta, PREPAY) ~= 0 then kind = KIND_PREPAY end
    n = n + 1
    book.entries[n] = {expires = expires, kind = kind, uses = bit.band(meta, 3),
      burned = bit.band(meta, BURNED) ~= 0, key = key}
  end
  return book
end

local function encode(book)
  local parts = {struct.pack('>BI2', VERSION, #book.leases)}
  for _, l in ipairs(book.leases) do
    local flags, stored = write_key(l.key)
    if l.kind == KIND_PREPAY then flags = flags + PREPAY end
    parts[#parts + 1] = struct.pack('>I4I4c8B', l.deadline, l.expires, l.id, flags) .. stored
  end
  for _, e in ipairs(book.entries) do
    local flags, stored = write_key(e.key)
    local meta = flags + e.uses
    if e.kind == KIND_PREPAY then meta = meta + PREPAY end
    if e.burned then meta = meta + BURNED end
    parts[#parts + 1] = struct.pack('>I4B', e.expires, meta) .. stored
  end
  return table.concat(parts)
end

local function ends_at(book)
  local ends = nil
  for _, e in ipairs(book.entries) do
    if ends == nil or e.expires > ends then ends = e.expires end
  end
  for _, l in ipairs(book.leases) do
    local t = math.max(l.deadline, l.expires)
    if ends == nil or t > ends then ends = t end
  end
  return ends
end

local function reach(book)
  local last = nil
  for _, e in ipairs(book.entries) do
    if e.uses > 0 and (last == nil or e.expires > last) then last = e.expires end
  end
  return last
end

local function available(book)
  local sum = 0
  for _, e in ipairs(book.entries) do sum = sum + e.uses end
  return sum
end

local function find(book, key)
  for _, e in ipairs(book.entries) do
    if e.key == key then return e end
  end
  return nil
end

-- The credential a lease was taken from: id and expiry must both match, so
-- an id re-posted after its first incarnation expired is another credential.
local function leased_entry(book, lease)
  for _, e in ipairs(book.entries) do
    if e.key == lease.key and e.expires == lease.expires then return e end
  end
  return nil
end

local function leased_uses(book, entry)
  local n = 0
  for _, l in ipairs(book.leases) do
    if l.key == entry.key and l.expires == entry.expires then n = n + 1 end
  end
  return n
end

local function push(events, code, a, b, c)
  events[#events + 1] = code
  events[#events + 1] = a
  events[#events + 1] = b
  events[#events + 1] = c
end

local function forget_if_ended(book, now)
  local ends = ends_at(book)
  if ends == nil or ends <= now then
    book.leases = {}
    book.entries = {}
  end
end

-- Returns SETTLED_REFUNDED, SETTLED_BURNED (one use) or SETTLED_LAPSED.
local function return_use(book, lease, now, events)
  local e = leased_entry(book, lease)
  if e == nil or e.expires <= now then return SETTLED_LAPSED end
  if e.burned then
    push(events, EV_BURNED, lease.kind, 1, lease.expires)
    return SETTLED_BURNED
  end
  e.uses = e.uses + 1
  push(events, EV_REFUNDED, lease.kind, 1, lease.expires)
  return SETTLED_REFUNDED
end

local function housekeep(book, now, events)
  forget_if_ended(book, now)
  local live, stale = {}, {}
  for _, l in ipairs(book.leases) do
    if l.deadline <= now then stale[#stale + 1] = l else live[#live + 1] = l end
  end
  book.leases = live
  for _, l in ipairs(stale) do return_use(book, l, now, events) end
  local kept = {}
  for _, e in ipairs(book.entries) do
    if e.expires > now then kept[#kept + 1] = e end
  end
  book.entries = kept
end

-- Loads the book and applies housekeeping; returns book, reach before, events.
local function open(key, now)
  local book = decode(redis.call('GET', key))
  forget_if_ended(book, now)
  local before = reach(book)
  local events = {}
  housekeep(book, now, events)
  return book, before, events
end

-- Emits the reach event and stores the book until its last instant.
local function close(key, book, before, events)
  local after = reach(book)
  if before ~= after then push(events, EV_REACH, before or -1, after or -1, 0) end
  local ends = ends_at(book)
  if ends == nil then
    redis.call('DEL', key)
  else
    redis.call('SET', key, encode(book), 'EXAT', ends)
  end
end

