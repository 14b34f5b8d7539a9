//! `embed_migrations!` reads `migrations/` at compile time but only tracks the files it found: a
//! new migration directory would leave a warm build with the old schema compiled in. Cargo scans
//! the whole directory named here and rebuilds the crate when anything in it changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
