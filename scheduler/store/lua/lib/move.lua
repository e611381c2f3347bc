-- Moves a run between status indexes: (run id, from index key, to index key, score).
local function move(id, from, to, score)
  redis.call('ZREM', from, id)
  redis.call('ZADD', to, score, id)
end
