-- retry.lua: acknowledge and delete the entry and park the message in the delayed set,
-- keeping its attempt count, only if this consumer still owns it.
-- KEYS: tag.  ARGV: group, consumer, then per message 5 values:
--   stream, entry id, task id, delay ms, body.
-- Returns 1 per message on success, 0 if the lease was lost.
local tag, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV, 5 do
  local stream, id, task_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if owned(stream, group, consumer, id) then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    local job = tag .. ':job:' .. task_id
    redis.call('HSET', job, 'b', ARGV[i + 4], 's', 'queued')
    redis.call('HDEL', job, 'e', 'r')
    redis.call('ZADD', tag .. ':delayed', now + tonumber(ARGV[i + 3]), task_id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
