-- requeue.lua (requeue_dead): make dead tasks waiting again, attempts reset, before their
-- dead letter is published back to the work queue.
-- KEYS: none.  ARGV: prefix, record ttl ms, then per task 4 values: task id, queue,
--   priority, body.
-- Returns per task the copy to publish.
local prefix, record_ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 4 do
  local task_id, queue = ARGV[i], ARGV[i + 1]
  local job = job_key(prefix, task_id)
  local copy = (tonumber(redis.call('HGET', job, 'c')) or 0) + 1
  if redis.call('EXISTS', job) == 0 then
    redis.call('HSET', job, 'k', '', 'kt', 0)
  end
  redis.call('HSET', job, 'q', queue, 's', 'w', 'a', 0, 'c', copy, 't', 0, 'r', 0,
    'p', ARGV[i + 2], 'b', ARGV[i + 3], 'due', 0)
  redis.call('HDEL', job, 'x', 'dr', 'dt')
  redis.call('PEXPIRE', job, record_ttl)
  hold_key(prefix, job, task_id, record_ttl)
  redis.call('SADD', prefix .. ':amqp:queues', queue)
  out[#out + 1] = copy
end
return out
