-- extend_lease.lua (renew): set the idle time of each entry this consumer still owns with
-- XCLAIM ... IDLE ms JUSTID (JUSTID does not bump the delivery counter). The lease is the
-- PEL idle time compared with the lease length, so "expires in S seconds" is idle = lease - S.
-- The ownership check comes first: a blind XCLAIM would steal an entry the reaper already
-- handed on.
-- KEYS: tag.  ARGV: group, consumer, idle ms, then per message 2 values: stream, entry id.
-- Returns 1 per message still owned (and renewed), 0 otherwise.
local group, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 2 do
  local stream, id = ARGV[i], ARGV[i + 1]
  if owned(stream, group, consumer, id) then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'IDLE', idle, 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
