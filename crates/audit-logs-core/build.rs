fn main() {
    // refinery's embed_migrations! reads the files at compile time but does not ask cargo to
    // watch the folder, so a new migration would otherwise be missed until a clean build.
    println!("cargo:rerun-if-changed=../../migrations");
    // With the `napi` feature this crate declares JavaScript types too: napi's CLI reruns the
    // build when it needs their TypeScript written again.
    #[cfg(feature = "napi")]
    napi_build::setup();
}
