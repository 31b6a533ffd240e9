//! `dev`: the developer's tasks, in Rust on the test harness (an xtask kept out
//! of the release build; scripts/stack.sh and scripts/demo.sh call it).
//!
//! ```text
//! dev stack up DIR      start the local stack in DIR; writes DIR/stack.env
//! dev stack down DIR    stop everything started in DIR and remove DIR
//! dev demo [--keep]     walk a traveler through a running stack (its stack.env exported)
//! ```

// Developer tooling: a failed unwrap stops it with its message.
#![allow(clippy::unwrap_used)]

mod demo;
mod stack;

use std::path::PathBuf;

const USAGE: &str = "usage: dev stack up|down DIR | dev demo [--keep]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["stack", "up", dir] => stack::up(&PathBuf::from(dir)).await,
        ["stack", "down", dir] => stack::down(&PathBuf::from(dir)),
        ["demo"] => demo::walk(false).await,
        ["demo", "--keep"] => demo::walk(true).await,
        _ => anyhow::bail!(USAGE),
    }
}
