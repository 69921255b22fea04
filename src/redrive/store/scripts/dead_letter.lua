-- dead_letter: move an entry to its dead-letter stream, fenced, in one step.
-- KEYS[1] = the stream the entry was read from (source or retry stream)
-- KEYS[2] = dlq:{S}
-- ARGV[1] = group
-- ARGV[2] = consumer (must still own the entry)
-- ARGV[3] = entry id
-- ARGV[4] = '1' to XDEL the entry after XACK (retry streams), else '0'
-- ARGV[5] = approximate MAXLEN of the dead-letter stream, '0' for none
-- ARGV[6..] = field, value, ... of the dead letter (producer fields + redrive-* metadata)
-- Returns {1, dead-letter id} when moved, else {fence code, false}.
local key, group, consumer, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local o = owner(key, group, consumer, id)
if o ~= 1 then return {o, false} end
local args = {KEYS[2]}
if ARGV[5] ~= '0' then
  args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = ARGV[5]
end
args[#args + 1] = '*'
for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
local dead_id = redis.call('XADD', unpack(args))
settle(key, group, id, ARGV[4])
return {1, dead_id}
