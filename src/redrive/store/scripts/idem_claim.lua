-- idem_claim: claim idempotency keys before their handler runs (a lease).
-- KEYS[1..n] = idempotency keys (redrive:idem:{S}:<group>:<key>)
-- ARGV[1] = the lease, ms
-- ARGV[2..n+1] = each key's claim value: 'c:<consumer>:<entry id>' (the run that claims)
-- Returns one integer per key:
--    0  claimed: free, expired, or already this very run's (re-read after a restart)
--   -1  done: a run of this key succeeded; ack the entry without running it
--   >0  claimed by another run (another consumer's, or another entry of the same key)
--       for that many more ms: leave the entry pending
local lease = ARGV[1]
local out = {}
for i, k in ipairs(KEYS) do
  local claim = ARGV[i + 1]
  -- The common case, a key never seen, costs one SET.
  if redis.call('SET', k, claim, 'NX', 'PX', lease) then
    out[i] = 0
  else
    local v = redis.call('GET', k)
    if v == claim then
      redis.call('PEXPIRE', k, lease)
      out[i] = 0
    elseif string.sub(v, 1, 2) == 'd:' then
      out[i] = -1
    else
      local left = redis.call('PTTL', k)
      out[i] = left > 0 and left or 1
    end
  end
end
return out
