-- import_dead_letters: append imported records to one DLQ, each at most once, with the
-- batch's audit record, in one step.
-- KEYS[1] = dlq: dlq:{S}
-- KEYS[2] = audit: redrive:audit:{S} (per-entry audit trail, same slot as dlq:{S})
-- KEYS[3] = imported: redrive:dlq-imported:{S} (hash: record digest -> its id in dlq:{S})
-- ARGV[1] = audit_maxlen: approximate MAXLEN of the audit trail
-- ARGV[2] = check: '1' skips a record whose digest names an entry still in the DLQ
-- ARGV[3] = ttl_s: seconds the digests are kept after the last import into S
-- ARGV[4] = n, how many of the following arguments are fields of the audit record
-- ARGV[5 .. 4+n] = record: field, value, ... ('imported', 'present', 'ids' are appended)
-- ARGV[5+n ..] = per record: digest, m, then m arguments (field, value, ...)
-- Returns {imported, present}: records written, records skipped as already in the DLQ.
local dlq, audit, imported = KEYS[1], KEYS[2], KEYS[3]
local check = ARGV[2] == '1'
local n = tonumber(ARGV[4])
local record = {}
for i = 5, 4 + n do record[#record + 1] = ARGV[i] end
local ids, present, i = {}, 0, 5 + n
while i <= #ARGV do
  local digest, m = ARGV[i], tonumber(ARGV[i + 1])
  local known = check and redis.call('HGET', imported, digest)
  if known and #redis.call('XRANGE', dlq, known, known) > 0 then
    present = present + 1
  else
    local new_id = redis.call('XADD', dlq, '*', unpack(ARGV, i + 2, i + 1 + m))
    redis.call('HSET', imported, digest, new_id)
    ids[#ids + 1] = new_id
  end
  i = i + 2 + m
end
if #ids > 0 then
  redis.call('EXPIRE', imported, ARGV[3])
  record[#record + 1] = 'imported'
  record[#record + 1] = tostring(#ids)
  record[#record + 1] = 'present'
  record[#record + 1] = tostring(present)
  record[#record + 1] = 'ids'
  record[#record + 1] = table.concat(ids, ',')
  redis.call('XADD', audit, 'MAXLEN', '~', ARGV[1], '*', unpack(record))
end
return {#ids, present}
