//! The key index: every record of a store under its key, and the store's declared indexes, in an
//! embedded LMDB environment beside it. Key checks and reads by key become lookups, and small
//! writes are acknowledged once journaled and indexed, before the store holds them. The store stays
//! the record of the data ([`MirroredStore`]); a store with unique indexes of its own needs none of
//! this.

mod catch_up;
mod error;
mod index;
pub mod journal;
mod keys;
mod mapped_pages;
mod mirrored;
mod ordered_index;
mod record_blocks;
mod row_codec;
mod unsynced;
mod verify;

pub use catch_up::catch_up;
pub use error::is_damage;
pub use index::{Encoded, IndexWrite, KeyIndex};
pub use keys::KeyEncoder;
pub use mirrored::{DeferredWrites, MirroredStore};
pub use ordered_index::IndexRange;
pub use row_codec::one_value_array;
pub use verify::walk_key_index;
