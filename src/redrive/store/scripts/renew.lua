-- renew: extend the lease of entries a long handler still works on, fenced.
-- KEYS[1] = stream: the stream the entries were read from
-- ARGV[1] = group
-- ARGV[2] = consumer (only entries it still owns are renewed)
-- ARGV[3..] = ids: entry ids
-- XCLAIM ... 0 JUSTID resets the idle time without raising the delivery counter.
-- Returns the ids this consumer no longer owns (their outcome will be fenced).
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  if owner(key, group, consumer, ARGV[i]) == 1 then
    redis.call('XCLAIM', key, group, consumer, 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
