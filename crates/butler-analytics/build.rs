//! Records the commit the binary is built from (`BUTLER_GIT_SHA`, for the
//! `butler_analytics_build_info` metric): the environment's value when set (image
//! builds without `.git`), else `git rev-parse`, else `unknown`.

fn main() {
    println!("cargo:rerun-if-env-changed=BUTLER_GIT_SHA");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    let sha = std::env::var("BUTLER_GIT_SHA").ok().or_else(|| {
        std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=BUTLER_GIT_SHA={}",
        sha.unwrap_or_else(|| "unknown".to_owned())
    );
}
