-- open_workflow.lua: save a workflow's record and open its barriers, in one step
-- (workflows.lua); a barrier of size 0 fires at once, its callback registered.
-- KEYS: none.  ARGV: prefix, record ttl ms, the results' prefix, then the record's 7
--   values (or a single '' for none): workflow id, state, created at, finished at, ttl
--   (s), info, failed task; then per barrier 14 values (workflows.lua).
-- Returns the messages registered (6 values each, see outbox_publisher in lib.lua).
local prefix, record_ttl, results = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local published = {}
local publish = outbox_publisher(prefix, record_ttl, results, now, published)
local i
if ARGV[4] == '' then
  i = 5
else
  save_workflow(prefix, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
  i = 11
end
while i <= #ARGV do
  open_barrier(prefix, {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
    {unpack(ARGV, i + 5, i + 13)}}, publish)
  i = i + 14
end
return published
