-- warm.lua: copy one chunk of an event's inventory from MySQL into Redis.
--
-- The caller holds the event's seat rows locked in MySQL while it runs the chunks, so
-- the states passed in cannot go stale underneath. A seat held by a pending claim is
-- never touched (its claim is still on its way to MySQL, and the reconciler settles
-- it); every other seat takes MySQL's state. Used by warm and by audit's repair.
-- Counters are not kept here: warm_finish.lua recounts once at the end.
--
-- It also keeps the order list: element i is the seat whose ordinal is i (ordinals are
-- 0..n-1, given at event creation), which is how GET /v1/events/{id}/seats lists seats
-- in best-available order, and how a freed seat with no ordinal in its booking record
-- finds its place. A seat already in its place costs one read; warm's chunks come in
-- ordinal order, so on an empty list they simply append. A seat whose ordinal lies
-- beyond the end of the list (a repair of a sparse set of seats when the list is
-- missing) is not placed; the next warm places it (audit repair passes every misplaced
-- seat, in order, so it rebuilds a missing list too).
--
-- KEYS[1]  {e:ID}:seats   hash seat -> state
-- KEYS[2]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[3]  {e:ID}:order   list of seat ids, index = ordinal
-- ARGV     triples: seat (string), ordinal (integer), MySQL state
--          ("available" or "booked:<bid>"), in ascending ordinal order
--
-- Reply: the number of seats whose state changed (integer).
--
-- Example: EVALSHA <sha> 3 {e:wc}:seats {e:wc}:avail {e:wc}:order A1 0 available A2 1 booked:0192...
--   -> 2   (on an empty Redis; the order list is now A1, A2)

local seats_key, avail_key, order_key = KEYS[1], KEYS[2], KEYS[3]
assert(#ARGV % 3 == 0, 'warm.lua: arguments come in seat, ordinal, state triples')

-- The part of the order list this chunk covers, read at once when the chunk is dense
-- (a warm's chunk), else element by element (a repair's scattered seats).
local len = redis.call('LLEN', order_key)
local placed = {}
local first, last = tonumber(ARGV[2]), tonumber(ARGV[#ARGV - 1])
if first and last and first <= last and first < len and last - first < #ARGV then
  for i, seat in ipairs(redis.call('LRANGE', order_key, first, last)) do
    placed[first + i - 1] = seat
  end
end
local append = {}

local changed = 0
for i = 1, #ARGV, 3 do
  local seat, ord, truth = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local o = tonumber(ord)
  if o < len then
    local current = placed[o]
    if current == nil then
      current = redis.call('LINDEX', order_key, o)
    end
    if current ~= seat then
      redis.call('LSET', order_key, o, seat)
    end
  elseif o == len + #append then
    append[#append + 1] = seat
  end
  local state = redis.call('HGET', seats_key, seat)
  if not (state and string.sub(state, 1, 8) == 'pending:') then
    if state ~= truth then
      redis.call('HSET', seats_key, seat, truth)
      changed = changed + 1
    end
    if truth == 'available' then
      redis.call('ZADD', avail_key, ord, seat)
    else
      redis.call('ZREM', avail_key, seat)
    end
  end
end
-- RPUSH in slices: unpack has a limit on how many values it returns.
for i = 1, #append, 1000 do
  redis.call('RPUSH', order_key, unpack(append, i, math.min(i + 999, #append)))
end
return changed
