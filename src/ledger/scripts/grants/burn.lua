-- grant burn: drops every grant of a template (the user turned it off).
-- KEYS[1] the openid's grant book
-- ARGV[1] pinned clock ('' = the server's), ARGV[2] retention (s), ARGV[3] template number
-- Returns {events}
-- Keeps: nothing of the template is left, not even in a lease.

local key, now, retention, template = KEYS[1], clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local book, events = open(key, now)
burn_all(book, template, events)
close(key, book, now, retention)
return {events}
