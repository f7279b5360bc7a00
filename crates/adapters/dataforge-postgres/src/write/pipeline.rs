//! Statements sent together, in order: tokio-postgres sends a statement when its future is first
//! polled, so futures polled in order, each before any is awaited, reach the server in that order
//! in one round trip, and their answers come back in the same order.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// One statement's future in a pipeline.
pub(super) type Step<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `steps` together, each first polled after the one before it, and answers their outputs
/// in the same order. Once all are sent, each is awaited in turn: answers come in order, so a
/// step is polled again only when its own may be there.
pub(super) async fn in_order<T>(steps: Vec<Step<'_, T>>) -> Vec<T> {
    let mut started: Vec<(Step<'_, T>, Option<T>)> =
        steps.into_iter().map(|step| (step, None)).collect();
    std::future::poll_fn(|cx| {
        for (step, output) in started.iter_mut() {
            if let Poll::Ready(done) = step.as_mut().poll(cx) {
                *output = Some(done);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut outputs = Vec::with_capacity(started.len());
    for (step, output) in started {
        outputs.push(match output {
            Some(done) => done,
            None => step.await,
        });
    }
    outputs
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
