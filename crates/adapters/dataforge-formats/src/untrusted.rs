//! The Arrow and Parquet readers trust some of what a file declares and can panic on a file that
//! lies (arrow-ipc 58 builds a null buffer shorter than its array before validating it; found by
//! the `decode_arrow` fuzz target). A body is a client's input, so a panic while reading one is
//! turned into the client's error, never a failed request task.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs one read step of an untrusted file; a panic becomes `Err` with its message.
pub(crate) fn guarded<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(step)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the reader failed on it".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::guarded;

    #[test]
    fn a_panic_is_an_error_with_its_message() {
        assert_eq!(guarded(|| 7), Ok(7));
        let failed: Result<(), String> = guarded(|| panic!("buffer not large enough"));
        assert_eq!(failed, Err("buffer not large enough".to_owned()));
    }
}
