-- Put a run that a worker moved into its inbox but will not claim (the worker died, or gives
-- it back) at the head of its queue.
-- KEYS[1] inbox          the worker's inbox list
-- KEYS[2] queue          its queue list
-- KEYS[3] run            the run hash
-- ARGV[1] run_id
local removed = redis.call('LREM', inbox, 1, run_id)
if removed == 0 then return 0 end
if redis.call('HGET', run, 'status') ~= 'queued' then return 0 end
redis.call('LPUSH', queue, run_id)
return 1
