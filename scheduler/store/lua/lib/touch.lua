-- Records that Redis answered now; notes when it had not been reachable for a while, so
-- that leases are not judged expired by a clock that ran while nobody could renew them.
-- A value there that is not a number (a damaged clock) counts as never.
local function touch(clock_key, gap_ms)
  local last = tonumber(redis.call('HGET', clock_key, 'last') or '0') or 0
  if last > 0 and now - last > gap_ms then redis.call('HSET', clock_key, 'resumed', now) end
  redis.call('HSET', clock_key, 'last', now)
end
