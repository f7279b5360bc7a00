//! `dataforge keys create|list|revoke`: the API keys, in the key file a running server follows.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use dataforge_auth::KeyFile;

use crate::settings::Settings;
use crate::wire::{StoreArgs, fail, load_settings};

#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: KeysArgs) -> ExitCode {
    match load_settings(&args.store) {
        Ok(settings) => run_on(args.command, &settings),
        Err(code) => code,
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once, alone on the last line.
    Create {
        /// The key's name (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        /// DATASET:PERMS[:RULE], e.g. `well_production:read,write` or
        /// `*:read:field_code=in.(1,2)`; PERMS from read, write, update, delete, admin. Repeatable.
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
        /// When the key stops working: a date (2027-01-31) or an RFC 3339 timestamp.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List the keys: name, grants, expiry, creation (never secrets).
    List,
    /// Revoke a key by name; a running server refuses it within a second.
    Revoke { name: String },
}

fn run_on(command: KeysCommand, settings: &Settings) -> ExitCode {
    let file = KeyFile::new(settings.keys_file());
    let done = match command {
        KeysCommand::Create {
            name,
            grants,
            expires,
        } => file
            .create(&name, &grants, expires.as_deref())
            .map(|secret| {
                eprintln!(
                    "created key `{name}` in {}; its secret (shown only now):",
                    file.path().display()
                );
                println!("{secret}");
            }),
        KeysCommand::List => file.list().map(|keys| {
            for key in keys {
                let expires = key.expires.as_deref().unwrap_or("never");
                println!(
                    "{}\t{}\texpires {expires}\tcreated {}",
                    key.name,
                    key.grants.join(" "),
                    key.created
                );
            }
        }),
        KeysCommand::Revoke { name } => file
            .revoke(&name)
            .map(|()| eprintln!("revoked key `{name}`")),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}
