-- A sorted-set score from a stored value: a value that is not a number (a damaged record)
-- sorts first rather than failing the script.
local function score_of(v)
  local n = tonumber(v)
  if n == nil or n ~= n then return 0 end
  return n
end
-- Moves a run between status indexes: (run id, from index key, to index key, score).
local function move(id, from, to, score)
  redis.call('ZREM', from, id)
  redis.call('ZADD', to, score_of(score), id)
end
