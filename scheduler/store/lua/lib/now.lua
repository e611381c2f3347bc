-- Redis server time in milliseconds, so every host agrees on leases and timestamps.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
