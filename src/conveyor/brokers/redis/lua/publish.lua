-- publish.lua: enqueue a batch for one queue, with idempotency.
-- KEYS: tag of the queue.  ARGV: group, key prefix, then per message 8 values:
--   task id, body, priority, not-before (unix ms, 0 = now), idempotency key ('' = none),
--   key ttl ms (how long the key keeps pointing at the task after it ends), reused id
--   ('1' when the caller chose the task id, else '0'), workflow ('' = none: else the task
--   joins the workflow's set of held tasks, for abort_workflow.lua).
-- A delayed message that becomes the queue's earliest is announced (announce_due). A
-- message written anew under a reused id deletes the result and progress stored under it.
-- Returns, per message, the task id that stands for it: the existing one when the key or
-- the task id is already known (nothing is written then), else its own. A dead-lettered
-- task's id may be reused: its dead letter is replaced by the new run, unless the
-- message's key is still live (then nothing is written, the dead letter stays).
local tag, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV, 8 do
  out[#out + 1] = publish_to(tag, group, prefix, now, ARGV[i], ARGV[i + 1], ARGV[i + 2],
    tonumber(ARGV[i + 3]), ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7])
end
return out
