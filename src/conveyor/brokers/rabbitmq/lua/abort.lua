-- abort.lua: abort one task where the ledger holds it.
-- KEYS: none.  ARGV: prefix, record ttl ms, task id, the copy the caller read while
--   waiting (its result was built from that copy's body), result bytes ('' = none),
--   result ttl ms, the results' prefix.
-- Returns 'dequeued' (it was waiting: now aborted, result stored, key held as for an
-- ack; its message is dropped unrun when it surfaces), 'signalled' (running: marked, and
-- announced on <prefix>:aborts), 'finished' (dead), 'unknown' (no record, finished or
-- aborted already, or its publish failed), or 'changed' (it moved since the caller read it: read again).
local prefix, record_ttl, task_id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local job = job_key(prefix, task_id)
local f = redis.call('HMGET', job, 's', 'c', 'q', 'due')
local state = f[1]
if not state or state == 'f' or state == 'a' or state == 'u' then return 'unknown' end
if state == 'd' then return 'finished' end
if state == 'r' then
  redis.call('HSET', job, 'x', 1)
  redis.call('PUBLISH', prefix .. ':aborts', task_id)
  return 'signalled'
end
if f[2] ~= ARGV[4] then return 'changed' end
store_result(ARGV[7], task_id, ARGV[5], ARGV[6])
end_key(prefix, job, task_id)
workflow_done(prefix, job, task_id)
redis.call('HSET', job, 's', 'a')
redis.call('HDEL', job, 'b')
redis.call('ZREM', delayed_set(prefix, f[3]), task_id)
redis.call('PEXPIRE', job, math.max((tonumber(f[4]) or 0) - now_ms(), 0) + record_ttl)
return 'dequeued'
