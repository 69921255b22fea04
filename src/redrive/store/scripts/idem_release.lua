-- idem_release: release the claims of idempotency keys whose run failed, so
-- the retry runs (a key done or claimed by another consumer is left as it is).
-- KEYS[1..n] = idempotency keys
-- ARGV[1..n] = each key's claim value: 'c:<consumer>:<entry id>'
-- Returns how many claims were released.
local released = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i] then
    redis.call('DEL', k)
    released = released + 1
  end
end
return released
