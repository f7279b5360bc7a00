//! The batching policy of group commit, apart from its execution (as the DuckDB writer keeps its
//! own): which small writes join a group, and how many of the queued ones the next group takes.

use dataforge_domain::write::ConflictMode;

/// Writes a group takes at most. PostgreSQL keeps the subtransactions of 64 savepoints with each
/// session; past that, every other session's snapshot has to look them up in `pg_subtrans` while
/// the group's transaction runs, which slows all of them (on replicas too).
pub(super) const MAX_WRITES: usize = 64;
/// Records a group takes at most (past the first write), so that one transaction stays short.
pub(super) const MAX_RECORDS: usize = 4_096;

/// Whether a small write in `mode` queues for a group. A merge is two statements under the
/// dataset's lock, which would hold every other write of the group: it runs alone, as before.
pub(super) fn joins_group(mode: ConflictMode) -> bool {
    mode != ConflictMode::Merge
}

/// How many of the queued writes (their record counts, in arrival order) the next group takes:
/// the first always, then the next ones while both bounds hold. 0 when none is queued.
pub(super) fn group_size(queued: impl IntoIterator<Item = usize>) -> usize {
    let (mut taken, mut records) = (0, 0);
    for rows in queued {
        if taken == MAX_WRITES || (taken > 0 && records + rows > MAX_RECORDS) {
            break;
        }
        taken += 1;
        records += rows;
    }
    taken
}

/// Whether a group of `writes` runs in a transaction of its own (savepoints too, once one of
/// its writes fails): a write alone needs none, and keeps its single statement.
pub(super) fn in_transaction(writes: usize) -> bool {
    writes > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_takes_what_is_queued_up_to_its_size() {
        assert_eq!(group_size([]), 0);
        assert_eq!(group_size([1]), 1);
        assert_eq!(group_size([1; 10]), 10);
        assert_eq!(group_size([1; 200]), MAX_WRITES);
    }

    #[test]
    fn a_group_stops_before_the_write_that_would_pass_its_records() {
        assert_eq!(group_size([256; 40]), MAX_RECORDS / 256);
        assert_eq!(group_size([4_000, 96, 1]), 2);
        assert_eq!(group_size([4_000, 97, 1]), 1);
    }

    #[test]
    fn the_first_write_is_always_taken() {
        assert_eq!(group_size([MAX_RECORDS + 1, 1]), 1);
    }

    #[test]
    fn merges_run_alone_and_lone_writes_without_a_transaction() {
        assert!(!joins_group(ConflictMode::Merge));
        for mode in [
            ConflictMode::Error,
            ConflictMode::Ignore,
            ConflictMode::Upsert,
        ] {
            assert!(joins_group(mode), "{mode:?}");
        }
        assert!(!in_transaction(1));
        assert!(in_transaction(2));
    }
}
