-- register.lua (publish): admit each message to the ledger before it is published, so an
-- idempotency key, or a task id still waiting or running, admits one message.
-- KEYS: none.  ARGV: prefix, record ttl ms, the results' prefix, then per message 8
--   values: task id, queue,
--   body, priority, due ms (0: now), key ('' = none), key ttl ms, reused (1: the producer
--   chose the id; forget the result and progress an earlier run left).
-- Returns per message {the task id that stands for it, copy to publish (0: publish
-- nothing)}. A record lives until due + record ttl: one whose publish never happened (the
-- producer died between the two steps) frees its key then.
local prefix, record_ttl, results = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {}
for i = 4, #ARGV, 8 do
  local task_id, queue, body, prio = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local due, key, key_ttl, reused = tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local job = job_key(prefix, task_id)
  local owner = false
  if key ~= '' then owner = redis.call('GET', idem_key(prefix, key)) end
  local state = redis.call('HGET', job, 's')
  if owner then
    out[#out + 1] = {owner, 0}
  elseif state == 'w' or state == 'r' then
    out[#out + 1] = {task_id, 0}
  else
    local copy = (tonumber(redis.call('HGET', job, 'c')) or 0) + 1
    redis.call('DEL', job)
    redis.call('HSET', job, 'q', queue, 's', 'w', 'a', 0, 'c', copy, 't', 0, 'r', 0,
      'p', prio, 'k', key, 'kt', key_ttl, 'b', body, 'due', due)
    local ttl = math.max(due - now, 0) + record_ttl
    redis.call('PEXPIRE', job, ttl)
    hold_key(prefix, job, task_id, ttl)
    if due > now then redis.call('ZADD', delayed_set(prefix, queue), due, task_id) end
    redis.call('SADD', prefix .. ':amqp:queues', queue)
    if reused == '1' then
      redis.call('DEL', results .. ':result:' .. task_id, results .. ':progress:' .. task_id)
    end
    out[#out + 1] = {task_id, copy}
  end
end
return out
