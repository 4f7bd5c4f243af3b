-- grant read: the openid's grant book and this server's clock, changing nothing.
-- KEYS[1] the openid's grant book
-- ARGV[1] pinned clock ('' = the server's)
-- Returns {now, book or false}

return {clock(ARGV[1]), redis.call('GET', KEYS[1])}
