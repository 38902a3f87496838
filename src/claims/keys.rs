//! Redis key names, built here and nowhere else.
//!
//! Every key of one event carries the hash tag `{e:<event_id>}`, so every script touches
//! a single Redis Cluster slot and events spread across a cluster. An optional namespace
//! goes in front (outside the hash tag) so that several deployments, or tests running
//! side by side, can share one Redis without seeing each other's keys.
//!
//! Event ids are `[A-Za-z0-9_-]` (checked at the edge), so they cannot contain `}` and
//! end the tag early. User ids and idempotency keys can contain `:`, so the idempotency
//! key length-prefixes the user id: `(a:b, c)` and `(a, b:c)` never share a record.

/// Builds the keys of one event.
#[derive(Debug, Clone)]
pub struct EventKeys {
    /// `<namespace>{e:<event_id>}`, the prefix of every key of the event.
    prefix: String,
}

impl EventKeys {
    pub fn new(namespace: &str, event_id: &str) -> Self {
        Self {
            prefix: format!("{namespace}{{e:{event_id}}}"),
        }
    }

    /// The keys and first argument of the scripts that release a booking's seats
    /// (`reject.lua`, `cancel.lua`): meta, seats, avail, order, the user's tally and
    /// the booking record, then the booking id.
    pub(crate) fn releasing<'a, 'b>(
        &self,
        inv: &'b mut redis::ScriptInvocation<'a>,
        user_id: &str,
        booking_id: &str,
    ) -> &'b mut redis::ScriptInvocation<'a> {
        inv.key(self.meta())
            .key(self.seats())
            .key(self.avail())
            .key(self.order())
            .key(self.user(user_id))
            .key(self.booking(booking_id))
            .arg(booking_id)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// Hash: name, limit, seats_total, on_sale, pending, booked.
    pub fn meta(&self) -> String {
        self.key("meta")
    }

    /// Hash: seat id → `available` | `pending:<bid>` | `booked:<bid>`.
    pub fn seats(&self) -> String {
        self.key("seats")
    }

    /// Sorted set of available seats, scored by ordinal (best available first).
    pub fn avail(&self) -> String {
        self.key("avail")
    }

    /// List: every seat id in ordinal order (element `i` has ordinal `i`), written by
    /// warm. Lists the seats in best-available order at a few bytes per seat. A freed
    /// seat finds its ordinal in its booking record (`ords`, written by the claim), so
    /// no seat → ordinal index is kept.
    pub fn order(&self) -> String {
        self.key("order")
    }

    /// Hash: booking id → number of seats the user holds through it.
    pub fn user(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}", self.prefix)
    }

    /// The pattern matching every user tally of the event (see [`EventKeys::user`]).
    pub fn users_pattern(&self) -> String {
        // `{` `}` are not glob metacharacters; `[` cannot occur in an event id.
        format!("{}:user:*", self.prefix)
    }

    /// The user whose tally `key` is, if it is one of this event's tallies.
    pub fn user_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":user:")
    }

    /// String with a TTL: the user's claim rate state in this event (GCRA: the
    /// theoretical arrival time of the user's next claim, in milliseconds since the
    /// epoch), written by `claim.lua` and gone once the user has the whole burst back.
    /// Under `:rate:`, never `:user:`, so [`EventKeys::users_pattern`] does not match it.
    pub fn rate(&self, user_id: &str) -> String {
        format!("{}:rate:{user_id}", self.prefix)
    }

    /// Hash: the booking record (user, seats, ords, status, reason, created_ms).
    pub fn booking(&self, booking_id: &str) -> String {
        format!("{}:b:{booking_id}", self.prefix)
    }

    /// Hash: an idempotency record (request fingerprint, first reply).
    pub fn idempotency(&self, user_id: &str, key: &str) -> String {
        format!("{}:idem:{}:{user_id}:{key}", self.prefix, user_id.len())
    }

    /// Sorted set: the event's held bookings, scored by their deadline (ms since the
    /// epoch), which the expirer reads (`confirm.lua` adds, `cancel.lua` removes).
    pub fn holds(&self) -> String {
        self.key("holds")
    }

    /// Stream: the outbox of claims waiting for the reconciler.
    pub fn outbox(&self) -> String {
        self.key("outbox")
    }

    /// Stream: outbox entries that could not be decoded, with the error.
    pub fn dead_letters(&self) -> String {
        self.key("dead")
    }

    /// String: on a Redis Cluster, the mark of the primary the event was verified on,
    /// on that primary alone (`mark.lua`).
    pub fn mark(&self) -> String {
        self.key("mark")
    }

    /// Sharded pub/sub channel (on the event's slot) on which the event's settled
    /// booking ids are published on a Redis Cluster (see `settled`).
    pub fn settled(&self) -> String {
        self.key("settled")
    }

    /// The keys every warmed event has (meta, seats, avail, order, outbox, dead
    /// letters): those that say it exists, as opposed to those its claims made.
    pub fn core(&self) -> [String; 6] {
        [
            self.meta(),
            self.seats(),
            self.avail(),
            self.order(),
            self.outbox(),
            self.dead_letters(),
        ]
    }

    /// The pattern matching every key of the event (for cleanup in tests and tools).
    pub fn pattern(&self) -> String {
        // `{` `}` are not glob metacharacters; `[` cannot occur in an event id.
        format!("{}:*", self.prefix)
    }
}

/// Set of the event ids that are on sale, read by reconcilers to find outboxes.
pub(crate) fn events_registry(namespace: &str) -> String {
    format!("{namespace}seatgate:events")
}

/// Hash: `run_id`, the Redis node whose data seatgate last rebuilt from MySQL, and
/// `rebuilt_ms`, when (see `claims::fence`).
pub(crate) fn incarnation(namespace: &str) -> String {
    format!("{namespace}seatgate:incarnation")
}

/// String with a TTL: the process rebuilding Redis from MySQL after a fence.
pub(crate) fn rebuild_lock(namespace: &str) -> String {
    format!("{namespace}seatgate:rebuild")
}

/// Pub/sub channel on which settled booking ids are published on one node (see
/// `settled`; a cluster uses each event's sharded channel, [`EventKeys::settled`]).
pub(crate) fn settled_channel(namespace: &str) -> String {
    format!("{namespace}seatgate:settled")
}

/// String: `<database id> <host:port/database>`, the MySQL database that owns the
/// namespace (see `deployment`). Set once, by the first gateway on the namespace.
pub fn namespace_owner(namespace: &str) -> String {
    format!("{namespace}seatgate:owner")
}

/// String: written before each replication `WAIT` so that the `WAIT` covers every
/// claim run before it (see `replication`). Its value means nothing.
pub(crate) fn replication_mark(namespace: &str) -> String {
    format!("{namespace}seatgate:replication-mark")
}

/// The consumer group every reconciler joins on every outbox.
pub const RECONCILER_GROUP: &str = "reconcilers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_event_hash_tag() {
        let k = EventKeys::new("", "wc26");
        for key in [
            k.meta(),
            k.seats(),
            k.avail(),
            k.order(),
            k.user("alice"),
            k.rate("alice"),
            k.booking("b1"),
            k.idempotency("alice", "k1"),
            k.outbox(),
        ] {
            assert!(key.starts_with("{e:wc26}:"), "{key}");
        }
        assert_eq!(EventKeys::new("t1:", "wc26").meta(), "t1:{e:wc26}:meta");
    }

    #[test]
    fn a_tally_key_names_its_user() {
        let k = EventKeys::new("t1:", "wc26");
        for user in ["alice", "a:b", "user:x", ""] {
            assert_eq!(k.user_of(&k.user(user)), Some(user));
        }
        assert_eq!(k.users_pattern(), "t1:{e:wc26}:user:*");
        assert_eq!(k.user_of(&k.booking("b1")), None);
        // The rate key of a user named like a tally key is still no tally.
        for user in ["alice", "x:user:alice", ":user:"] {
            assert_eq!(k.user_of(&k.rate(user)), None, "{user}");
            assert!(!k.rate(user).starts_with("t1:{e:wc26}:user:"), "{user}");
        }
        assert_eq!(
            k.user_of(&EventKeys::new("t1:", "wc27").user("alice")),
            None
        );
    }

    #[test]
    fn idempotency_keys_of_different_users_never_collide() {
        let k = EventKeys::new("", "e");
        assert_ne!(k.idempotency("a:b", "c"), k.idempotency("a", "b:c"));
    }
}
