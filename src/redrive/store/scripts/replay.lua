-- replay: move one dead letter to its target stream with its audit record, in one step.
-- KEYS[1] = dlq: dlq:{S}
-- KEYS[2] = target: the target (retry:{S}:<group> by default, or the stream given with --to)
-- KEYS[3] = audit: redrive:audit:{S} (per-entry audit trail, same slot as dlq:{S})
-- ARGV[1] = dead_id: the dead-letter id
-- ARGV[2] = audit_maxlen: approximate MAXLEN of the audit trail
-- ARGV[3] = n, how many of the following arguments are fields of the replayed message
-- ARGV[4 .. 3+n] = fields: field, value, ... of the replayed message
-- ARGV[4+n ..] = record: field, value, ... of the audit record ('target-id' is appended)
-- Returns the id of the new entry in the target, or false when the dead letter is gone
-- (replayed or purged by someone else): then nothing is written.
local dlq, target, audit, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
if #redis.call('XRANGE', dlq, id, id) == 0 then return false end
local n = tonumber(ARGV[3])
local fields = {}
for i = 4, 3 + n do fields[#fields + 1] = ARGV[i] end
-- XADD first: if the target has the wrong type it fails here, before anything changed
-- (a script is not rolled back, so the delete must come after the only call that can fail).
local new_id = redis.call('XADD', target, '*', unpack(fields))
redis.call('XDEL', dlq, id)
local record = {}
for i = 4 + n, #ARGV do record[#record + 1] = ARGV[i] end
record[#record + 1] = 'target-id'
record[#record + 1] = new_id
redis.call('XADD', audit, 'MAXLEN', '~', ARGV[2], '*', unpack(record))
return new_id
