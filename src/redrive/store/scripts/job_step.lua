-- job_step: record the outcome of entries a runner has just handled, and renew its lease.
-- KEYS[1] = job: redrive:job:{ID}
-- ARGV[1] = runner: the runner's identity
-- ARGV[2] = lease_ms: how long the renewed lease runs
-- ARGV[3], ARGV[4], ARGV[5] = moved, gone, refused: how many of each to add
-- ARGV[6 ..] = field, value, ... to set as well (canary marks and state)
-- Returns the job's status after the step, or 'lost' (nothing written: another runner
-- holds the job now, and it counts these entries itself; each move is atomic on its own,
-- so an entry moved here is found gone there, never moved twice).
-- Progress is written even when the job was paused or cancelled meanwhile (those entries
-- did move); the lease is then given up. A job whose every entry is handled is 'done'
-- (unless cancelled: the operator's word stands).
local job, me = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local got = redis.call('HMGET', job, 'status', 'runner', 'total')
local status, runner, total = got[1], got[2] or '', tonumber(got[3] or '0') or 0
if not status then return 'unknown' end
if runner ~= me then return 'lost' end
local moved = redis.call('HINCRBY', job, 'moved', ARGV[3])
local gone = redis.call('HINCRBY', job, 'gone', ARGV[4])
local refused = redis.call('HINCRBY', job, 'refused', ARGV[5])
for i = 6, #ARGV - 1, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
if status == 'queued' then status = 'running' end  -- resumed while this runner held it
if moved + gone + refused >= total and status ~= 'cancelled' then status = 'done' end
if status == 'running' then
  redis.call('HSET', job, 'status', status, 'lease_until', tostring(now + tonumber(ARGV[2])))
else
  redis.call('HSET', job, 'status', status, 'runner', '', 'lease_until', '0')
end
redis.call('HSET', job, 'updated_ms', tostring(now))
return status
