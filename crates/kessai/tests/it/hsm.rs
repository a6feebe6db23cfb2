//! A center whose issuer master keys move into a PKCS#11 token (SoftHSM2,
//! scripts/with-softhsm), as an operator moves them: `kessai center hsm
//! import`, the key file removed, the same database, the same cards.

use std::path::Path;

use serde_json::Value;

use crate::harness::{CenterProcess, Deployment, card_balance, free_port, purchase_offer};
use crate::{kessai, stderr, stdout};

/// `config` with an `[hsm]` section naming the test token, master keys
/// labelled `prefix-…`.
fn with_hsm(d: &Deployment, config: &Path, name: &str, prefix: &str) -> std::path::PathBuf {
    let token = kessai_testkit::softhsm().unwrap();
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        "[hsm]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_env = \"KESSAI_TEST_PKCS11_PIN\"\nlabel_prefix = \"{prefix}\"\n",
        token.module.display(),
        token.token_label
    ));
    let path = d.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One purchase of `amount` by card `card_id` (offer profile, three round
/// trips) on the center at `base`, taken from its balance; its completion
/// (SIG3).
fn pay(d: &mut Deployment, base: &str, image: &Path, card_id: &str, n: u32, amount: u64) -> String {
    let bill = d.bill(n, amount);
    let before = card_balance(image);
    let reply = purchase_offer(d, base, &bill, image, card_id, &format!("hsm{n}"));
    assert_eq!(card_balance(image), before - amount);
    reply["completion"].as_str().unwrap().to_owned()
}

#[test]
fn master_keys_moved_into_a_token_serve_the_same_cards_and_new_ones() {
    if kessai_testkit::softhsm().is_none() {
        return;
    }
    let mut d = Deployment::new(23);
    let port = free_port();
    let memory = d.center_config("a", port, None);
    let out = kessai(&["center", "init", "--config", memory.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (old_card, old_image) = d.issue_card(&memory, 1, 40_000);

    // The operator imports the sealed keys into the token and removes the
    // file: the center now has no master key outside the token.
    let prefix = format!("kessai-e2e-{}", std::process::id());
    let hsm = with_hsm(&d, &memory, "a-hsm", &prefix);
    let c = hsm.to_str().unwrap();
    let out = kessai(&["center", "hsm", "import", "--config", c], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.contains(&format!("created {prefix}-01-enc, {prefix}-01-mac, {prefix}-01-dek")), "{listing}");
    assert!(listing.contains("key version 1: check values ENC "), "{listing}");
    std::fs::remove_file(d.center_dir("a").join("issuer-master-keys.sealed")).unwrap();
    let again = kessai(&["center", "hsm", "import", "--config", c], &[]);
    assert!(!again.status.success(), "the file is gone: nothing to import");

    // A wrong PIN opens nothing.
    let wrong = kessai(&["center", "hsm", "list", "--config", c], &[("KESSAI_TEST_PKCS11_PIN", "00000000")]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("C_Login"), "{}", stderr(&wrong));

    // The same database takes the token's keys (one fingerprint for the
    // same keys, wherever they are); a card issued before pays, and a card
    // personalized from the token pays.
    let (new_card, new_image) = d.issue_card(&hsm, 2, 30_000);
    let _center = CenterProcess::start(&hsm);
    d.wait_healthy(port);
    let base = format!("https://127.0.0.1:{port}");
    d.register_mall(&base);
    pay(&mut d, &base, &old_image, &old_card, 1, 1_200);
    pay(&mut d, &base, &new_image, &new_card, 2, 800);
    let log = std::fs::read_to_string(d.dir.path().join("a-hsm.toml.log")).unwrap();
    assert!(log.contains("PKCS#11 token"), "the center says where its keys are: {log}");
    drop(_center);

    // A master key rotation: key version 2 made in the token; the database
    // takes the added version; new cards get it, the first card is re-keyed
    // to it (PUT KEY), and cards of both versions pay.
    let file_way = kessai(&["center", "add-key-version", "--config", c], &[]);
    assert!(!file_way.status.success() && stderr(&file_way).contains("hsm generate"), "{}", stderr(&file_way));
    let out = kessai(&["center", "hsm", "generate", "--config", c, "--version", "2"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (v2_card, v2_image) = d.issue_card(&hsm, 3, 20_000);
    let info = stdout(&kessai(&["card", "info", "--image", v2_image.to_str().unwrap()], &[]));
    assert!(info.contains("key version    0x02"), "{info}");
    let old_img = old_image.to_str().unwrap();
    let out = kessai(&["center", "rekey-card", "--config", c, "--image", old_img], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("from key version 1 to 2"), "{}", stdout(&out));
    let info = stdout(&kessai(&["card", "info", "--image", old_img], &[]));
    assert!(info.contains("key version    0x02"), "{info}");
    let _center = CenterProcess::start(&hsm);
    d.wait_healthy(port);
    pay(&mut d, &base, &v2_image, &v2_card, 3, 500);
    pay(&mut d, &base, &old_image, &old_card, 4, 700);
    pay(&mut d, &base, &new_image, &new_card, 5, 300);
    drop(_center);

    // The center's signing key moves into the token as a rotation does:
    // made there, then signing while the file's key stays published.
    let signs = d.dir.path().join("a-sign.toml");
    let label = format!("{prefix}-center-signing");
    let text = std::fs::read_to_string(&hsm).unwrap();
    let old_key = d.center_dir("a").join("center.key");
    let old = serde_json::from_str::<Value>(&stdout(&kessai(&["keys", "jwks", old_key.to_str().unwrap()], &[])))
        .unwrap()["keys"][0]
        .clone();
    let old_jwk = d.dir.path().join("old-center.jwk");
    std::fs::write(&old_jwk, old.to_string()).unwrap();
    let published = format!("published_keys = [\"{}\"]\n", old_jwk.display());
    std::fs::write(&signs, format!("{published}{text}signing_key_label = \"{label}\"\n")).unwrap();
    let s = signs.to_str().unwrap();
    let out = kessai(&["center", "hsm", "generate-signing-key", "--config", s], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token_kid = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["kid"].as_str().unwrap().to_owned();
    let _center = CenterProcess::start(&signs);
    d.wait_healthy(port);
    let (_, jwks) = d.get(&format!("{base}/.well-known/jwks.json")).unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [token_kid.as_str(), old["kid"].as_str().unwrap()], "the token's key signs, the file's published");
    let sig3 = pay(&mut d, &base, &new_image, &new_card, 6, 100);
    let header = kessai_core::base64url::decode(sig3.split('.').next().unwrap()).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["kid"], Value::from(token_kid.as_str()), "SIG3 signed in the token");
    drop(_center);

    // A token holding other master keys is refused by that database.
    let other_prefix = format!("kessai-e2e-other-{}", std::process::id());
    let other = with_hsm(&d, &memory, "a-other", &other_prefix);
    let out = kessai(&["center", "hsm", "generate", "--config", other.to_str().unwrap(), "--version", "1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = kessai(&["center", "init", "--config", other.to_str().unwrap()], &[]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("the issuer master keys"), "{}", stderr(&refused));
}
