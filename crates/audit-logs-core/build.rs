fn main() {
    // refinery's embed_migrations! reads the files at compile time but does not ask cargo to
    // watch the folder, so a new migration would otherwise be missed until a clean build.
    println!("cargo:rerun-if-changed=../../migrations");
}
