-- open_workflow.lua: save a workflow's record and open its barriers, in one step
-- (workflows.lua). A barrier opened before is kept as it is; one of size 0 fires at once.
-- KEYS: none used.  ARGV: group, prefix, then the record's 7 values (or a single '' for
--   none): workflow id, state, created at, finished at, ttl (s), info, failed task; then
--   per barrier: barrier id, workflow, size (-1 = not known), partial (0/1), ttl ms, and
--   its callback's 9 message values.
-- Returns 1.
local group, prefix = ARGV[1], ARGV[2]
local now = now_ms()
local publish = stream_publisher(prefix, group, now)
local i = 3
if ARGV[3] == '' then
  i = 4
else
  save_workflow(prefix, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
  i = 10
end
while i <= #ARGV do
  open_barrier(prefix, {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
    {unpack(ARGV, i + 5, i + 13)}}, publish)
  i = i + 14
end
return 1
