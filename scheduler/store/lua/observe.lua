-- A reader that found a run whose lease ran out learns whether a reaper would judge it now.
-- It writes a short-lived key of its own first: while Redis refuses writes (out of memory, a
-- read-only replica) no worker can renew a lease, and this fails. When nobody renewed or
-- reaped anything for longer than `gap_ms` (Redis was unreachable, or refused writes, or
-- every process is gone), it notes that Redis answers again, once per silence, as the
-- renewers' touch does, so that live workers get one lease from now to renew first; it
-- leaves `last` to the renewers, so that its own reads never make a silence look over.
-- uses: now
-- KEYS[1] clock          the clock hash
-- KEYS[2] probe          the reader's short-lived key
-- ARGV[1] gap_ms         a silence longer than this is an outage
-- Returns {now, resumed} in ms (resumed 0 when Redis never came back after an outage).
redis.call('SET', probe, now, 'PX', 1000)
local last = tonumber(redis.call('HGET', clock, 'last') or '0') or 0
local resumed = tonumber(redis.call('HGET', clock, 'resumed') or '0') or 0
if last > 0 and now - last > tonumber(gap_ms) and resumed <= last then
  redis.call('HSET', clock, 'resumed', now)
  resumed = now
end
return {now, resumed}
