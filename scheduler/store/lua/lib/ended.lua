-- Appends a run that reached a final status to the feed the scheduler reads for metrics and
-- alerts; capped, so it cannot grow without bound when no scheduler reads it.
local function ended(feed_key, id)
  redis.call('RPUSH', feed_key, id)
  redis.call('LTRIM', feed_key, -10000, -1)
end
