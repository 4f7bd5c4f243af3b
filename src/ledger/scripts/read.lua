-- read: the openid's book and this server's clock, changing nothing.
-- KEYS[1] the openid's book
-- ARGV[1] pinned clock ('' = the server's)
-- Returns {now, book or false}
-- Keeps: a read applies the book rules at the same clock as every write.

return {clock(ARGV[1]), redis.call('GET', KEYS[1])}
