-- acquire_permit.lua: take a permit of a leased semaphore, on the server's clock.
-- KEYS: the semaphore (zset: holder -> ms its lease ends).
-- ARGV: limit, holder, lease ms.
-- Drops the permits whose lease ended (a dead worker's), then gives one to `holder` if
-- it holds one already (renewed) or fewer than `limit` are held. Returns 1, or 0.
local key = KEYS[1]
local limit, holder, lease = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, holder) == false and redis.call('ZCARD', key) >= limit then
  return 0
end
redis.call('ZADD', key, now + lease, holder)
redis.call('PEXPIRE', key, lease)
return 1
