-- Move a retry whose backoff has passed from the delayed set into its queue.
-- uses: now
-- KEYS[1] delayed        the delayed zset
-- KEYS[2] queue          its queue list
-- KEYS[3] run            the run hash
-- ARGV[1] run_id
local due = redis.call('ZSCORE', delayed, run_id)
if not due or tonumber(due) > now then return 0 end
redis.call('ZREM', delayed, run_id)
if redis.call('HGET', run, 'status') ~= 'queued' then return 0 end
redis.call('RPUSH', queue, run_id)
return 1
