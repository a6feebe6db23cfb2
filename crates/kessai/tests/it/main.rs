//! The `kessai` binary as an operator uses it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod card;
mod center;
mod chaos;
mod cluster;
mod crash;
mod demo;
mod harness;
mod hsm;
mod keys;
mod member;
mod ops;
mod pg;
mod pki;
mod processes;
mod rotation;
mod up;

use std::process::{Command, Output};

pub fn kessai(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kessai"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `kessai wallet member register` for the test member Hanako Yamada, her
/// activation code in `CODE` and passwords in `PW_A` and `PW_B`.
pub fn member_register_args<'a>(wallet: &'a str, member: &'a str) -> Vec<&'a str> {
    vec![
        "wallet",
        "--config",
        wallet,
        "member",
        "register",
        "--member",
        member,
        "--code-env",
        "CODE",
        "--name",
        "Hanako Yamada",
        "--address",
        "1-2-3 Chiyoda, Tokyo",
        "--birth-date",
        "1990-04-01",
        "--password-a-env",
        "PW_A",
        "--password-b-env",
        "PW_B",
    ]
}
