-- abort_workflow.lua: set a running workflow aborted (nothing of it is published any more:
-- see apply_follow and fire in workflows.lua), and list the tasks the broker holds of it.
-- KEYS: none used.  ARGV: prefix, workflow id.
-- Returns {} for an unknown workflow, else its record as it was before, {state, created at,
-- finished at, ttl, info, failed task}, followed (when it was running) by the ids of its
-- tasks still waiting or leased.
local prefix, id = ARGV[1], ARGV[2]
local key = prefix .. ':wf:' .. id
local r = redis.call('HMGET', key, 's', 'c', 'f', 't', 'i', 'x')
if not r[1] then return {} end
local out = {r[1], r[2], r[3], r[4], r[5], r[6] or ''}
if r[1] ~= 'running' then return out end
end_workflow(prefix, id, 'aborted', '', now_ms())
for _, task_id in ipairs(redis.call('SMEMBERS', key .. ':tasks')) do
  out[#out + 1] = task_id
end
return out
