//! Link flags for the corral binary only.

fn main() {
    // Relative relocations packed (DT_RELR, glibc >= 2.36, binutils >= 2.38): the
    // dynamic loader applies the binary's ~40,000 relocations from a few KiB of
    // bitmaps instead of a ~1 MiB table, a part of every `corral run`'s start-up.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
