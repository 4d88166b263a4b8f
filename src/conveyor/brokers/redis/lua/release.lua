-- release.lua: give a message back at once, uncharged (attempts - 1): acknowledge and
-- delete the entry and re-add the message to the queue's front stream; only if still owned.
-- KEYS: tag.  ARGV: group, consumer, then per message 4 values: stream, entry id, task id, body.
-- Returns 1 per message on success, 0 if the lease was lost.
local tag, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 4 do
  local stream, id, task_id, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if owned(stream, group, consumer, id) then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    local job = tag .. ':job:' .. task_id
    local attempts = redis.call('HINCRBY', job, 'a', -1)
    if attempts < 0 then redis.call('HSET', job, 'a', 0) end
    local e = enqueue_front(tag, group, task_id, body)
    redis.call('HSET', job, 'e', e, 's', 'queued')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
