-- job_lease: a runner claims, renews or releases its lease on a supervised job.
-- KEYS[1] = job: redrive:job:{ID} (hash: status, runner, lease_until, ...)
-- ARGV[1] = op: 'claim' | 'renew' | 'release'
-- ARGV[2] = runner: the runner's identity (its name and a token of its own)
-- ARGV[3] = lease_ms: how long the lease runs from now (Redis's clock: runners' clocks differ)
-- Returns the job's status after the call; 'held' (claim: another runner's lease is live),
-- 'lost' (renew, release: the lease is not this runner's any more), 'unknown' (no job).
-- A claim takes a queued job, or a running one whose lease has run out (its runner died).
local job, op, me = KEYS[1], ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local got = redis.call('HMGET', job, 'status', 'runner', 'lease_until')
local status, runner, lease_until = got[1], got[2] or '', tonumber(got[3] or '0') or 0
if not status then return 'unknown' end
if op == 'claim' then
  if status ~= 'queued' and status ~= 'running' then return status end
  if runner ~= '' and runner ~= me and lease_until > now then return 'held' end
  redis.call('HSET', job, 'status', 'running', 'runner', me,
             'lease_until', tostring(now + tonumber(ARGV[3])), 'updated_ms', tostring(now))
  return 'running'
end
if runner ~= me then return 'lost' end
if op == 'renew' then
  if status == 'queued' then status = 'running' end  -- resumed while this runner held it
  if status == 'running' then
    redis.call('HSET', job, 'status', status, 'lease_until', tostring(now + tonumber(ARGV[3])))
  end
  return status
end
redis.call('HSET', job, 'runner', '', 'lease_until', '0')
if status == 'running' then
  status = 'queued'  -- left for any runner to take at once
  redis.call('HSET', job, 'status', status, 'updated_ms', tostring(now))
end
return status
