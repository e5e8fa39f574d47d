//! `signalbox`: the desktop app, the relay daemon, and the scripting tools, in one binary.

use std::process::ExitCode;

mod cli;

/// mimalloc rather than the system's allocator: on the relay's busiest paths (a frame queued to
/// each receiver, batched, kept for replay, then freed on another task's thread) glibc's
/// malloc and free were about 14 % of the relay's CPU, and its throughput swung by a third
/// from one run to the next with the heap's layout (see `bench/results/`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Freed memory goes back to the system after 10 ms, not a second (see the function).
    signalbox_relay::allocator::purge_promptly();
    let (args, matches) = cli::parse();
    cli::init_tracing(&args);
    match cli::run(args, &matches) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once (many errors already name their
/// cause in their own text).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_names_its_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot listen on 127.0.0.1:4433: {source}")]
        struct Bind {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Bind { source: io });
        assert_eq!(
            super::one_line(&e),
            "cannot listen on 127.0.0.1:4433: Address already in use"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::one_line(&e), "outer: inner");
    }
}
