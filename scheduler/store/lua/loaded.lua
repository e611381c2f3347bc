-- A scheduler or worker says which job definitions it runs, for a while (it says it again
-- before that runs out); entries whose time ran out are forgotten here.
-- uses: now
-- KEYS[1] loaded         the zset of processes, scored by when their entry runs out
-- KEYS[2] info_hash      this process's hash
-- ARGV[1] process        the process's id ("scheduler:<host>:<pid>", "worker:<id>")
-- ARGV[2] ttl_ms
-- ARGV[3..] info         field, value pairs
local ttl = tonumber(ttl_ms)
redis.call('ZREMRANGEBYSCORE', loaded, '-inf', now)
redis.call('DEL', info_hash)
if #ARGV >= info then
  redis.call('HSET', info_hash, unpack(ARGV, info))
  redis.call('PEXPIRE', info_hash, ttl)
end
redis.call('ZADD', loaded, now + ttl, process)
return 1
