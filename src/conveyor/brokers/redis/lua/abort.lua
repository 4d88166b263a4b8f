-- abort.lua: abort one task. A message that is queued, delayed or waiting for a retry is
-- removed and its result stored, so it never runs. A running one, or one that a blocking
-- read delivered and start.lua has not started yet, gets the abort mark x=1 on its job and
-- its id is published on the aborts channel for its worker. The mark stays with the job
-- until it ends: a later start (after a reap, release or retry) reports it, and the worker
-- ends that attempt as aborted without running it.
-- The caller reads the body first (the result is built from it); the script re-checks that
-- the message is still where the caller read it, so nothing is decided on a stale read.
-- KEYS: tag.  ARGV: group, prefix, task id, the entry id the body was read from ('' = it
--   was in the delayed set), result bytes ('' = none), result ttl ms (<= 0: no expiry).
-- Returns 'dequeued', 'signalled', 'finished' (dead-lettered), 'unknown' (no such job), or
-- 'changed' when the message moved after the caller's read (the caller reads again).
local tag, group, prefix, task_id, expected = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job = tag .. ':job:' .. task_id
local f = redis.call('HMGET', job, 's', 'e', 'p')
local state, entry = f[1], f[2]
if not state then return 'unknown' end
if state == 'dead' then return 'finished' end

-- The stream holding a queued message's entry: its priority stream, or the front stream
-- (recovered work). Entry ids are unique per stream only, so the task id must match too.
local function entry_stream(id)
  for _, stream in ipairs({tag .. ':s:' .. (f[3] or '0'), tag .. ':s:front'}) do
    local found = redis.call('XRANGE', stream, id, id)
    if #found == 1 and entry_message(found[1]) == task_id then return stream end
  end
  return nil
end

local function mark()
  redis.call('HSET', job, 'x', 1)
  redis.call('PUBLISH', prefix .. ':aborts', task_id)
  return 'signalled'
end

if state ~= 'queued' then return mark() end
if entry then
  if entry ~= expected then return 'changed' end
  local stream = entry_stream(entry)
  if stream then
    local ok, p = pcall(redis.call, 'XPENDING', stream, group, entry, entry, 1)
    if ok and #p == 1 then return mark() end  -- read by a worker that has not started it
    redis.call('XDEL', stream, entry)
  end
else
  if expected ~= '' then return 'changed' end
  redis.call('ZREM', tag .. ':delayed', task_id)
end
store_result(prefix, task_id, ARGV[5], ARGV[6])
release_key(tag, job, prefix)
redis.call('DEL', job)
return 'dequeued'
