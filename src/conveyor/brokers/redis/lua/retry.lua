-- retry.lua: acknowledge and delete the entry and park the message in the delayed set,
-- keeping its attempt count (less `uncharge`: 1 for a flow-control deferral, which gives
-- the attempt back), only if this consumer still owns it.
-- KEYS: tag.  ARGV: group, consumer, key prefix, then per message 6 values:
--   stream, entry id, task id, delay ms, body, uncharge.
-- Returns 1 per message on success, 0 if the lease was lost. A retry that becomes the
-- queue's earliest delayed message is announced (announce_due).
local tag, group, consumer, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local out = {}
for i = 4, #ARGV, 6 do
  local stream, id, task_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if owned(stream, group, consumer, id) then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    local job = tag .. ':job:' .. task_id
    redis.call('HSET', job, 'b', ARGV[i + 4], 's', 'queued')
    redis.call('HDEL', job, 'e', 'r')
    if ARGV[i + 5] == '1' then
      local attempts = redis.call('HINCRBY', job, 'a', -1)
      if attempts < 0 then redis.call('HSET', job, 'a', 0) end
    end
    local due = now + tonumber(ARGV[i + 3])
    redis.call('ZADD', tag .. ':delayed', due, task_id)
    announce_due(tag, prefix, task_id, due)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
