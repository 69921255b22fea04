-- replay_finish: last step of a replay into another slot: delete the dead letter and
-- append its audit record, in one step (the copy is in the target already).
-- KEYS[1] = dlq: dlq:{S}
-- KEYS[2] = audit: redrive:audit:{S} (per-entry audit trail, same slot as dlq:{S})
-- KEYS[3] = moving: redrive:replay-moving:{S}
-- ARGV[1] = dead_id: the dead-letter id
-- ARGV[2] = audit_maxlen: approximate MAXLEN of the audit trail
-- ARGV[3 ..] = record: field, value, ... of the audit record (with 'target-id')
-- Returns 1 when deleted and recorded, 0 when someone else removed it meanwhile.
local dlq, audit, moving, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
redis.call('HDEL', moving, id)
if redis.call('XDEL', dlq, id) == 0 then return 0 end
redis.call('XADD', audit, 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
return 1
