//! `cargo bench -p audit-logs-bench`: the quick benchmark (the same as `npm run bench`'s Rust part).

fn main() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_audit-logs-bench"))
        // The program's own name and cargo's `--bench` are not the benchmark's arguments.
        .args(
            std::env::args()
                .enumerate()
                .filter(|(i, a)| *i > 0 && a != "--bench")
                .map(|(_, a)| a),
        )
        .status()
        .expect("the benchmark binary runs");
    std::process::exit(status.code().unwrap_or(1));
}
