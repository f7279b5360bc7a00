//! How often the ticker's appends of deferred writes may run: pure policy, apart from the
//! writer that executes it. An append of new records costs little, but one that rewrites changed
//! keys' rows scans the table (a `DELETE` joined with the keys: about 0.2 s on 10M rows, measured
//! by bench/changes.sh), and at every 200 ms tick the writer would spend most of its time there
//! while changes by key queue behind it. So a tick appends only once the writer has worked
//! [`BUSY_RATIO`] times as long as the last append took since it ended; reads through DuckDB, the
//! size rule and other writes still append at once, so no read waits longer for its data.

use std::time::{Duration, Instant};

/// Time since the last append, in multiples of its cost, before a tick appends again: appends
/// then take at most about a quarter of the writer's time.
pub(super) const BUSY_RATIO: u32 = 3;

/// What the last append cost and when it ended.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AppendPacing {
    last: Option<(Instant, Duration)>,
}

impl AppendPacing {
    /// Whether a tick at `now` appends.
    pub(super) fn tick_appends(&self, now: Instant) -> bool {
        match self.last {
            None => true,
            Some((ended, cost)) => now >= ended + cost * BUSY_RATIO,
        }
    }

    /// Notes an append that ran from `started` to `ended`.
    pub(super) fn appended(&mut self, started: Instant, ended: Instant) {
        self.last = Some((ended, ended.saturating_duration_since(started)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_tick_appends() {
        assert!(AppendPacing::default().tick_appends(Instant::now()));
    }

    #[test]
    fn a_cheap_append_holds_the_next_tick_briefly() {
        let start = Instant::now();
        let mut pacing = AppendPacing::default();
        pacing.appended(start, start + 2 * MS);
        // the next tick, 200 ms later, appends
        assert!(pacing.tick_appends(start + 202 * MS));
        assert!(!pacing.tick_appends(start + 5 * MS));
    }

    #[test]
    fn a_costly_append_holds_ticks_for_three_times_its_cost() {
        let start = Instant::now();
        let mut pacing = AppendPacing::default();
        let ended = start + 300 * MS;
        pacing.appended(start, ended);
        assert!(!pacing.tick_appends(ended + 200 * MS));
        assert!(!pacing.tick_appends(ended + 899 * MS));
        assert!(pacing.tick_appends(ended + 900 * MS));
    }
}
