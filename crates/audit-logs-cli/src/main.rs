//! The native `audit-logs` binary; `npx audit-logs` runs the same code through the Node package.

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let status = runtime.block_on(audit_logs_cli::run(std::env::args().skip(1).collect()));
    drop(runtime);
    std::process::exit(status);
}
