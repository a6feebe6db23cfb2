//! `kessai wallet member`: the keystore from the command line, passwords
//! from the environment or a file, never from argv.

use crate::{kessai, stderr, stdout};

fn wallet_toml(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nca_file = \"{}\"\n[center]\nurl = \"https://127.0.0.1:1\"\n\
         party_id = \"center\"\n[reader]\nkind = \"in-process\"\nimage = \"{}\"\n",
        dir.join("wallet").display(),
        dir.join("ca.crt").display(),
        dir.join("card.img").display()
    );
    let path = dir.join("wallet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_member_keystore_is_made_shown_and_read_with_its_passwords() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wallet")).unwrap();
    let config = wallet_toml(dir.path());
    let config = config.to_str().unwrap();
    let b_file = dir.path().join("b.txt");
    std::fs::write(&b_file, "password B from a file\n").unwrap();
    let env = [("PW_A", "password A of the member")];
    let init = kessai(
        &["wallet", "--config", config, "member", "init", "--password-a-env", "PW_A", "--password-b-file"],
        &env,
    );
    assert!(!init.status.success(), "an option without its value is refused");
    let init = kessai(
        &[
            "wallet",
            "--config",
            config,
            "member",
            "init",
            "--password-a-env",
            "PW_A",
            "--password-b-file",
            b_file.to_str().unwrap(),
        ],
        &env,
    );
    assert!(init.status.success(), "{}", stderr(&init));
    let kid = stdout(&init).lines().find_map(|l| l.strip_prefix("verification key ")).unwrap().to_owned();
    assert_eq!(kid.len(), 43, "a JWK thumbprint");

    let show = kessai(&["wallet", "--config", config, "member", "show", "--password-a-env", "PW_A"], &env);
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(stdout(&show).contains(&kid) && stdout(&show).contains("passwords A and B"), "{}", stdout(&show));
    let history = kessai(&["wallet", "--config", config, "member", "history", "--password-a-env", "PW_A"], &env);
    assert!(stdout(&history).contains("no purchases recorded"), "{}", stdout(&history));

    // A wrong password A: refused, and the file is as it was.
    let before = std::fs::read(dir.path().join("wallet").join("member.kms")).unwrap();
    let wrong = kessai(
        &["wallet", "--config", config, "member", "show", "--password-a-env", "PW_A"],
        &[("PW_A", "not the password")],
    );
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("wrong password A"), "{}", stderr(&wrong));
    // Never overwritten; no password on the command line.
    let again = kessai(&["wallet", "--config", config, "member", "init", "--password-a-env", "PW_A"], &env);
    assert!(!again.status.success() && stderr(&again).contains("never overwritten"), "{}", stderr(&again));
    let argv = kessai(&["wallet", "--config", config, "member", "show", "--password-a", "x"], &[]);
    assert!(!argv.status.success(), "no such option");
    assert_eq!(std::fs::read(dir.path().join("wallet").join("member.kms")).unwrap(), before);

    // Password A changed without registering again: the old one opens
    // nothing, the new one shows the same key.
    let passwd = kessai(
        &[
            "wallet",
            "--config",
            config,
            "member",
            "passwd",
            "--change-a",
            "--password-a-env",
            "PW_A",
            "--new-password-a-env",
            "NEW_A",
        ],
        &[("PW_A", "password A of the member"), ("NEW_A", "a new password A")],
    );
    assert!(passwd.status.success(), "{}", stderr(&passwd));
    let old = kessai(&["wallet", "--config", config, "member", "show", "--password-a-env", "PW_A"], &env);
    assert!(!old.status.success());
    let new = kessai(
        &["wallet", "--config", config, "member", "show", "--password-a-env", "NEW_A"],
        &[("NEW_A", "a new password A")],
    );
    assert!(new.status.success() && stdout(&new).contains(&kid), "{}", stderr(&new));
}
