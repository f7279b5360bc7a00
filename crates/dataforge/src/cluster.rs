//! `dataforge cluster`: rewrites a dataset's stored rows in its `cluster_by` order.

use std::process::ExitCode;

use clap::Args;

use crate::wire::{StoreArgs, close, fail, load_settings, runtime, wire};

#[derive(Args)]
pub struct ClusterArgs {
    /// Dataset to cluster.
    #[arg(long)]
    dataset: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: ClusterArgs) -> ExitCode {
    let settings = match load_settings(&args.store) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let dataset = args.dataset;
    runtime.block_on(async {
        let (app, store, _) = match wire(&settings).await {
            Ok(wired) => wired,
            Err(code) => return code,
        };
        let started = std::time::Instant::now();
        let clustered = app.cluster(&dataset).await;
        drop(app);
        close(store).await;
        match clustered {
            Ok(rows) => {
                println!(
                    "{dataset}: {rows} rows rewritten in cluster_by order in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        }
    })
}
