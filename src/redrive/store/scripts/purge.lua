-- purge: delete dead letters and record the deletion in the audit trail, in one step.
-- KEYS[1] = dlq: dlq:{S}
-- KEYS[2] = audit: redrive:audit:{S} (per-entry audit trail, same slot as dlq:{S})
-- ARGV[1] = audit_maxlen: approximate MAXLEN of the audit trail
-- ARGV[2] = n, how many of the following arguments are fields of the audit record
-- ARGV[3 .. 2+n] = record: field, value, ... of the audit record ('deleted', 'ids' are appended)
-- ARGV[3+n ..] = ids: dead-letter ids
-- Returns how many entries were deleted (ids already gone are not counted).
local n = tonumber(ARGV[2])
local record, ids = {}, {}
for i = 3, 2 + n do record[#record + 1] = ARGV[i] end
for i = 3 + n, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
local deleted = redis.call('XDEL', KEYS[1], unpack(ids))
if deleted > 0 then
  record[#record + 1] = 'deleted'
  record[#record + 1] = tostring(deleted)
  record[#record + 1] = 'ids'
  record[#record + 1] = table.concat(ids, ',')
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(record))
end
return deleted
