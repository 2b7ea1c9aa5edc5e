//! Records what the binary is built from, for `--version` and the
//! `butler_analytics_build_info` metric: the commit (`BUTLER_GIT_SHA`: the
//! environment's value when set, as image builds without `.git` pass it, else
//! `git rev-parse`, else `unknown`) and the build date (`BUTLER_BUILD_DATE`, else
//! `SOURCE_DATE_EPOCH`'s day, else today, UTC).

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=BUTLER_GIT_SHA");
    println!("cargo:rerun-if-env-changed=BUTLER_BUILD_DATE");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    let sha = non_empty_env("BUTLER_GIT_SHA").or_else(|| {
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
    let date = non_empty_env("BUTLER_BUILD_DATE").unwrap_or_else(|| {
        let seconds = non_empty_env("SOURCE_DATE_EPOCH")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
        civil_date(seconds / 86_400)
    });
    println!("cargo:rustc-env=BUTLER_BUILD_DATE={date}");
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
