//! Downloads: per order, unguessable, only after payment, expiring.

use axum::http::StatusCode;

use crate::support::*;

/// The download links of an order, from the database (before payment the
/// page does not show them; a leaked link must still not work).
async fn links(w: &World, order_id: &str) -> Vec<String> {
    w.state.db.downloads_of(order_id).await.unwrap().into_iter().map(|d| format!("/download/{}", d.token)).collect()
}

#[tokio::test]
async fn a_download_before_payment_is_refused() {
    let w = world().await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1), ("print-poster-01", 1)]).await;
    let links = links(&w, &order_id).await;
    assert_eq!(links.len(), 1, "only the downloadable line gets a link");
    let a = get(&w.app, &links[0]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.title(), "Not paid yet — Kessai Mall");
    assert_eq!(links[0].len(), "/download/".len() + 32, "128 random bits");
}

#[tokio::test]
async fn after_payment_the_download_works_until_it_expires() {
    let w = world().await;
    let (order_id, _, _) = paid_order(&w, "record-shop", &[("audio-chime-01", 1)]).await;
    let links = links(&w, &order_id).await;
    let a = get(&w.app, &links[0]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "audio/wav");
    assert_eq!(a.headers["content-disposition"], "attachment; filename=\"kissa-chime.wav\"");
    let file = std::fs::read(w.config.data_dir.join("content/kissa-chime.wav")).unwrap();
    assert_eq!(a.body.len(), String::from_utf8_lossy(&file).len());

    w.clock.advance_s(w.config.download_ttl_s - 1);
    assert_eq!(get(&w.app, &links[0]).await.status, StatusCode::OK, "still valid just before expiry");
    w.clock.advance_s(2);
    let expired = get(&w.app, &links[0]).await;
    assert_eq!(expired.status, StatusCode::GONE);
    assert_eq!(expired.title(), "Link expired — Kessai Mall");
}

#[tokio::test]
async fn unknown_or_malformed_tokens_are_not_found() {
    let w = world().await;
    paid_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    for path in ["/download/00000000000000000000000000000000", "/download/../../etc/passwd", "/download/ABC"] {
        assert_eq!(get(&w.app, path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_text_download_delivers_the_file_exactly() {
    let w = world().await;
    let (order_id, _, _) = paid_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let a = get(&w.app, &links(&w, &order_id).await[0]).await;
    assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
    let file = std::fs::read_to_string(w.config.data_dir.join("content/stored-value-guide.txt")).unwrap();
    assert_eq!(a.body, file);
}
