//! `dataforge migrate`: shows the plan that brings the database in line with the schema files,
//! applies it on request, and lists the schema versions applied.

use std::process::ExitCode;

use dataforge_domain::ports::{DatasetStorage, MigrationPolicy};
use dataforge_duckdb::DuckDbStore;

use crate::settings::Settings;
use crate::{fail, print_problems};

/// Plans and, with `policy.apply`, applies the migration.
pub fn migrate(settings: &Settings, policy: MigrationPolicy) -> ExitCode {
    let catalog = match dataforge_schema_toml::load_catalog(&settings.server.schemas) {
        Ok(catalog) => catalog,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    let store = match DuckDbStore::open(&settings.database) {
        Ok(store) => store,
        Err(e) => return fail(&e.to_string()),
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
pub fn history(settings: &Settings) -> ExitCode {
    let store = match DuckDbStore::open(&settings.database) {
        Ok(store) => store,
        Err(e) => return fail(&e.to_string()),
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
