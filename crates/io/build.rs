//! With the `dpdk` feature: compiles the C shim over DPDK and generates the
//! Rust bindings of the shim and of the few DPDK functions espgate calls,
//! with flags from `pkg-config libdpdk` (Debian's libdpdk-dev, 22.11).
//! With the `ipsec-mb` feature: compiles the shim over intel-ipsec-mb and
//! links the library (its Rust declarations are written by hand: two
//! functions and one structure).

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk::build();
    #[cfg(feature = "ipsec-mb")]
    ipsec_mb::build();
}

#[cfg(feature = "ipsec-mb")]
mod ipsec_mb {
    pub fn build() {
        println!("cargo:rerun-if-changed=src/ipsec_mb/shim.c");
        cc::Build::new()
            .file("src/ipsec_mb/shim.c")
            .compile("espgate_ipsec_mb_shim");
        println!("cargo:rustc-link-lib=IPSec_MB");
    }
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;

    pub fn build() {
        println!("cargo:rerun-if-changed=src/dpdk/shim.c");
        println!("cargo:rerun-if-changed=src/dpdk/shim.h");
        pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .expect("the dpdk feature needs DPDK 22.11 (apt install libdpdk-dev)");
        // DPDK's own compile flags (-include rte_config.h, -march=corei7),
        // for the shim and for clang under bindgen alike.
        let out = std::process::Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("pkg-config");
        let cflags: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        let mut cc = cc::Build::new();
        cc.file("src/dpdk/shim.c").flag("-Wno-unused-parameter");
        for f in &cflags {
            cc.flag(f);
        }
        cc.compile("espgate_dpdk_shim");
        let clang_args = cflags;
        let bindings = bindgen::Builder::default()
            .header("src/dpdk/shim.h")
            .clang_args(&clang_args)
            .rust_edition(bindgen::RustEdition::Edition2024)
            .allowlist_function("espgate_.*")
            .allowlist_function("rte_eal_init|rte_eal_cleanup|rte_strerror|rte_pktmbuf_pool_create|rte_mempool_free")
            .allowlist_function("rte_eth_dev_get_port_by_name|rte_eth_dev_count_avail|rte_eth_dev_stop|rte_eth_dev_close")
            .opaque_type("rte_mbuf|rte_mempool")
            .layout_tests(false)
            .generate_comments(false)
            .generate()
            .expect("bindgen over src/dpdk/shim.h");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        bindings
            .write_to_file(out.join("dpdk_bindings.rs"))
            .expect("write bindings");
    }
}
