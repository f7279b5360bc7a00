//! The batching policy of the job loop, apart from its execution (as Meilisearch's index
//! scheduler keeps its autobatcher): which pending work must be settled before the next job runs,
//! so that changes apply in arrival order, and when a group stops taking jobs.

/// Commits and changes by key a group holds at most: beyond, the group is settled and the next
/// jobs start a new one.
pub(super) const MAX_GROUP: usize = 256;

/// The next job, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// A batch staged or a write committed: joins the group of commits.
    Write,
    /// A change by key; `deferred` when it joins the group of changes by key (else it runs alone).
    KeyChange { deferred: bool },
    /// A change by filter: runs alone.
    Change,
    /// Anything else (cluster, flush, attach): runs alone.
    Other,
}

/// The work a group holds, not yet settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Pending {
    pub commits: usize,
    pub key_changes: usize,
}

/// Pending work to settle now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    /// Apply the changes by key gathered so far.
    KeyChanges,
    /// Commit the group of writes gathered so far.
    Commits,
}

/// What to settle, in order, before `next` runs: changes by key before any job but another change
/// by key; commits before any change; and a change that runs alone after both.
pub(super) fn settle_before(pending: Pending, next: Next) -> Vec<Settle> {
    let mut settle = Vec::new();
    let mut key_changes = pending.key_changes;
    if key_changes > 0 && !matches!(next, Next::KeyChange { .. }) {
        settle.push(Settle::KeyChanges);
        key_changes = 0;
    }
    if matches!(next, Next::KeyChange { .. } | Next::Change) && pending.commits > 0 {
        settle.push(Settle::Commits);
    }
    if next == (Next::KeyChange { deferred: false }) && key_changes > 0 {
        settle.push(Settle::KeyChanges);
    }
    settle
}

/// Whether the group takes another queued job.
pub(super) fn takes_more(pending: Pending) -> bool {
    pending.commits + pending.key_changes < MAX_GROUP
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Pending = Pending {
        commits: 2,
        key_changes: 3,
    };

    #[test]
    fn changes_by_key_go_first_unless_another_one_joins_them() {
        assert_eq!(settle_before(BOTH, Next::Write), [Settle::KeyChanges]);
        assert_eq!(settle_before(BOTH, Next::Other), [Settle::KeyChanges]);
        assert_eq!(
            settle_before(BOTH, Next::KeyChange { deferred: true }),
            [Settle::Commits],
            "a deferred change by key joins the others, after the writes before it"
        );
    }

    #[test]
    fn a_change_that_runs_alone_waits_for_everything_before_it() {
        assert_eq!(
            settle_before(BOTH, Next::Change),
            [Settle::KeyChanges, Settle::Commits]
        );
        assert_eq!(
            settle_before(BOTH, Next::KeyChange { deferred: false }),
            [Settle::Commits, Settle::KeyChanges]
        );
    }

    #[test]
    fn nothing_pending_settles_nothing() {
        for next in [
            Next::Write,
            Next::Change,
            Next::Other,
            Next::KeyChange { deferred: true },
            Next::KeyChange { deferred: false },
        ] {
            assert!(
                settle_before(Pending::default(), next).is_empty(),
                "{next:?}"
            );
        }
        let writes_only = Pending {
            commits: 1,
            key_changes: 0,
        };
        assert_eq!(settle_before(writes_only, Next::Write), []);
        assert_eq!(settle_before(writes_only, Next::Other), []);
    }

    #[test]
    fn a_group_stops_at_its_size() {
        assert!(takes_more(Pending {
            commits: 200,
            key_changes: 55
        }));
        assert!(!takes_more(Pending {
            commits: 200,
            key_changes: 56
        }));
    }
}
