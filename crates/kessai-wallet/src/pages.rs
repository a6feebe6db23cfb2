//! Server-rendered pages (maud): work without JavaScript, one `h1` per
//! page, labelled controls, tables with captions and header cells.

use maud::{DOCTYPE, Markup, html};

use crate::card::CardSummary;
use crate::charge_records::ChargeRecord;
use crate::records::Record;
use crate::wallet::{ConsentView, LineView, ReviewView};

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
        p { a id="charge-link" href="/charge" { "Charge" } " — add value to your card with a credit card" }
        p { a id="member-link" href="/member" { "Member" } " — your purchase history as a member, with password A" }
        p { a id="card-log-link" href="/card" { "Card history" } " — what your card itself recorded, read through the center" }
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

/// The bill's items, as a table.
fn items(lines: &[LineView]) -> Markup {
    html! {
        table {
            caption { "Items" }
            thead { tr { th scope="col" { "Item" } th scope="col" class="num" { "Quantity" } th scope="col" class="num" { "Price" } th scope="col" class="num" { "Amount" } } }
            tbody {
                @for l in lines {
                    tr { td { (l.name) } td class="num" { (l.quantity) } td class="num" { (l.unit_price) } td class="num" { (l.amount) } }
                }
            }
        }
    }
}

/// A store's page handed over a bill: shown as the store describes it,
/// before anything is sent to the center (M2). Continuing asks the center
/// for its offer, which the consent page then shows, checked.
pub fn review(v: &ReviewView) -> Markup {
    let prepaid = html! {
        @if let (Some(member), false) = (&v.member, v.prepaid_cards.is_empty()) {
            form id="prepaid" method="post" action="/pay/prepaid" {
                input type="hidden" name="bill" value=(v.bill);
                input type="hidden" name="return_url" value=(v.return_url);
                input type="hidden" name="form_token" value=(v.form_token);
                fieldset {
                    legend { "Pay from your virtual prepaid card, as member " (member) }
                    p { "The center holds this card's value. Your passwords open the key that signs this payment; the bill is paid at once and the center answers your new balance." }
                    p { label for="prepaid_id" { "Prepaid card" } br;
                        select id="prepaid_id" name="prepaid_id" {
                            @for c in &v.prepaid_cards { option value=(c) { (c) } }
                        } }
                    p { label for="prepaid_password_a" { "Password A" } br;
                        input id="prepaid_password_a" name="password_a" type="password" autocomplete="off" required; }
                    p { label for="prepaid_password_b" { "Password B" } br;
                        input id="prepaid_password_b" name="password_b" type="password" autocomplete="off"; }
                    button type="submit" id="pay-prepaid" { "Pay " (v.total) " from my prepaid card" }
                }
            }
        }
    };
    let body = html! {
        p { "A store asks you to pay this bill. Nothing has been sent to the center and nothing is held on your card. Continue to have your card's balance read and the store checked; you agree to pay only on the next page." }
        dl {
            dt { "Store, as the bill says" } dd id="store" { (v.store_name) }
            dt { "Order" } dd { (v.order_id) }
        }
        (items(&v.lines))
        dl {
            dt { "Total" } dd id="amount" class="amount" { (v.total) }
            @if let Some(balance) = v.card_balance {
                dt { "Your card holds" } dd id="card-balance" class="amount" { (balance) }
                @match balance.checked_sub(&v.total) {
                    Ok(after) => { dt { "After paying" } dd id="card-balance-after" class="amount" { (after) } }
                    Err(_) => { dd id="card-balance-short" class="error" { "The card holds less than the total." } }
                }
            }
        }
        @if v.card_balance.is_some() {
            p { "The balance is as your card reports it to this wallet. Continue to have the center check it and prepare the payment; you agree to pay only on the next page." }
        }
        @if v.prepaid_first { (prepaid) }
        @if v.prepaid_first && !v.prepaid_cards.is_empty() { h2 { "Or pay with your IC card" } }
        form method="post" action="/pay/start" {
            input type="hidden" name="bill" value=(v.bill);
            input type="hidden" name="return_url" value=(v.return_url);
            input type="hidden" name="form_token" value=(v.form_token);
            @if let Some(member) = &v.member {
                fieldset id="member" {
                    legend { "You pay as member " (member) }
                    p { "Your passwords open the key that signs this payment (a card linked to your membership pays only so)." }
                    p { label for="password_a" { "Password A" } br;
                        input id="password_a" name="password_a" type="password" autocomplete="off"; }
                    p { label for="password_b" { "Password B" } br;
                        input id="password_b" name="password_b" type="password" autocomplete="off"; }
                }
            }
            button type="submit" { "Continue with my card" }
        }
        form id="token" method="post" action="/pay/token" {
            input type="hidden" name="bill" value=(v.bill);
            input type="hidden" name="return_url" value=(v.return_url);
            input type="hidden" name="form_token" value=(v.form_token);
            p { "Or pay with a bank deposit token your card holds: its table is read through the center, and you choose one on the next page." }
            button type="submit" id="choose-token" { "Pay with a deposit token" }
        }
        @if !v.prepaid_first { (prepaid) }
        p { a href=(v.return_url) { "Back to the store" } }
    };
    page("Review the bill", None, body)
}

/// The card's deposit tokens that can pay the bill (seed 002): choosing
/// one is the consent to redeem it for this bill; what it holds beyond the
/// bill goes onto the card.
pub fn token_choice(v: &ReviewView, tokens: &[kessai_api::CardToken]) -> Markup {
    let body = html! {
        dl {
            dt { "Store, as the bill says" } dd id="store" { (v.store_name) }
            dt { "Order" } dd { (v.order_id) }
            dt { "Total" } dd id="amount" class="amount" { (v.total) }
        }
        @if tokens.is_empty() {
            p id="no-token" role="alert" { "No token on your card can pay this bill: none held, unexpired and of at least the total." }
        }
        @for t in tokens {
            form method="post" action="/pay/token/confirm" {
                input type="hidden" name="bill" value=(v.bill);
                input type="hidden" name="return_url" value=(v.return_url);
                input type="hidden" name="form_token" value=(v.form_token);
                input type="hidden" name="token_id" value=(t.token_id);
                fieldset {
                    legend { "Token " code { (t.token_id) } }
                    p { "Holds " span class="amount" { (t.amount) } ", until " (kessai_core::time::Timestamp::from_unix_s(t.expires_at).utc()) "." }
                    @if let Ok(rest) = t.amount.checked_sub(&v.total) {
                        p { "Paying " (v.total) " with it puts " strong { (rest) } " onto your card." }
                    }
                    @if let Some(member) = &v.member {
                        p { "You pay as member " (member) ": your passwords open the key that signs this payment." }
                        p { label for=(format!("a-{}", t.token_id)) { "Password A" } br;
                            input id=(format!("a-{}", t.token_id)) name="password_a" type="password" autocomplete="off"; }
                        p { label for=(format!("b-{}", t.token_id)) { "Password B" } br;
                            input id=(format!("b-{}", t.token_id)) name="password_b" type="password" autocomplete="off"; }
                    }
                    button type="submit" { "Pay " (v.total) " with this token" }
                }
            }
        }
        p { a href=(v.return_url) { "Back to the store" } }
    };
    page("Pay with a deposit token", None, body)
}

/// FIG. 7 ⑦: paid from a virtual prepaid card; the center's completion
/// (SIG3) checked, and the new balance (新残高) it answered.
pub fn prepaid_paid(p: &crate::prepaid::PrepaidPaid, receipt: bool, return_url: &str) -> Markup {
    let body = html! {
        p id="status" { "Paid from your virtual prepaid card." }
        dl {
            dt { "Store" } dd { (p.store_name) }
            dt { "Order" } dd { (p.order_id) }
            dt { "Amount" } dd id="amount" class="amount" { (p.amount) }
            dt { "Prepaid card" } dd id="prepaid-card" { (p.prepaid_id) }
            dt { "New balance" } dd id="balance" class="amount" { (p.balance) }
            dt { "Settlement" } dd id="settlement" { (p.settlement_id) }
        }
        @if receipt {
            p id="receipt" { "The store's receipt is checked." }
        } @else {
            p id="receipt-late" { "The store has not sent its receipt yet; the center delivers the payment to it." }
        }
        p { a id="back" href=(return_url) { "Back to the store" } }
    };
    page("Paid", None, body)
}

/// The member's virtual prepaid cards: passwords asked (the inquiry is
/// signed, so the center answers only the member), or the cards with their
/// balance and history.
pub fn prepaid_cards(
    member: Option<&str>,
    cards: Option<&[crate::prepaid::PrepaidCard]>,
    form_token: &str,
    problem: Option<&str>,
) -> Markup {
    let body = html! {
        @if let Some(why) = problem { p role="alert" id="problem" { (why) } }
        @match (member, cards) {
            (None, _) => {
                p id="no-member" { "Virtual prepaid cards belong to registered members. Make a keystore with " code { "kessai wallet member init" } " and register it first." }
            }
            (Some(member), None) => {
                p { "Your passwords open the key that signs the inquiry, so the center tells only you, member " (member) ", what your cards hold." }
                form method="post" action="/prepaid" {
                    input type="hidden" name="form_token" value=(form_token);
                    p { label for="password_a" { "Password A" } br;
                        input id="password_a" name="password_a" type="password" autocomplete="off" required; }
                    p { label for="password_b" { "Password B" } br;
                        input id="password_b" name="password_b" type="password" autocomplete="off"; }
                    button type="submit" { "Show my prepaid cards" }
                }
            }
            (Some(_), Some(cards)) => {
                @if cards.is_empty() {
                    p id="no-cards" { "You have no virtual prepaid card yet: " code { "kessai wallet prepaid open" } "." }
                }
                @for c in cards {
                    section class="prepaid-card" {
                        h2 { "Prepaid card " (c.prepaid_id) }
                        dl {
                            dt { "Balance" } dd class="amount balance" { (c.balance) }
                            dt { "Status" } dd { (c.status) }
                            @if let Some(at) = c.value_expires_at {
                                dt { "Value usable until" } dd { (at.utc()) }
                            }
                        }
                        table class="fundings" {
                            caption { "Money paid in, newest first" }
                            thead { tr { th scope="col" { "Funding" } th scope="col" { "How" } th scope="col" class="num" { "Amount" } th scope="col" { "Status" } } }
                            tbody {
                                @for f in &c.fundings {
                                    tr { td { (f.funding_id) } td { (f.method.as_str().replace('_', " ")) } td class="num" { (f.amount) } td { (f.status) } }
                                }
                            }
                        }
                        table class="payments" {
                            caption { "Payments, newest first" }
                            thead { tr { th scope="col" { "Store" } th scope="col" { "Order" } th scope="col" class="num" { "Amount" } th scope="col" class="num" { "Balance after" } } }
                            tbody {
                                @for p in &c.payments {
                                    tr { td { (p.store_name) } td { (p.order_id) } td class="num" { (p.amount) } td class="num" { (p.balance_after) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Your virtual prepaid cards", None, body)
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
        (items(&v.lines))
        dl {
            dt { "Amount to pay" } dd id="amount" class="amount" { (v.amount) }
            dt { "Balance on your card now" } dd id="balance" { (v.balance) }
            dt { "Balance after paying" } dd id="balance-after" { (v.balance_after) }
        }
        @if !v.signed_offer {
            p id="unsigned" { "Your card reported this balance to the wallet; the center prepared the payment without a signed offer. Your card itself refuses to pay more than it holds, and the receipt names the amount paid." }
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

/// FIG. 25–26: charging chosen; the cardholder puts the card on the reader.
pub fn charge_start() -> Markup {
    let body = html! {
        p { "Put your card on the reader, then continue. The wallet reads the card's id and balance." }
        p { a id="continue" href="/charge/card" { "Continue" } }
        p { a href="/" { "Back to your wallet" } }
    };
    page("Charge your card", None, body)
}

/// FIG. 27–28: the card's balance and charge history, and the form for the
/// amount and the credit card. The form never carries values back.
pub fn charge_form(card: Result<&CardSummary, String>, history: &[ChargeRecord], form_token: &str) -> Markup {
    let body = html! {
        @match card {
            Err(why) => {
                p role="alert" id="no-card" { "No card was read: " (why) ". Put your card on the reader and try again." }
                p { a href="/charge/card" { "Try again" } }
            },
            Ok(c) => {
                dl {
                    dt { "Card" } dd id="card-id" { (c.card_id) }
                    dt { "Balance" } dd id="balance" { (c.balance) }
                    dt { "Maximum balance" } dd id="max-balance" { (c.max_balance) }
                }
                (charge_history(history))
                @if c.blocked {
                    p role="alert" { "This card is blocked and cannot be charged." }
                } @else {
                    form method="post" action="/charges" autocomplete="on" {
                        input type="hidden" name="form_token" value=(form_token);
                        input type="hidden" name="currency" value=(c.balance.currency().code());
                        p {
                            label for="amount" { "Amount (" (c.balance.currency().code()) ")" } br;
                            input id="amount" name="amount" type="text" required inputmode="decimal"
                                pattern=(amount_pattern(c.balance.currency().exponent()));
                        }
                        p { label for="card_number" { "Credit card number" } br; input id="card_number" name="card_number" type="text" autocomplete="cc-number" inputmode="numeric" required; }
                        p { label for="expiry" { "Expiry (MM/YY)" } br; input id="expiry" name="expiry" type="text" autocomplete="cc-exp" placeholder="MM/YY" required; }
                        p { label for="cvc" { "Security code (CVC)" } br; input id="cvc" name="cvc" type="password" autocomplete="cc-csc" inputmode="numeric" required; }
                        button type="submit" { "Charge" }
                    }
                }
            },
        }
        p { a href="/" { "Back to your wallet" } }
    };
    page("Charge your card", None, body)
}

fn charge_history(history: &[ChargeRecord]) -> Markup {
    html! {
        @if history.is_empty() {
            p { "No charges yet." }
        } @else {
            table {
                caption { "Your most recent charges, newest first" }
                thead { tr { th scope="col" class="num" { "Amount" } th scope="col" { "Status" } th scope="col" class="num" { "Balance after" } } }
                tbody {
                    @for c in history {
                        tr {
                            td class="num" { (c.amount) }
                            td { (c.phase.as_str()) }
                            td class="num" { @if let Some(b) = c.balance_after_minor { (b) } }
                        }
                    }
                }
            }
        }
    }
}

/// FIG. 29–31: the CREDIT was relayed and the center completed: the new balance.
pub fn charge_done(amount: &str, balance_after: &str) -> Markup {
    let body = html! {
        p role="status" id="status" { "Charged " (amount) " to your card." }
        dl { dt { "New balance" } dd id="balance-after" class="amount" { (balance_after) } }
        p { a href="/" { "Back to your wallet" } }
    };
    page("Charge complete", None, body)
}

/// What the amount field accepts in a currency with `exponent` digits after
/// the point: `1200` yen, `12.34` dollars (the wallet parses it again).
fn amount_pattern(exponent: u8) -> String {
    match exponent {
        0 => "[0-9]+".to_owned(),
        e => format!("[0-9]+(\\.[0-9]{{1,{e}}})?"),
    }
}

/// The card's own history: asked for (reading it opens a secure session
/// through the center, which only the cardholder's click starts).
pub fn card_ask(form_token: &str, problem: Option<&str>) -> Markup {
    let body = html! {
        @if let Some(why) = problem { p role="alert" id="problem" { (why) } }
        p { "Your card keeps its last transfers itself. Only the center can open the secure session that reads them; the center also keeps what it reads, to check the card's history against its books." }
        form method="post" action="/card/history" {
            input type="hidden" name="form_token" value=(form_token);
            button type="submit" id="read-card-log" { "Read my card's history" }
        }
    };
    page("Card history", None, body)
}

/// The card's own log (FIG. 8 (6), FIG. 24 (4)), newest first, and the
/// deposit tokens its table holds (`tokens`: `None` if they could not be
/// read).
pub fn card_history(
    entries: &[kessai_api::LogEntry],
    currency: kessai_core::Currency,
    tokens: Option<&[kessai_api::CardToken]>,
) -> Markup {
    let money =
        |minor: u64| kessai_core::Money::new(minor, currency).map_or_else(|_| minor.to_string(), |m| m.to_string());
    let body = html! {
        @if entries.is_empty() {
            p id="empty" { "Your card has recorded no transfers." }
        } @else {
            table id="card-log" {
                thead { tr { th { "#" } th { "When (UTC)" } th { "Kind" } th { "Amount" } th { "Balance after" } th { "Transaction" } } }
                tbody {
                    @for e in entries {
                        tr class=(e.kind.as_str()) {
                            td { (e.counter) }
                            td { (kessai_core::time::Timestamp::from_unix_s(e.time_unix_s).utc()) }
                            td { (match e.kind {
                                kessai_api::LogKind::Debit => "paid",
                                kessai_api::LogKind::Credit => "added",
                                kessai_api::LogKind::TokenStored => "token stored",
                                kessai_api::LogKind::TokenRedeemed => "token redeemed",
                            }) }
                            td class="amount" { (money(e.amount_minor)) }
                            td class="amount" { (money(e.balance_after_minor)) }
                            td { code { (e.transaction_id.get(..12).unwrap_or(&e.transaction_id)) } }
                        }
                    }
                }
            }
        }
        h2 { "Bank deposit tokens" }
        @match tokens {
            None => p id="tokens-unread" { "The card's tokens could not be read now." },
            Some([]) => p id="no-tokens" { "Your card holds no bank deposit tokens." },
            Some(tokens) => table id="card-tokens" {
                thead { tr { th { "Token" } th { "Amount" } th { "Expires (UTC)" } th { "State" } th { "Deposited" } } }
                tbody {
                    @for t in tokens {
                        tr id=(t.token_id) {
                            td { code { (t.token_id) } }
                            td class="amount" { (t.amount) }
                            td { (kessai_core::time::Timestamp::from_unix_s(t.expires_at).utc()) }
                            td { (if t.redeemed { "redeemed" } else { "held" }) }
                            td { (t.deposited_on.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            },
        }
        p { a href="/" { "Back" } }
    };
    page("Card history", None, body)
}

/// FIG. 11: password A asked, to open the member's history (offline).
pub fn member_ask(keystore: bool, problem: Option<&str>) -> Markup {
    let body = html! {
        @if let Some(why) = problem { p role="alert" id="problem" { (why) } }
        @if keystore {
            p { "Password A opens your purchase history; nothing is sent anywhere. Paying needs password B as well." }
            form method="post" action="/member/history" {
                p { label for="password_a" { "Password A" } br;
                    input id="password_a" name="password_a" type="password" autocomplete="off" required; }
                button type="submit" { "Show my history" }
            }
        } @else {
            p id="no-keystore" { "This wallet holds no member keystore. Make one with " code { "kessai wallet member init" } ", then register with the activation code the center mails you." }
        }
    };
    page("Member", None, body)
}

/// FIG. 11(a): the member's purchase history, with what the keystore holds.
pub fn member_history(v: &crate::member::MemberView) -> Markup {
    let body = html! {
        dl {
            dt { "Member number" } dd id="member" { (v.member.as_deref().unwrap_or("not registered")) }
            dt { "Verification key" } dd id="kid" { code { (v.kid) } }
            dt { "Signing key" } dd { (v.key_under) }
            @if v.registration_kept { dt { "Registration" } dd id="registration-kept" { "Signed and kept, not sent: " code { "kessai wallet member send" } } }
            @if v.replacement_under_way { dt { "Key" } dd id="replacement" { "A replacement is under way: " code { "kessai wallet member replace-key --resume" } } }
        }
        @if v.history.is_empty() {
            p id="no-purchases" { "No purchases recorded yet." }
        } @else {
            table id="history" {
                caption { "Your purchases as a member, oldest first" }
                thead { tr { th scope="col" { "Date (UTC)" } th scope="col" { "Store" } th scope="col" { "Order" } th scope="col" class="num" { "Amount" } } }
                tbody {
                    @for e in &v.history {
                        tr { td { (e.at.utc()) } td { (e.store) } td { (e.order_id) } td class="num" { (e.amount) } }
                    }
                }
            }
        }
    };
    page("Your purchase history", None, body)
}
