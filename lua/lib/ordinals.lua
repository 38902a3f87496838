-- lib/ordinals.lua: ordinal_of, shared by reject.lua and cancel.lua. A Redis script
-- cannot load another, so src/claims/scripts.rs puts this file in front of each of them.
--
-- ordinal_of(booking_key, order_key) reads the booking record once and returns a
-- function from a seat id to its ordinal (nil when the seat is in neither place).
--
-- The ordinal of each seat of the booking, from its record ("ords" is written by
-- claim.lua in the order of "seats"). Without a record (Redis lost it: an eviction or a
-- restart from older data) the seat is looked up in the order list: LPOS walks the list
-- (O(seats of the event)), which only that rare case pays.
local function ordinal_of(booking_key, order_key)
  local rec = redis.call('HMGET', booking_key, 'seats', 'ords')
  local known = {}
  if rec[1] and rec[2] then
    local seats, i = cjson.decode(rec[1]), 0
    for ord in string.gmatch(rec[2] .. ',', '([^,]*),') do
      i = i + 1
      if seats[i] and ord ~= '' then
        known[seats[i]] = ord
      end
    end
  end
  return function(seat)
    return known[seat] or redis.call('LPOS', order_key, seat)
  end
end

