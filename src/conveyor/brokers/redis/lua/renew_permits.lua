-- renew_permits.lua: push the leases of permits still held, on the server's clock.
-- KEYS: the semaphore.  ARGV: lease ms, then holders.
-- A permit that is no longer held (its lease ended and it was dropped) is not taken
-- again: its place may be another holder's now. Returns nothing.
local key, lease = KEYS[1], tonumber(ARGV[1])
local due = now_ms() + lease
for i = 2, #ARGV do
  redis.call('ZADD', key, 'XX', due, ARGV[i])
end
if redis.call('EXISTS', key) == 1 then
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, tonumber(last[2]))
end
return 0
