-- The ids of each job's newest runs in a fire-time window, one string per job (ids joined
-- by newlines, newest first): thousands of ids cost one reply, not thousands.
-- KEYS[1..] job_indexes  idx:job of each job
-- ARGV[1] high           highest score ('+inf')
-- ARGV[2] low            lowest score ('-inf')
-- ARGV[3] count          ids per job
local out = {}
for i = job_indexes, #KEYS do
  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[i], high, low, 'LIMIT', 0, tonumber(count))
  out[#out + 1] = table.concat(ids, '\n')
end
return out
