//! `cargo bench -p audit-logs-bench`: the quick benchmark (the same as `npm run bench`'s Rust part).

fn main() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_audit-logs-bench"))
        .args(std::env::args().skip(1).filter(|a| a != "--bench"))
        .status()
        .expect("the benchmark binary runs");
    std::process::exit(status.code().unwrap_or(1));
}
