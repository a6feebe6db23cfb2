//! Server-rendered HTML: works without JavaScript, one `h1` per page,
//! labelled form controls, tables with captions and header cells.

use kessai_core::Money;
use kessai_core::messages::bill::LineItem;
use maud::{DOCTYPE, Markup, html};

use crate::catalog::{Delivery, Product};
use crate::config::MemberConfig;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:48rem;margin:0 auto;padding:1rem;line-height:1.5}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:.4rem;text-align:left}\
td.num,th.num{text-align:right}a:focus,button:focus,input:focus{outline:3px solid #1a5fb4}\
button{font-size:1rem;padding:.5rem 1rem}.total{font-weight:bold}nav a{margin-right:1rem}";

pub use kessai_core::time::utc;

/// The frame of every page: `<title>` is "`title` — `mall`".
pub fn layout(mall: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (mall) }
                style { (STYLE) }
            }
            body {
                header { nav aria-label="Mall" { a href="/" { (mall) } } }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page with a refresh, for "not paid yet" (the completion comes from
/// the center a moment after the wallet returns the cardholder).
pub fn layout_refreshing(mall: &str, title: &str, refresh_s: u32, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(refresh_s);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (mall) }
                style { (STYLE) }
            }
            body {
                header { nav aria-label="Mall" { a href="/" { (mall) } } }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn home(members: &[MemberConfig]) -> Markup {
    html! {
        p { "Choose a store:" }
        ul { @for m in members { li { a href={ "/shops/" (m.id) } { (m.name.as_str()) } } } }
    }
}

pub fn shop(member: &MemberConfig, products: &[&Product]) -> Markup {
    html! {
        nav aria-label="Store" { a href={ "/shops/" (member.id) "/cart" } { "Cart" } }
        h2 { "Products" }
        ul {
            @for p in products {
                li {
                    a href={ "/shops/" (member.id) "/products/" (p.sku) } { (p.name.as_str()) }
                    " — " span class="price" { (p.price) }
                }
            }
        }
    }
}

fn delivery_text(d: &Delivery) -> &'static str {
    match d {
        Delivery::Download { .. } => "Download after payment",
        Delivery::Physical => "Shipped to you",
    }
}

pub fn product(member: &MemberConfig, p: &Product) -> Markup {
    html! {
        p class="description" { (p.description) }
        dl {
            dt { "Price" } dd class="price" { (p.price) }
            dt { "Delivery" } dd { (delivery_text(&p.delivery)) }
            dt { "Sold by" } dd { (member.name.as_str()) }
        }
        form method="post" action={ "/shops/" (member.id) "/cart" } {
            input type="hidden" name="sku" value=(p.sku);
            label for="quantity" { "Quantity" }
            " "
            input id="quantity" type="number" name="quantity" value="1" min="1" max="99" required;
            " "
            button type="submit" { "Add to cart" }
        }
        p { a href={ "/shops/" (member.id) } { "Back to " (member.name.as_str()) } }
    }
}

/// One line of the cart or estimate.
#[derive(Debug)]
pub struct CartLine<'a> {
    pub product: &'a Product,
    pub quantity: u32,
    pub amount: Money,
}

pub fn cart(member: &MemberConfig, lines: &[CartLine<'_>]) -> Markup {
    html! {
        @if lines.is_empty() {
            p { "Your cart is empty." }
        } @else {
            table {
                caption { "Items in your cart" }
                thead { tr { th scope="col" { "Item" } th scope="col" { "Quantity" } th scope="col" class="num" { "Amount" } } }
                tbody {
                    @for l in lines {
                        tr {
                            td { (l.product.name.as_str()) }
                            td {
                                form method="post" action={ "/shops/" (member.id) "/cart" } {
                                    input type="hidden" name="sku" value=(l.product.sku);
                                    label for={ "q-" (l.product.sku) } { "Quantity of " (l.product.name.as_str()) }
                                    " "
                                    input id={ "q-" (l.product.sku) } type="number" name="quantity" value=(l.quantity) min="0" max="99";
                                    " " button type="submit" { "Update" }
                                }
                            }
                            td class="num" { (l.amount) }
                        }
                    }
                }
            }
            p { a href={ "/shops/" (member.id) "/estimate" } { "Get an estimate" } }
        }
        p { a href={ "/shops/" (member.id) } { "Continue shopping" } }
    }
}

fn lines_table(caption: &str, lines: &[LineItem], total: Money) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr {
                th scope="col" { "Item" } th scope="col" class="num" { "Unit price" }
                th scope="col" class="num" { "Quantity" } th scope="col" class="num" { "Amount" }
            } }
            tbody {
                @for l in lines {
                    tr {
                        td { (l.name().as_str()) } td class="num" { (l.unit_price()) }
                        td class="num" { (l.quantity()) } td class="num" { (l.amount()) }
                    }
                }
            }
            tfoot { tr class="total" { th scope="row" colspan="3" { "Total" } td class="num" id="total" { (total) } } }
        }
    }
}

/// FIG. 13: the estimate.
pub fn estimate(member: &MemberConfig, lines: &[LineItem], total: Money) -> Markup {
    html! {
        p { "Estimate from " (member.name.as_str()) ". Prices include tax." }
        (lines_table("Estimate", lines, total))
        p { a href={ "/shops/" (member.id) "/checkout" } { "Choose a payment method" } }
        p { a href={ "/shops/" (member.id) "/cart" } { "Change the cart" } }
    }
}

/// FIG. 14: payment method selection.
pub fn checkout(member: &MemberConfig, total: Money) -> Markup {
    html! {
        p { "Amount to pay: " strong id="total" { (total) } }
        form method="post" action={ "/shops/" (member.id) "/orders" } {
            fieldset {
                legend { "Payment method" }
                input type="radio" id="method-card" name="method" value="kessai-card" checked;
                " " label for="method-card" { "kessai IC card (stored value)" }
            }
            p { button type="submit" { "Confirm order and get the bill" } }
        }
    }
}

/// What the bill page shows.
#[derive(Debug)]
pub struct BillView<'a> {
    pub order_id: &'a str,
    pub order_number: i64,
    pub member_name: &'a str,
    pub lines: &'a [LineItem],
    pub total: Money,
    pub expires_at: i64,
    pub expired: bool,
    pub paid: bool,
    pub bill_token: &'a str,
    pub wallet_url: &'a str,
    pub return_url: &'a str,
}

/// FIG. 15: the bill with the sum and the pay action.
pub fn bill(v: &BillView<'_>) -> Markup {
    html! {
        dl {
            dt { "Order number" } dd id="order-number" { (v.order_number) }
            dt { "Store" } dd { (v.member_name) }
            dt { "Valid until" } dd { (utc(v.expires_at)) }
        }
        (lines_table("Bill", v.lines, v.total))
        @if v.paid {
            p { "This order is paid. " a href={ "/orders/" (v.order_id) "/complete" } { "See your purchase" } }
        } @else if v.expired {
            p role="alert" { "This bill has expired. Please order again." }
        } @else {
            form method="post" action={ (v.wallet_url) "/pay" } {
                input type="hidden" name="bill" value=(v.bill_token);
                input type="hidden" name="return_url" value=(v.return_url);
                button type="submit" { "Pay " (v.total) " with your kessai card" }
            }
            // FIG. 14: the member may pay from a virtual prepaid card the
            // center holds instead; the same bill goes to the same wallet.
            form method="post" action={ (v.wallet_url) "/pay" } {
                input type="hidden" name="bill" value=(v.bill_token);
                input type="hidden" name="return_url" value=(v.return_url);
                input type="hidden" name="method" value="prepaid";
                button type="submit" id="pay-prepaid" { "Pay " (v.total) " with your virtual prepaid card" }
            }
            p { "Your wallet shows the amount and the balance before anything is paid." }
        }
    }
}

/// A download link on the completion page.
#[derive(Debug)]
pub struct DownloadView<'a> {
    pub name: &'a str,
    pub href: String,
}

/// FIG. 20: the completion page.
pub fn completion(
    order_id: &str,
    paid: bool,
    downloads: &[DownloadView<'_>],
    shipped: bool,
    links_expire_at: Option<i64>,
) -> Markup {
    html! {
        @if paid {
            p id="status" { "Payment received. Thank you!" }
            @if !downloads.is_empty() {
                h2 { "Your downloads" }
                ul { @for d in downloads { li { a href=(d.href) download { "Download " (d.name) } } } }
                @if let Some(at) = links_expire_at { p { "The links work until " (utc(at)) "." } }
            }
            @if shipped { p { "Your other items will be shipped." } }
        } @else {
            p id="status" { "Not paid yet. This page refreshes by itself." }
            p { a href={ "/orders/" (order_id) } { "Back to the bill" } }
        }
    }
}

pub fn message(text: &str) -> Markup {
    html! { p role="alert" { (text) } p { a href="/" { "Back to the mall" } } }
}

/// A member store's payouts (#19), for its people: what the center paid,
/// when, and each payout's lines as CSV.
pub fn payouts(member: &str, payouts: &[serde_json::Value]) -> Markup {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let number = |v: &serde_json::Value| v.as_i64().map(|n| n.to_string()).unwrap_or_default();
    html! {
        p { "What the settlement center paid this store into its bank account: purchases, less refunds, less fees." }
        p { a href=(format!("/members/{member}/payouts.csv")) { "All payouts as CSV" } }
        @if payouts.is_empty() {
            p { "No payouts yet." }
        } @else {
            table {
                caption { "Payouts, newest first" }
                thead { tr {
                    th scope="col" { "Made" } th scope="col" class="num" { "Purchases" }
                    th scope="col" class="num" { "Refunds" } th scope="col" class="num" { "Fees" }
                    th scope="col" class="num" { "Paid" } th scope="col" { "Status" } th scope="col" { "Lines" }
                } }
                tbody {
                    @for p in payouts {
                        tr {
                            td { (utc(p["created_at"].as_i64().unwrap_or_default())) }
                            td class="num" { (number(&p["gross_minor"])) }
                            td class="num" { (number(&p["refunds_minor"])) }
                            td class="num" { (number(&p["fees_minor"])) }
                            td class="num total" { (number(&p["amount_minor"])) " " (text(&p["currency"])) }
                            td { (text(&p["status"])) @if let Some(r) = p["reason"].as_str() { " (" (r) ")" } }
                            td { a href=(format!("/members/{member}/payouts/{}/csv", text(&p["payout_id"]))) { "CSV" } }
                        }
                    }
                }
            }
        }
    }
}
