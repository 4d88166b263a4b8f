-- settle.lua: end or park attempts, each only if its lease token is still the current one
-- (a worker whose lease was taken over changes nothing: fencing).
-- KEYS: none.  ARGV: prefix, record ttl ms, finished ttl ms, the results' prefix, then per
--   settlement 8 values and a workflow follow:
--   task id, token, kind (ack, retry, defer, dead, release), copy (retry, defer: the number
--   of the copy just published), body (retry, defer, release: kept for abort), delay ms
--   (retry, defer) or reason
--   (dead), result bytes ('' = none), result ttl ms (<= 0: no expiry), the follow (a
--   count, then that many values; 0 = none: workflows.lua).
-- Returns {per settlement 1 applied or 0 refused, the messages its follows registered
--   (6 values each, see outbox_publisher): the caller publishes them to RabbitMQ}.
-- An ack or dead letter applies its follow in this same step: what comes next is
-- registered (and in the outbox), its group barrier joined, its workflow ended.
-- ack: the record stays finished for max(key ttl, finished ttl), so a redelivery of a
--   message whose AMQP ack was lost is dropped instead of run again.
-- dead: the record stays until the dead letter is requeued or deleted.
-- retry: waiting for the new copy; the attempt stays counted, the row of crashes ends.
-- defer (Retry(charge=False), a flow-control deferral): a retry whose attempt is given
--   back, as a release gives it; the new copy waits in the delay cascade for its time.
-- release: waiting in its old place, the attempt taken back.
local prefix, record_ttl, done_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local results = ARGV[4]
local now = now_ms()
local out, published = {}, {}
local publish = outbox_publisher(prefix, record_ttl, results, now, published)
local store = function(t, data, ttl) store_result(results, t, data, ttl) end
local i = 5
while i <= #ARGV do
  local task_id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local follow, after = read_follow(ARGV, i + 8)
  local job = job_key(prefix, task_id)
  local f = redis.call('HMGET', job, 's', 't', 'q', 'kt', 'a')
  if f[1] ~= 'r' or f[2] ~= token then
    out[#out + 1] = 0
  else
    redis.call('SREM', running_set(prefix, f[3]), task_id)
    if kind == 'ack' or kind == 'dead' then
      store_result(results, task_id, ARGV[i + 6], ARGV[i + 7])
      end_key(prefix, job, task_id)
      workflow_done(prefix, job, task_id)
      redis.call('HDEL', job, 'b', 'x')
      if kind == 'ack' then
        redis.call('HSET', job, 's', 'f')
        redis.call('PEXPIRE', job, math.max(tonumber(f[4]) or 0, done_ttl))
      else
        redis.call('HSET', job, 's', 'd', 'dr', ARGV[i + 5], 'dt', now)
        redis.call('PERSIST', job)
      end
      if follow then apply_follow(prefix, follow, now, publish, store) end
    elseif kind == 'retry' or kind == 'defer' then
      local delay = tonumber(ARGV[i + 5])
      local due = now + delay
      redis.call('HSET', job, 's', 'w', 'r', 0, 'c', ARGV[i + 3], 'b', ARGV[i + 4], 'due', due)
      if kind == 'defer' then
        redis.call('HSET', job, 'a', math.max((tonumber(f[5]) or 1) - 1, 0))
      end
      if delay > 0 then redis.call('ZADD', delayed_set(prefix, f[3]), due, task_id) end
      redis.call('PEXPIRE', job, delay + record_ttl)
      hold_key(prefix, job, task_id, delay + record_ttl)
    else
      redis.call('HSET', job, 's', 'w', 'a', math.max((tonumber(f[5]) or 1) - 1, 0),
        'b', ARGV[i + 4])
      redis.call('PEXPIRE', job, record_ttl)
    end
    out[#out + 1] = 1
  end
  i = after
end
return {out, published}
