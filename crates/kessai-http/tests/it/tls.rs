//! Real TLS and mutual TLS on 127.0.0.1 with certificates of a local CA.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::{get, post};
use kessai_http::{ClientError, HttpsClient, Limits, PeerIdentity, serve, serve_plain};
use kessai_tls::{CaDir, Party, Role, client_config, server_config};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::layered;

struct Pki {
    _tmp: tempfile::TempDir,
    ca: CaDir,
    /// A CA the server does not trust.
    stranger: CaDir,
}

fn pki() -> Pki {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    ca.init().unwrap();
    ca.issue(Role::Server, "localhost", &["127.0.0.1".into()]).unwrap();
    ca.issue(Role::Client(Party::Store), "kessai-mall", &[]).unwrap();
    let stranger = CaDir::new(tmp.path().join("stranger"));
    stranger.init().unwrap();
    stranger.issue(Role::Client(Party::Center), "center", &[]).unwrap();
    Pki { _tmp: tmp, ca, stranger }
}

fn app() -> Router {
    Router::new()
        .route(
            "/whoami",
            get(
                |peer: Option<axum::Extension<PeerIdentity>>, ConnectInfo(remote): ConnectInfo<SocketAddr>| async move {
                    let who = peer.map_or_else(
                        || "anonymous".to_owned(),
                        |p| format!("{} ({})", p.0.name, p.0.party.map_or("no party", |p| p.as_str())),
                    );
                    format!("{who} from {}", remote.ip())
                },
            ),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route("/form", post(form_seen))
}

/// Answers a form post as a store's cart does: 303 with a cookie, and the
/// fields and `Cookie` it received as JSON in the body.
async fn form_seen(
    headers: axum::http::HeaderMap,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let cookie = headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = serde_json::json!({ "fields": fields, "cookie": cookie }).to_string();
    (StatusCode::SEE_OTHER, [("location", "/cart"), ("set-cookie", "cart=ebook-1; Path=/")], body).into_response()
}

struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

async fn start(config: rustls::ServerConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (router, _) = layered(app(), &Limits::default());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(serve(router, listener, Arc::new(config), async {
        let _ = rx.await;
    }));
    Running { url, stop: Some(tx), task }
}

#[tokio::test]
async fn mutual_tls_gives_the_handler_the_peer_identity() {
    let p = pki();
    let server = start(server_config(&p.ca, "localhost", Some(&p.ca.ca_cert())).unwrap()).await;
    let client = HttpsClient::new(client_config(&p.ca.ca_cert(), Some((&p.ca, "kessai-mall"))).unwrap(), 5_000);
    let (status, body) = client.get(&format!("{}/whoami", server.url)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"kessai-mall (store) from 127.0.0.1");
    let (status, body) =
        client.post_json(&format!("{}/echo", server.url), &serde_json::json!({"a": 1}), &[]).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &br#"{"a":1}"#[..]));
    server.stop().await;
}

#[tokio::test]
async fn under_mutual_tls_a_client_without_a_trusted_certificate_is_refused() {
    let p = pki();
    let server = start(server_config(&p.ca, "localhost", Some(&p.ca.ca_cert())).unwrap()).await;
    let url = format!("{}/whoami", server.url);
    let anonymous = HttpsClient::new(client_config(&p.ca.ca_cert(), None).unwrap(), 5_000);
    let refused = anonymous.get(&url).await;
    assert!(matches!(refused, Err(ClientError::Request(_))), "{refused:?}");
    let stranger = HttpsClient::new(client_config(&p.ca.ca_cert(), Some((&p.stranger, "center"))).unwrap(), 5_000);
    let refused = stranger.get(&url).await;
    assert!(matches!(refused, Err(ClientError::Request(_))), "{refused:?}");
    // The server survived both failed handshakes and garbage bytes.
    let mut raw =
        tokio::net::TcpStream::connect(url.trim_start_matches("https://").trim_end_matches("/whoami")).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(raw);
    let member = HttpsClient::new(client_config(&p.ca.ca_cert(), Some((&p.ca, "kessai-mall"))).unwrap(), 5_000);
    let (status, _) = member.get(&url).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn without_client_auth_the_peer_is_anonymous_and_the_client_checks_the_server() {
    let p = pki();
    let server = start(server_config(&p.ca, "localhost", None).unwrap()).await;
    let client = HttpsClient::new(client_config(&p.ca.ca_cert(), None).unwrap(), 5_000);
    let (status, body) = client.get(&format!("{}/whoami", server.url)).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"anonymous from 127.0.0.1"[..]));
    // A client trusting another CA refuses our server.
    let wary = HttpsClient::new(client_config(&p.stranger.ca_cert(), None).unwrap(), 5_000);
    assert!(wary.get(&format!("{}/whoami", server.url)).await.is_err());
    // Plain http:// is refused by the client before any connection.
    let plain = client.get(&server.url.replace("https", "http")).await;
    assert!(matches!(plain, Err(ClientError::InvalidUrl(_))), "{plain:?}");
    server.stop().await;
}

#[tokio::test]
async fn serve_plain_refuses_non_loopback_and_serves_loopback() {
    let wide = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = serve_plain(Router::new(), wide, async {}).await;
    assert_eq!(refused.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_plain(app(), listener, async {
        let _ = rx.await;
    }));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("anonymous from 127.0.0.1"), "{answer}");
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_form_post_arrives_decoded_with_its_cookie_and_the_redirect_is_not_followed() {
    let p = pki();
    let server = start(server_config(&p.ca, "localhost", None).unwrap()).await;
    let client = HttpsClient::new(client_config(&p.ca.ca_cert(), None).unwrap(), 5_000);
    let fields = [("sku", "ebook-kessai-001"), ("note", "a b&c=d+e%/電子書籍"), ("quantity", "1")];
    let (status, headers, body) = client
        .post_form(&format!("{}/form", server.url), &fields, &[("cookie", "kessai_cart_bookshop=print-poster-01:2")])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "the 303 comes back, not the page it points to");
    assert_eq!(headers["location"], "/cart");
    assert_eq!(headers["set-cookie"], "cart=ebook-1; Path=/");
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let expected: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    assert_eq!(seen["fields"], serde_json::json!(expected), "every field arrives exactly as typed");
    assert_eq!(seen["cookie"], "kessai_cart_bookshop=print-poster-01:2");
    let (status, headers, _) = client.get_with(&format!("{}/whoami", server.url), &[("cookie", "a=b")]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("content-type"));
    server.stop().await;
}

/// L6: one client address holds at most a quarter of the connection slots.
/// Past that, its new connections are closed at once while the ones it
/// holds are served; when it lets one go, it may open another. Another
/// address is not held back by it.
#[tokio::test]
async fn one_client_address_cannot_hold_every_connection() {
    use kessai_http::limits::MAX_CONNECTIONS_PER_CLIENT;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_plain(app(), listener, async {
        let _ = rx.await;
    }));
    let answer = |mut tcp: tokio::net::TcpStream| async move {
        let request = b"GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        let _ = tcp.write_all(request).await;
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut text).await;
        text
    };
    // Idle connections that each hold a slot.
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
        held.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // Let the server accept them all, then one more is closed unanswered.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let one_more = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(answer(one_more).await, "", "refused: closed without an answer");
    // Another address (127.0.0.2 is loopback too) is served meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let other = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    assert!(answer(other).await.ends_with("anonymous from 127.0.0.2"));
    // A held one is still served; once one is let go, a new one is too.
    let first = held.remove(0);
    assert!(answer(first).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(answer(again).await.starts_with("HTTP/1.1 200"));
    drop(held);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
