-- warm.lua: copy one chunk of an event's inventory from MySQL into Redis.
--
-- The caller holds the event's seat rows locked in MySQL while it runs the chunks, so
-- the states passed in cannot go stale underneath. A seat held by a pending claim is
-- never touched (its claim is still on its way to MySQL, and the reconciler settles
-- it); every other seat takes MySQL's state. Used by warm and by audit's repair.
-- Counters are not kept here: warm_finish.lua recounts once at the end.
--
-- KEYS[1]  {e:ID}:seats   hash seat -> state
-- KEYS[2]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[3]  {e:ID}:ord     hash seat -> ordinal
-- ARGV     triples: seat (string), ordinal (integer), MySQL state
--          ("available" or "booked:<bid>")
--
-- Reply: the number of seats whose state changed (integer).
--
-- Example: EVALSHA <sha> 3 {e:wc}:seats {e:wc}:avail {e:wc}:ord A1 0 available A2 1 booked:0192...
--   -> 2   (on an empty Redis)

local seats_key, avail_key, ord_key = KEYS[1], KEYS[2], KEYS[3]
assert(#ARGV % 3 == 0, 'warm.lua: arguments come in seat, ordinal, state triples')

local changed = 0
for i = 1, #ARGV, 3 do
  local seat, ord, truth = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HSET', ord_key, seat, ord)
  local state = redis.call('HGET', seats_key, seat)
  if not (state and string.sub(state, 1, 8) == 'pending:') and state ~= truth then
    redis.call('HSET', seats_key, seat, truth)
    changed = changed + 1
  end
  if not (state and string.sub(state, 1, 8) == 'pending:') then
    if truth == 'available' then
      redis.call('ZADD', avail_key, ord, seat)
    else
      redis.call('ZREM', avail_key, seat)
    end
  end
end
return changed
