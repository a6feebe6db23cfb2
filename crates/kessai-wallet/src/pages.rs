//! Server-rendered pages (maud): work without JavaScript, one `h1` per
//! page, labelled controls, tables with captions and header cells.

use maud::{DOCTYPE, Markup, html};

use crate::card::CardSummary;
use crate::records::Record;
use crate::wallet::ConsentView;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:0 auto;padding:1rem;line-height:1.5}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:.4rem;text-align:left}\
td.num,th.num{text-align:right}a:focus,button:focus{outline:3px solid #1a5fb4}\
button{font-size:1.1rem;padding:.6rem 1.2rem;margin-right:1rem}.amount{font-size:1.4rem;font-weight:bold}\
[role=alert]{border-left:4px solid #c01c28;padding-left:.8rem}";

fn page(title: &str, refresh: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(content) = refresh { meta http-equiv="refresh" content=(content); }
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — kessai wallet" }
                style { (STYLE) }
            }
            body {
                header { nav aria-label="Wallet" { a href="/" { "kessai wallet" } } }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// FIG. 16: the card and recent history.
pub fn home(card: Result<&CardSummary, String>, recent: &[Record]) -> Markup {
    let body = html! {
        section aria-labelledby="card-heading" {
            h2 id="card-heading" { "Card" }
            @match card {
                Ok(c) => dl {
                    dt { "Card" } dd id="card-id" { (c.card_id) }
                    dt { "Balance (read without authentication)" } dd id="balance" { (c.balance) }
                    @if c.blocked { dt { "Status" } dd { "Blocked" } }
                },
                Err(why) => p role="alert" id="no-card" { "No card is available: " (why) },
            }
        }
        section aria-labelledby="history-heading" {
            h2 id="history-heading" { "Recent payments" }
            @if recent.is_empty() {
                p { "No payments yet." }
            } @else {
                table {
                    caption { "Your most recent payments, newest first" }
                    thead { tr { th scope="col" { "Store" } th scope="col" { "Order" } th scope="col" class="num" { "Amount" } th scope="col" { "Status" } } }
                    tbody {
                        @for r in recent {
                            tr { td { (r.store_name) } td { (r.order_id) } td class="num" { (r.amount) } td { (r.phase.as_str()) } }
                        }
                    }
                }
            }
        }
    };
    page("Your wallet", None, body)
}

/// FIG. 18: what the cardholder agrees to.
pub fn consent(v: &ConsentView) -> Markup {
    let base = format!("/settlements/{}", v.settlement_id);
    let body = html! {
        p { "Check the payment. Nothing is taken from your card until you agree." }
        dl {
            dt { "Store" } dd id="store" { (v.store_name) }
            dt { "Order" } dd { (v.order_id) }
        }
        table {
            caption { "Items" }
            thead { tr { th scope="col" { "Item" } th scope="col" class="num" { "Quantity" } th scope="col" class="num" { "Price" } th scope="col" class="num" { "Amount" } } }
            tbody {
                @for l in &v.lines {
                    tr { td { (l.name) } td class="num" { (l.quantity) } td class="num" { (l.unit_price) } td class="num" { (l.amount) } }
                }
            }
        }
        dl {
            dt { "Amount to pay" } dd id="amount" class="amount" { (v.amount) }
            dt { "Balance on your card now" } dd id="balance" { (v.balance) }
            dt { "Balance after paying" } dd id="balance-after" { (v.balance_after) }
        }
        form method="post" action={ (base) "/consent" } {
            input type="hidden" name="consent_token" value=(v.consent_token);
            button type="submit" { "Agree and pay " (v.amount) }
        }
        form method="post" action={ (base) "/cancel" } {
            input type="hidden" name="consent_token" value=(v.consent_token);
            button type="submit" { "Cancel" }
        }
    };
    page("Confirm your payment", None, body)
}

/// FIG. 19: paid; waiting for the store's receipt (refreshes itself).
pub fn processing(settlement_id: &str, amount: &str, late: Option<&str>) -> Markup {
    let refresh = format!("{}; url=/settlements/{settlement_id}", crate::limits::PROCESSING_REFRESH_S);
    let body = html! {
        p id="status" { "Paid " (amount) ". Waiting for the store's receipt…" }
        @if let Some(return_url) = late {
            p role="alert" { "The store has not confirmed yet. Your payment is complete; the store will see it." }
            p { a href=(return_url) { "Back to the store" } }
        }
    };
    page("Processing your payment", if late.is_some() { None } else { Some(&refresh) }, body)
}

/// Cancelled or voided: nothing was charged.
pub fn not_charged(title: &str, text: &str, return_url: Option<&str>) -> Markup {
    let body = html! {
        p role="status" id="status" { (text) }
        @if let Some(url) = return_url { p { a href=(url) { "Back to the store" } } }
    };
    page(title, None, body)
}

/// A refusal or failure, in words.
pub fn problem(title: &str, text: &str, return_url: Option<&str>) -> Markup {
    let body = html! {
        p role="alert" id="problem" { (text) }
        @if let Some(url) = return_url { p { a href=(url) { "Back to the store" } } }
        p { a href="/" { "Your wallet" } }
    };
    page(title, None, body)
}
