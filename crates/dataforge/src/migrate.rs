//! `dataforge migrate`: shows the plan that brings the database in line with the schema files,
//! applies it on request, and lists the schema versions applied.

use std::process::ExitCode;

use clap::Args;
use dataforge_domain::ports::MigrationPolicy;

use crate::database;
use crate::settings::Settings;
use crate::wire::{StoreArgs, fail, load_catalog, load_settings};

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Apply the safe and checked steps (a start applies those too).
    #[arg(long)]
    apply: bool,
    /// With --apply, also apply destructive steps: removed fields and datasets, changed
    /// types and keys. Their data is lost.
    #[arg(long, requires = "apply")]
    allow_destructive: bool,
    /// List every schema version the database has applied, and stop.
    #[arg(long, conflicts_with_all = ["apply", "allow_destructive"])]
    history: bool,
}

pub fn run(args: MigrateArgs) -> ExitCode {
    match load_settings(&args.store) {
        Ok(settings) if args.history => history(&settings),
        Ok(settings) => migrate(
            &settings,
            MigrationPolicy {
                apply: args.apply,
                allow_destructive: args.allow_destructive,
                deliberate: true,
            },
        ),
        Err(code) => code,
    }
}

/// Plans and, with `policy.apply`, applies the migration.
fn migrate(settings: &Settings, policy: MigrationPolicy) -> ExitCode {
    let catalog = match load_catalog(&settings.server.schemas) {
        Ok(catalog) => catalog,
        Err(code) => return code,
    };
    let store = match database::open(&settings.database) {
        Ok(store) => store,
        Err(message) => return fail(&message),
    };
    let prepared = store.prepare(&catalog, policy);
    store.close();
    let report = match prepared {
        Ok(report) => report,
        Err(e) => return fail(&e.to_string()),
    };
    if report.is_empty() {
        println!("the database matches the schemas: nothing to migrate");
    } else {
        println!("{}", report.describe());
    }
    if report.applied {
        let versions: Vec<String> = report
            .versions
            .iter()
            .map(|(dataset, version)| format!("{dataset} v{version}"))
            .collect();
        println!("applied; schema versions: {}", versions.join(", "));
    } else if !report.is_empty() {
        println!(
            "nothing was changed: `dataforge migrate --apply` applies the safe and checked steps, \
             `--apply --allow-destructive` the destructive ones too"
        );
    }
    ExitCode::SUCCESS
}

/// Prints every schema version applied, oldest first.
fn history(settings: &Settings) -> ExitCode {
    let store = match database::open(&settings.database) {
        Ok(store) => store,
        Err(message) => return fail(&message),
    };
    let history = store.history();
    store.close();
    match history {
        Ok(versions) if versions.is_empty() => {
            println!("no schema version recorded yet");
            ExitCode::SUCCESS
        }
        Ok(versions) => {
            for version in versions {
                let fields = version.document["fields"]
                    .as_array()
                    .map_or(0, |fields| fields.len());
                println!(
                    "{}\tv{}\t{}\t{fields} field(s)",
                    version.dataset, version.version, version.applied_at
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}
