//! `kessai demo`: a whole purchase with no browser, with a transcript a
//! person can check.

use crate::{kessai, stderr, stdout};

#[test]
fn demo_buys_the_ebook_and_shows_every_signed_message_verified() {
    let out = kessai(&["demo"], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "kessai demo failed:\n{text}\n{}", stderr(&out));
    for (message, signer) in [
        ("SIG1 bill", "kessai-mall"),
        ("SIG2 offer", "center"),
        ("SIG3 completion", "center"),
        ("SIG4 receipt", "kessai-mall"),
    ] {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(message)).unwrap_or_else(|| panic!("{message}:\n{text}"));
        assert!(line.contains(&format!("iss {signer} ")), "{message} signed by {signer}: {line}");
        assert!(line.contains("VERIFIED"), "{message} verified: {line}");
    }
    let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle}:\n{text}"));
    // The protocol in its order: bill, secure session, offer, DEBIT, completion, receipt.
    let order = ["SIG1 bill", "INITIALIZE UPDATE", "EXTERNAL AUTHENTICATE", "sealed READ BALANCE", "SIG2 offer"];
    let order = order.iter().chain(&["sealed DEBIT", "SIG3 completion", "SIG4 receipt"]);
    let positions: Vec<usize> = order.map(|n| position(n)).collect();
    assert!(positions.is_sorted(), "the transcript follows the protocol's order:\n{text}");
    assert!(text.contains("A Short Guide to Stored Value"), "the e-book was downloaded:\n{text}");
    let balances = text.lines().find(|l| l.contains("(its image)")).unwrap();
    assert!(balances.contains("JPY 30,000") && balances.contains("JPY 28,800"), "{balances}");
    assert!(text.contains("store payable bookshop"), "{text}");
    assert!(text.contains("pending") && text.contains("posted"), "the ledger transfer, pending then posted:\n{text}");
}

#[test]
fn demo_repeat_prints_percentiles_of_the_purchase_time() {
    let out = kessai(&["demo", "--repeat", "3"], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("3 purchases"), "{text}");
    let line = text.lines().find(|l| l.contains("to receipt")).unwrap();
    assert!(line.contains("p50") && line.contains("p99"), "{line}");
}
