//! The native `audit-logs` binary; `npx audit-logs` runs the same code through the Node package.

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut arguments: Vec<String> = std::env::args().collect();
    arguments.remove(0); // the program's own name
    let status = runtime.block_on(audit_logs_cli::run(arguments));
    drop(runtime);
    std::process::exit(status);
}
