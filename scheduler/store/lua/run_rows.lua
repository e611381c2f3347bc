-- A few fields of many runs in one call, for views over thousands of runs (the dashboard's
-- strips and timelines).
-- KEYS[1..] runs         run hashes
-- ARGV[1..] names        field names; the first must be present on every run, the last is
--                        free text
-- Reply: one string: a row per key (empty for a vanished run) separated by byte 30, fields
-- by byte 31 (those two bytes in the free-text field become spaces; a missing field is empty).
local rows = {}
local n = #ARGV
for i = runs, #KEYS do
  local v = redis.call('HMGET', KEYS[i], unpack(ARGV, names))
  if v[1] then
    for k = 1, n do v[k] = v[k] or '' end
    v[n] = (string.gsub(v[n], '[\30\31]', ' '))
    rows[#rows + 1] = table.concat(v, '\31')
  else
    rows[#rows + 1] = ''
  end
end
return table.concat(rows, '\30')
