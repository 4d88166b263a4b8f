-- dead_letter.lua: move the message, with its raw bytes and reason, to the queue's DLQ
-- stream, store its result, then acknowledge and delete the entry, and apply its workflow
-- follow (workflows.lua); only if still owned.
-- KEYS: tag.  ARGV: group, consumer, prefix, then per message 7 values and a follow:
--   stream, entry id, task id, body, reason, result bytes ('' = none), result ttl ms, the
--   follow (a count, then that many values; 0 = none).
-- Returns 1 per message on success, 0 if the lease was lost.
local tag, group, consumer, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local out = {}
local i = 4
while i <= #ARGV do
  local stream, id, task_id, body, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local follow, after = read_follow(ARGV, i + 7)
  if owned(stream, group, consumer, id) then
    local job = tag .. ':job:' .. task_id
    local attempts = redis.call('HGET', job, 'a') or '0'
    local d = redis.call('XADD', tag .. ':dlq', '*', 'i', task_id, 'b', body, 'r', reason, 'a', attempts, 't', now)
    store_result(prefix, task_id, ARGV[i + 5], ARGV[i + 6])
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    release_key(tag, job, prefix)
    redis.call('HSET', job, 's', 'dead', 'd', d)
    redis.call('HDEL', job, 'e', 'b')
    if follow then
      apply_follow(prefix, follow, now, stream_publisher(prefix, group, now),
        function(t, data, ttl) store_result(prefix, t, data, ttl) end)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = after
end
return out
