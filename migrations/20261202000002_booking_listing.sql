-- The admin's listing of an event's bookings (GET /v1/events/{id}/bookings with the
-- admin token): newest first, keyset-paginated (`id < cursor ORDER BY id DESC LIMIT n`),
-- optionally of one status. Booking ids are UUID v7, so id order is creation order.
-- With these indexes MySQL reads a page straight off the index, in id order, and stops
-- after n rows, instead of reading and sorting every booking of the event per page.
-- InnoDB appends the primary key (id) to every secondary index; it is written out here
-- because the order by id is what these indexes are for.
-- A user's listing needs none: bookings_by_user (event_id, user_id) has the id after
-- the user's entries already.
CREATE INDEX bookings_by_event ON bookings (event_id, id);
CREATE INDEX bookings_by_event_status ON bookings (event_id, status, id);
