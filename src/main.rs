//! `signalbox`: the desktop app, the relay daemon, and the scripting tools, in one binary.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let (args, matches) = cli::parse();
    cli::init_tracing(&args);
    match cli::run(args, &matches) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
