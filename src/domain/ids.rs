//! Identifiers as types: an `EventId`, `SeatId`, `UserId` or `BookingId` exists only
//! once its text passed the contract's check, so code that holds one never checks it
//! again. Each wraps the text exactly as it arrived (a booking id is not rewritten into
//! another UUID spelling), because ids compare byte for byte.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

use super::{EVENT_ID_MAX, SEAT_ID_MAX, USER_ID_MAX};

/// Text that is not a well-formed id of the kind named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: {shown:?}")]
pub struct InvalidId {
    /// Which id was expected (`event id`, `seat id`, ...).
    pub kind: &'static str,
    /// The start of the text, cut so a huge input does not end up in a message whole.
    pub shown: String,
}

impl InvalidId {
    fn new(kind: &'static str, text: &str) -> Self {
        Self {
            kind,
            shown: text.chars().take(130).collect(),
        }
    }
}

/// The shared part of every id type: the checked constructor and the ways to read,
/// print, (de)serialize and document it. `$check` decides what is well formed;
/// `$format` is the OpenAPI `format` of its schema, if any (spelled out: utoipa
/// knows `uuid` only with a feature this crate does not need).
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr, $format:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// True when `text` is well formed (checks without copying it).
            pub fn is_valid(text: &str) -> bool {
                let check: fn(&str) -> bool = $check;
                check(text)
            }

            /// The id, if `text` is well formed.
            pub fn parse(text: impl Into<String>) -> Result<Self, InvalidId> {
                let text = text.into();
                if Self::is_valid(&text) {
                    Ok(Self(text))
                } else {
                    Err(InvalidId::new($kind, &text))
                }
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(text).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let format: Option<&str> = $format;
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(format.map(|f| SchemaFormat::Custom(f.to_owned())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// An event id: 1 to 64 of `A-Z a-z 0-9 _ -`.
    EventId,
    "event id",
    |s| {
        !s.is_empty()
            && s.len() <= EVENT_ID_MAX
            && s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    },
    None
);

id_type!(
    /// A seat id: 1 to 32 characters (not bytes).
    SeatId,
    "seat id",
    |s| (1..=SEAT_ID_MAX).contains(&s.chars().count()),
    None
);

id_type!(
    /// A user id (a JWT `sub`): 1 to 128 characters (not bytes).
    UserId,
    "user id",
    |s| (1..=USER_ID_MAX).contains(&s.chars().count()),
    None
);

id_type!(
    /// A booking id: a UUID in any spelling `uuid` reads (the API makes v7 ones,
    /// hyphenated).
    BookingId,
    "booking id",
    |s| uuid::Uuid::parse_str(s).is_ok(),
    Some("uuid")
);

impl BookingId {
    /// A new booking id: a UUID v7, hyphenated, so ids sort by creation time.
    pub(crate) fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_1_to_64_ascii_letters_digits_underscores_and_dashes() {
        for good in ["wc-2026_eu", "A", &"a".repeat(64)] {
            assert_eq!(EventId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "wc 2026", "wc:2026", "é", &"a".repeat(65)] {
            let err = EventId::parse(bad).unwrap_err();
            assert_eq!(err.kind, "event id");
        }
    }

    #[test]
    fn seat_and_user_ids_count_characters_not_bytes() {
        assert!(SeatId::parse("é".repeat(32)).is_ok());
        assert!(SeatId::parse("é".repeat(33)).is_err());
        assert!(SeatId::parse("").is_err());
        assert!(UserId::parse("ü".repeat(128)).is_ok());
        assert!(UserId::parse("ü".repeat(129)).is_err());
        assert!(UserId::parse("").is_err());
    }

    #[test]
    fn booking_ids_are_uuids_kept_as_written() {
        let hyphenated = "01890f6e-7c1a-7cc2-8a3b-3f2b1d6c9e55";
        let simple = "01890f6e7c1a7cc28a3b3f2b1d6c9e55";
        assert_eq!(BookingId::parse(hyphenated).unwrap().as_str(), hyphenated);
        assert_eq!(BookingId::parse(simple).unwrap().as_str(), simple);
        for bad in ["", "b1", "01890f6e-7c1a-7cc2-8a3b", "%FF"] {
            assert!(BookingId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_booking_ids_are_hyphenated_v7_uuids() {
        let id = BookingId::generate();
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(id.as_str(), uuid.hyphenated().to_string());
        assert!(BookingId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn ids_deserialize_only_when_well_formed_and_serialize_as_their_text() {
        let id: EventId = serde_json::from_str(r#""wc-2026""#).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""wc-2026""#);
        let err = serde_json::from_str::<EventId>(r#""wc 2026""#).unwrap_err();
        assert!(err.to_string().contains("not a valid event id"), "{err}");
        assert!(serde_json::from_str::<SeatId>(r#""""#).is_err());
    }

    #[test]
    fn id_schemas_are_strings_and_booking_ids_are_uuids() {
        use utoipa::PartialSchema;
        let schema = |s: RefOr<Schema>| serde_json::to_value(s).unwrap();
        assert_eq!(
            schema(EventId::schema()),
            serde_json::json!({"type": "string"})
        );
        assert_eq!(
            schema(BookingId::schema()),
            serde_json::json!({"type": "string", "format": "uuid"})
        );
    }
}
