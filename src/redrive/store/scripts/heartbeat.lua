-- heartbeat: one live worker per consumer name (two would share one pending list).
-- KEYS[1] = lease: redrive:consumer:<name>
-- ARGV[1] = op: 'claim' | 'take' | 'renew' | 'release'
-- ARGV[2] = token: this worker's token ('<host> <pid> <random>')
-- ARGV[3] = ttl_ms: time to live, ms
-- ARGV[4] = replacing (take only): the stale holder's token being replaced (compare-and-set)
-- claim: {1} when the name is now ours, else {0, holder token, holder's ttl in ms}.
-- take: like claim, but replaces ARGV[4] (a holder known to be dead).
-- renew: {1} still ours (re-claimed if it had expired), {0, holder, ttl} if another has it.
-- release: {1} deleted, {0} not ours.
local key, op, token, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local holder = redis.call('GET', key)
if op == 'release' then
  if holder == token then redis.call('EXPIRE', key, 0); return {1} end  -- 0: deleted
  return {0}
end
if holder == token or not holder or (op == 'take' and holder == ARGV[4]) then
  redis.call('SET', key, token, 'PX', ttl)
  return {1}
end
return {0, holder, redis.call('PTTL', key)}
