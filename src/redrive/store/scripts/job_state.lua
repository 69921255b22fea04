-- job_state: move a supervised job to another status (pause, resume, cancel, auto-pause).
-- KEYS[1] = job: redrive:job:{ID}
-- ARGV[1] = status: the new status
-- ARGV[2] = reason: why (kept in the job's 'reason' field)
-- ARGV[3 ..] = from: the statuses it may be moved from
-- Returns {status before, code, runner}: code 1 moved, 0 already in that status (nothing
-- written), -1 not allowed from there (nothing written); runner is the lease holder's
-- identity ('' when none, or when its lease has run out); false when there is no job.
local job, new = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local got = redis.call('HMGET', job, 'status', 'runner', 'lease_until')
local status, runner = got[1], got[2] or ''
if not status then return false end
if (tonumber(got[3] or '0') or 0) <= now then runner = '' end
if status == new then return {status, 0, runner} end
local allowed = false
for i = 3, #ARGV do if ARGV[i] == status then allowed = true end end
if not allowed then return {status, -1, runner} end
redis.call('HSET', job, 'status', new, 'reason', ARGV[2], 'updated_ms', tostring(now))
return {status, 1, runner}
