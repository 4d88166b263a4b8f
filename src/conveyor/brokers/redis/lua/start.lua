-- start.lua: start messages that a blocking XREADGROUP delivered (attempts + 1).
-- KEYS: tag.  ARGV: prefix ('' on a cluster: see start in lib.lua), then per message 3
-- values: stream, entry id, priority.
-- Returns a flat list: task id, body, attempt, crashes, abort mark (5 per message; body is
-- re-read from the entry so raw entries are normalised exactly as fetch.lua does). A message
-- aborted between the read and this script carries the mark (abort.lua saw it pending).
local tag, prefix = KEYS[1], ARGV[1]
local out = {}
for i = 2, #ARGV, 3 do
  local stream, id, prio = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local entries = redis.call('XRANGE', stream, id, id)
  local task_id, body
  if #entries == 1 then task_id, body = entry_message(entries[1]) else task_id, body = id, '' end
  out[#out + 1] = task_id
  out[#out + 1] = body
  local attempt, crashes, aborted = start(tag, task_id, prio, id, prefix)
  out[#out + 1] = attempt
  out[#out + 1] = crashes
  out[#out + 1] = aborted
end
return out
