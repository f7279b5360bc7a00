//! Statements sent together, in order: tokio-postgres sends a statement when its future is first
//! polled, so futures polled in order, each before any is awaited, reach the server in that order
//! in one round trip, and their answers come back in the same order.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// One statement's future in a pipeline.
pub(super) type Step<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `steps` together, each first polled after the one before it, and answers their outputs
/// in the same order.
pub(super) async fn in_order<T>(mut steps: Vec<Step<'_, T>>) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = steps.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (step, output) in steps.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match step.as_mut().poll(cx) {
                    Poll::Ready(done) => *output = Some(done),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn steps_start_in_order_and_answer_in_order() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let steps: Vec<Step<'_, usize>> = (0..50usize)
            .map(|i| {
                let started = Arc::clone(&started);
                Box::pin(async move {
                    started.lock().unwrap().push(i);
                    // the later steps finish first
                    tokio::time::sleep(std::time::Duration::from_millis(50 - i as u64)).await;
                    i * 2
                }) as Step<'_, usize>
            })
            .collect();
        let outputs = in_order(steps).await;
        assert_eq!(outputs, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(*started.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }
}
