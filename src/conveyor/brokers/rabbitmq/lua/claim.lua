-- claim.lua (fetch): start an attempt for each message RabbitMQ delivered, or say it must
-- not run.
-- KEYS: none.  ARGV: prefix, record ttl ms, then per message 5 values: task id, queue,
--   copy (0: not written by Conveyor), attempts before this delivery (from the message's
--   headers: used only for a task the ledger does not know), priority.
-- Returns per message {run (1) or drop (0), attempt, crashes, abort mark, lease token,
-- the live copy's number}.
-- Dropped: a stale copy (a retry or requeue published a newer one), or a task that is
-- finished, dead or was aborted while it waited: its message is acknowledged unrun.
-- A message the ledger does not know (published by hand, or its record expired) starts
-- as a new task. A task whose record still says running was left unsettled by a worker
-- that died (RabbitMQ redelivered it): one more crash in a row. A copy whose publish was
-- reported failed (unregister.lua) marks its record 'uc': it landed, so the producer's
-- retry of that publish is not a second run (register_one).
local prefix, record_ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 5 do
  local task_id, queue, copy = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local job = job_key(prefix, task_id)
  local f = redis.call('HMGET', job, 's', 'a', 'c', 'r', 'x', 't', 'q')
  local state = f[1]
  if not state then
    local attempt = tonumber(ARGV[i + 3]) + 1
    redis.call('HSET', job, 'q', queue, 's', 'r', 'a', attempt, 'c', copy, 't', 1, 'r', 0,
      'p', ARGV[i + 4], 'k', '', 'kt', 0)
    redis.call('PEXPIRE', job, record_ttl)
    redis.call('SADD', running_set(prefix, queue), task_id)
    out[#out + 1] = {1, attempt, 0, 0, 1, copy}
  else
    local current = tonumber(f[3]) or 0
    if (copy ~= 0 and copy < current) or state == 'f' or state == 'a' or state == 'd' then
      out[#out + 1] = {0, 0, 0, 0, 0, 0}
    else
      local crashes = tonumber(f[4]) or 0
      if state == 'r' then crashes = crashes + 1 end
      local attempt = (tonumber(f[2]) or 0) + 1
      local token = (tonumber(f[6]) or 0) + 1
      local live = math.max(copy, current)
      redis.call('HSET', job, 's', 'r', 'a', attempt, 't', token, 'r', crashes, 'c', live)
      if state == 'u' then redis.call('HSET', job, 'uc', 1) end  -- it landed after all
      redis.call('HDEL', job, 'b')
      redis.call('ZREM', delayed_set(prefix, f[7]), task_id)
      redis.call('SADD', running_set(prefix, f[7]), task_id)
      redis.call('PEXPIRE', job, record_ttl)
      hold_key(prefix, job, task_id, record_ttl)
      out[#out + 1] = {1, attempt, crashes, f[5] and 1 or 0, token, live}
    end
  end
end
return out
