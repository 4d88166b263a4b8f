-- republish.lua (reap): a workflow's message a settlement registered, whose publish was
-- never confirmed (its worker died between the script and RabbitMQ), is sent again.
-- KEYS: none.  ARGV: prefix, cutoff ms (outbox entries older than it), limit.
-- An entry whose record still waits with that copy gets a new copy (the old one, if
-- RabbitMQ has it after all, is then stale and dropped when it surfaces) and a new entry;
-- any other entry (claimed, ended, aborted, or a later copy published) just leaves.
-- Returns the messages to publish (6 values each, see outbox_publisher in lib.lua).
local prefix, cutoff, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local outbox = prefix .. ':amqp:outbox'
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', outbox, '-inf', cutoff, 'LIMIT', 0, limit)) do
  local colon = string.find(member, ':', 1, true)
  local copy, task_id = string.sub(member, 1, colon - 1), string.sub(member, colon + 1)
  redis.call('ZREM', outbox, member)
  local job = job_key(prefix, task_id)
  local f = redis.call('HMGET', job, 's', 'c', 'q', 'b', 'p', 'due')
  if f[1] == 'w' and f[2] == copy and f[4] then
    local next_copy = tonumber(copy) + 1
    redis.call('HSET', job, 'c', next_copy)
    redis.call('ZADD', outbox, now, next_copy .. ':' .. task_id)
    for _, v in ipairs({task_id, next_copy, f[3], f[4], f[5] or '0', f[6] or '0'}) do
      out[#out + 1] = v
    end
  end
end
return out
