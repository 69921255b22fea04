-- idem_release: release the claims of idempotency keys whose run failed, so the retry
-- runs (a key claimed since by another run is left as it is).
-- KEYS[1] = the group's claims (hash: key -> '<until ms>:<consumer>:<entry id>')
-- ARGV[1] = consumer
-- ARGV[2..] = pairs: an idempotency key, the entry id of the run that claimed it
-- Returns how many claims were released.
local claims, consumer = KEYS[1], ARGV[1]
local n = (#ARGV - 1) / 2
local ks = {}
for i = 1, n do ks[i] = ARGV[2 * i] end
local held = many('HMGET', claims, ks)
local mine = {}
for i = 1, n do
  local v = held[i]
  if v and string.match(v, '^%d+:(.*)$') == consumer .. ':' .. ARGV[2 * i + 1] then
    mine[#mine + 1] = ks[i]
  end
end
if #mine == 0 then return 0 end
return many('HDEL', claims, mine)
