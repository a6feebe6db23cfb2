//! Statistics (統計資料, seed 003/004 FIG. 2's server 20 and its printer
//! 21): volumes and amounts by day or month, by store and by channel,
//! funding by channel, refunds, fees, payouts and the float outstanding,
//! for one currency over a period of UTC days.
//!
//! The figures come from the center's own records (payable items,
//! payouts, fundings, value updates; `crate::db::DayTally`), read in one
//! snapshot; the float outstanding from the books' totals. The same
//! [`Report`] is drawn as tables and charts (SVG, drawn here, no script),
//! written as CSV and as a printable PDF.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kessai_bank::Date;
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};
use kessai_ledger::AccountKind;
use maud::{Markup, html};

use crate::db::{DayTally, DbError};
use crate::service::Center;

/// The longest period one report covers, in days.
pub const MAX_DAYS: i64 = 1_100;

/// How a report's rows are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Day,
    Month,
}

impl Grain {
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Month => "month",
        }
    }
}

/// What a report covers: UTC days `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
    pub grain: Grain,
    pub currency: Currency,
}

impl Period {
    /// A period from a form's fields (`YYYY-MM-DD`, `day` or `month`, a
    /// currency code); the reason, if they do not make one.
    pub fn parse(from: &str, to: &str, by: &str, currency: &str) -> Result<Period, String> {
        let date = |what: &str, text: &str| {
            Date::parse(text.trim()).ok_or_else(|| format!("{what}: {text:?} is not a day (YYYY-MM-DD)"))
        };
        let (from, to) = (date("from", from)?, date("to", to)?);
        if to < from {
            return Err("the period ends before it starts".into());
        }
        if from.unix_day() < 0 {
            return Err("a report starts on 1970-01-01 or later".into());
        }
        if to.unix_day() - from.unix_day() >= MAX_DAYS {
            return Err(format!("a report covers at most {MAX_DAYS} days"));
        }
        let grain = match by.trim() {
            "" | "day" => Grain::Day,
            "month" => Grain::Month,
            other => return Err(format!("rows by {other:?}: by day or by month")),
        };
        let currency = Currency::parse(currency.trim()).map_err(|e| format!("currency: {e}"))?;
        Ok(Period { from, to, grain, currency })
    }

    /// The last `days` days up to and including the day of `now`, by day.
    pub fn last_days(now: Timestamp, days: i64, currency: Currency) -> Period {
        let to = Date::of(now);
        Period { from: Date::from_unix_day(to.unix_day() - (days - 1).max(0)), to, grain: Grain::Day, currency }
    }

    /// The row a UTC day falls in.
    fn bucket(&self, day: i64) -> String {
        let date = Date::from_unix_day(day);
        match self.grain {
            Grain::Day => date.to_string(),
            Grain::Month => format!("{:04}-{:02}", date.year(), date.month()),
        }
    }

    /// Every row's label, in order, empty ones too.
    fn buckets(&self) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        for day in self.from.unix_day()..=self.to.unix_day() {
            let label = self.bucket(day);
            if labels.last() != Some(&label) {
                labels.push(label);
            }
        }
        labels
    }

    /// The query string that names this period.
    pub fn query(&self) -> String {
        format!("from={}&to={}&by={}&currency={}", self.from, self.to, self.grain.as_str(), self.currency.code())
    }
}

/// What a figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    /// Purchases with IC cards, posted (FIG. 1-10 of 001).
    IcCardSales,
    /// Payments from virtual prepaid cards (003/004 FIG. 6-7).
    PrepaidSales,
    /// Refunds of IC card purchases, held for the card.
    IcCardRefunds,
    /// Refunds of prepaid payments, credited to the prepaid card.
    PrepaidRefunds,
    /// IC card refunds cancelled (moved to another card, or withdrawn).
    RefundsCancelled,
    /// What clearing kept as the center's fees.
    Fees,
    /// What clearing paid stores.
    Payouts,
    /// Payouts the bank gave back.
    PayoutsReturned,
    /// Prepaid value funded by credit card.
    FundingCredit,
    /// … by bank transfer.
    FundingBank,
    /// … by postal transfer.
    FundingPostal,
    /// … by cash in registered mail.
    FundingCash,
    /// Value charged onto IC cards from credit cards (SIG5).
    CardCharges,
    /// IC card value given back to the credit card.
    ChargesReturned,
    /// Value moved from a prepaid card onto an IC card.
    PrepaidToCard,
    /// Bank deposits made into tokens (seed 002), when issued.
    TokensIssued,
    /// Tokens redeemed for IC card value, when the provider honoured them.
    TokensRedeemed,
}

impl Measure {
    /// The measures of a store's business (what a row by store shows).
    pub const SALES: [Measure; 8] = [
        Measure::IcCardSales,
        Measure::PrepaidSales,
        Measure::IcCardRefunds,
        Measure::PrepaidRefunds,
        Measure::RefundsCancelled,
        Measure::Fees,
        Measure::Payouts,
        Measure::PayoutsReturned,
    ];

    /// The measures of value coming in.
    pub const FUNDING: [Measure; 9] = [
        Measure::FundingCredit,
        Measure::FundingBank,
        Measure::FundingPostal,
        Measure::FundingCash,
        Measure::CardCharges,
        Measure::ChargesReturned,
        Measure::PrepaidToCard,
        Measure::TokensIssued,
        Measure::TokensRedeemed,
    ];

    /// Its name in CSV.
    pub fn key(self) -> &'static str {
        match self {
            Measure::IcCardSales => "sales_ic_card",
            Measure::PrepaidSales => "sales_prepaid",
            Measure::IcCardRefunds => "refunds_ic_card",
            Measure::PrepaidRefunds => "refunds_prepaid",
            Measure::RefundsCancelled => "refunds_cancelled",
            Measure::Fees => "fees",
            Measure::Payouts => "payouts",
            Measure::PayoutsReturned => "payouts_returned",
            Measure::FundingCredit => "funding_credit",
            Measure::FundingBank => "funding_bank_transfer",
            Measure::FundingPostal => "funding_postal_transfer",
            Measure::FundingCash => "funding_cash",
            Measure::CardCharges => "ic_card_charges",
            Measure::ChargesReturned => "ic_card_returned_to_credit",
            Measure::PrepaidToCard => "prepaid_to_ic_card",
            Measure::TokensIssued => "deposit_tokens_issued",
            Measure::TokensRedeemed => "deposit_tokens_redeemed",
        }
    }

    /// Its column heading.
    pub fn title(self) -> &'static str {
        match self {
            Measure::IcCardSales => "IC card sales",
            Measure::PrepaidSales => "Prepaid sales",
            Measure::IcCardRefunds => "IC card refunds",
            Measure::PrepaidRefunds => "Prepaid refunds",
            Measure::RefundsCancelled => "Refunds cancelled",
            Measure::Fees => "Fees",
            Measure::Payouts => "Payouts",
            Measure::PayoutsReturned => "Payouts returned",
            Measure::FundingCredit => "Credit card",
            Measure::FundingBank => "Bank transfer",
            Measure::FundingPostal => "Postal transfer",
            Measure::FundingCash => "Cash",
            Measure::CardCharges => "IC card charges",
            Measure::ChargesReturned => "Back to credit card",
            Measure::PrepaidToCard => "Prepaid to IC card",
            Measure::TokensIssued => "Deposit tokens issued",
            Measure::TokensRedeemed => "Deposit tokens redeemed",
        }
    }

    /// Its name standing alone (in the printed totals).
    pub fn label(self) -> String {
        match self {
            Measure::FundingCredit | Measure::FundingBank | Measure::FundingPostal | Measure::FundingCash => {
                format!("Funded by {}", self.title().to_lowercase())
            }
            m => m.title().to_owned(),
        }
    }

    /// The measure a tally counts, and the sign that makes its amount
    /// positive.
    fn of(what: &str) -> Option<(Measure, i64)> {
        Some(match what {
            "purchase" => (Measure::IcCardSales, 1),
            "prepaid_payment" => (Measure::PrepaidSales, 1),
            "refund" => (Measure::IcCardRefunds, -1),
            "prepaid_refund" => (Measure::PrepaidRefunds, -1),
            "refund_cancelled" => (Measure::RefundsCancelled, 1),
            "fee" => (Measure::Fees, 1),
            "payout" => (Measure::Payouts, 1),
            "payout_returned" => (Measure::PayoutsReturned, 1),
            "funding:credit" => (Measure::FundingCredit, 1),
            "funding:bank_transfer" => (Measure::FundingBank, 1),
            "funding:postal_transfer" => (Measure::FundingPostal, 1),
            "funding:cash" => (Measure::FundingCash, 1),
            "update:charge" => (Measure::CardCharges, 1),
            "update:refund_to_credit_card" => (Measure::ChargesReturned, 1),
            "update:from_prepaid" => (Measure::PrepaidToCard, 1),
            "token:issued" => (Measure::TokensIssued, 1),
            "token:redeemed" => (Measure::TokensRedeemed, 1),
            _ => return None,
        })
    }
}

/// How many, and how much (minor units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figure {
    pub count: i64,
    pub amount_minor: i64,
}

impl Figure {
    fn add(&mut self, count: i64, amount_minor: i64) {
        self.count = self.count.saturating_add(count);
        self.amount_minor = self.amount_minor.saturating_add(amount_minor);
    }
}

/// One row: a period or a store, and its figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub label: String,
    pub figures: BTreeMap<Measure, Figure>,
}

impl Row {
    pub fn get(&self, m: Measure) -> Figure {
        self.figures.get(&m).copied().unwrap_or_default()
    }

    /// Sales less refunds (cancelled refunds given back).
    pub fn net_sales_minor(&self) -> i64 {
        let f = |m| self.get(m).amount_minor;
        f(Measure::IcCardSales) + f(Measure::PrepaidSales) - f(Measure::IcCardRefunds) - f(Measure::PrepaidRefunds)
            + f(Measure::RefundsCancelled)
    }
}

/// Value outstanding on cards: what their holders can still spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Float {
    pub what: &'static str,
    pub accounts: u64,
    /// Posted credits less posted debits.
    pub posted_minor: i64,
    /// Debits held (purchases and moves the card has not confirmed).
    pub held_minor: i64,
}

/// The statistics of one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub period: Period,
    /// One row per day or month of the period, in order, empty ones too.
    pub by_period: Vec<Row>,
    /// One row per store with business in the period, by store id.
    pub by_store: Vec<Row>,
    pub totals: Row,
    /// As the books stood when the report was made (not as of `to`).
    pub float: Vec<Float>,
    pub made_at: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum StatisticsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the books' totals: {0}")]
    Books(#[from] kessai_ledger::Error),
}

impl Report {
    /// Counts `period` from the records and the books.
    pub async fn make(center: &Center, period: Period) -> Result<Report, StatisticsError> {
        let (from, to) = (period.from.unix_day(), period.to.unix_day() + 1);
        let tallies = center.db.day_tallies(period.currency, from, to).await?;
        let totals = center.books.ledger().totals().await?;
        let code = period.currency.code();
        let float = [(AccountKind::CardFloat, "IC cards"), (AccountKind::Prepaid, "Virtual prepaid cards")]
            .into_iter()
            .map(|(kind, what)| {
                let mut f = Float { what, accounts: 0, posted_minor: 0, held_minor: 0 };
                for t in totals.iter().filter(|t| t.kind == kind && t.currency.as_str() == code) {
                    let b = t.balances;
                    f.accounts += t.accounts;
                    f.posted_minor += signed(b.credits_posted_minor) - signed(b.debits_posted_minor);
                    f.held_minor += signed(b.debits_pending_minor);
                }
                f
            })
            .collect();
        Ok(Report::of(period, &tallies, float, center.clock.now()))
    }

    /// The report the tallies make.
    pub fn of(period: Period, tallies: &[DayTally], float: Vec<Float>, made_at: Timestamp) -> Report {
        let mut by_period: Vec<Row> =
            period.buckets().into_iter().map(|label| Row { label, figures: BTreeMap::new() }).collect();
        let mut by_store: BTreeMap<String, Row> = BTreeMap::new();
        let mut totals = Row { label: "Total".into(), figures: BTreeMap::new() };
        for t in tallies {
            let Some((measure, sign)) = Measure::of(&t.what) else {
                continue;
            };
            let amount = t.amount_minor.saturating_mul(sign);
            let label = period.bucket(t.day);
            if let Some(row) = by_period.iter_mut().find(|r| r.label == label) {
                row.figures.entry(measure).or_default().add(t.count, amount);
            }
            if let Some(store) = &t.store {
                let row =
                    by_store.entry(store.clone()).or_insert_with(|| Row { label: store.clone(), ..Row::default() });
                row.figures.entry(measure).or_default().add(t.count, amount);
            }
            totals.figures.entry(measure).or_default().add(t.count, amount);
        }
        Report { period, by_period, by_store: by_store.into_values().collect(), totals, float, made_at }
    }

    /// `amount_minor` in this report's currency, `JPY 1,200`.
    pub fn money(&self, amount_minor: i64) -> String {
        money(amount_minor, self.period.currency)
    }

    /// The report as CSV (RFC 4180, CRLF): one line per row and measure
    /// with a count or an amount, then the float.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,label,measure,count,amount_minor,currency\r\n");
        let code = self.period.currency.code();
        let mut line = |section: &str, label: &str, measure: &str, count: i64, amount: i64| {
            let _ = write!(out, "{section},{},{measure},{count},{amount},{code}\r\n", csv_field(label));
        };
        for (section, rows) in [(self.period.grain.as_str(), &self.by_period), ("store", &self.by_store)] {
            for row in rows {
                for (m, f) in &row.figures {
                    line(section, &row.label, m.key(), f.count, f.amount_minor);
                }
            }
        }
        for (m, f) in &self.totals.figures {
            line("total", "Total", m.key(), f.count, f.amount_minor);
        }
        for f in &self.float {
            let accounts = i64::try_from(f.accounts).unwrap_or(i64::MAX);
            line("float", f.what, "posted", accounts, f.posted_minor);
            line("float", f.what, "held", accounts, f.held_minor);
        }
        out
    }

    /// The report as tables and charts, for the console.
    pub fn html(&self) -> Markup {
        let figure = |f: Figure| {
            html! { td class="num" { @if f.count != 0 || f.amount_minor != 0 { (self.money(f.amount_minor)) br; small { (f.count) } } } }
        };
        let table = |id: &str, first: &str, rows: &[Row], measures: &[Measure], net: bool| {
            html! {
                table id=(id) {
                    thead { tr { th { (first) } @for m in measures { th class="num" { (m.title()) } }
                                 @if net { th class="num" { "Net sales" } } } }
                    tbody { @for row in rows { tr { th scope="row" { (row.label) } @for m in measures { (figure(row.get(*m))) }
                                                     @if net { td class="num" { (self.money(row.net_sales_minor())) } } } } }
                    tfoot { tr { th scope="row" { "Total" } @for m in measures { (figure(self.totals.get(*m))) }
                                 @if net { td class="num" { (self.money(self.totals.net_sales_minor())) } } } }
                }
            }
        };
        let sales: Vec<(&str, &str, Vec<i64>)> =
            [(Measure::IcCardSales, "#1d3557"), (Measure::PrepaidSales, "#e76f51")]
                .into_iter()
                .map(|(m, colour)| (m.title(), colour, self.by_period.iter().map(|r| r.get(m).amount_minor).collect()))
                .collect();
        let funding: Vec<(&str, &str, Vec<i64>)> = [
            (Measure::FundingCredit, "#264653"),
            (Measure::FundingBank, "#2a9d8f"),
            (Measure::FundingPostal, "#e9c46a"),
            (Measure::FundingCash, "#f4a261"),
            (Measure::CardCharges, "#8d99ae"),
            (Measure::TokensIssued, "#6d597a"),
        ]
        .into_iter()
        .map(|(m, colour)| (m.title(), colour, self.by_period.iter().map(|r| r.get(m).amount_minor).collect()))
        .collect();
        let labels: Vec<&str> = self.by_period.iter().map(|r| r.label.as_str()).collect();
        html! {
            p { "Days are UTC days. Amounts in " (self.period.currency.code()) "; the small figure under each is how many. "
                "The float is as the books stand now (" (self.made_at.utc()) ")." }
            h3 { "Sales by " (self.period.grain.as_str()) }
            (bar_chart("chart-sales", "Sales by channel", &labels, &sales, self.period.currency))
            (table("by-period", self.period.grain.as_str(), &self.by_period, &Measure::SALES, true))
            h3 { "Funding by channel" }
            (bar_chart("chart-funding", "Value funded by channel", &labels, &funding, self.period.currency))
            (table("funding", self.period.grain.as_str(), &self.by_period, &Measure::FUNDING, false))
            h3 { "By store" }
            @if self.by_store.is_empty() { p { "No store had business in this period." } }
            @else { (table("by-store", "store", &self.by_store, &Measure::SALES, true)) }
            h3 { "Float outstanding" }
            table id="float" {
                thead { tr { th { "Cards" } th class="num" { "Accounts" } th class="num" { "Value" } th class="num" { "Held" } } }
                tbody { @for f in &self.float { tr { th scope="row" { (f.what) } td class="num" { (f.accounts) }
                    td class="num" { (self.money(f.posted_minor)) } td class="num" { (self.money(f.held_minor)) } } } }
            }
        }
    }

    /// The report as a printable PDF (A4, the standard Helvetica): the
    /// totals first, then the rows by period and by store, over as many
    /// pages as they take.
    pub fn pdf(&self) -> Vec<u8> {
        let mut lines: Vec<Line> = Vec::new();
        let title =
            format!("kessai statistics  {} to {}  ({})", self.period.from, self.period.to, self.period.currency.code());
        lines.push(Line::Heading(title));
        lines.push(Line::Text(format!(
            "Made {}. Days are UTC days; the float is as the books stood then.",
            self.made_at.utc()
        )));
        lines.push(Line::Gap);
        lines.push(Line::Heading("Totals".into()));
        for m in Measure::SALES.into_iter().chain(Measure::FUNDING) {
            let f = self.totals.get(m);
            lines.push(Line::Columns(vec![
                format!("Total {}", m.label()),
                f.count.to_string(),
                self.money(f.amount_minor),
            ]));
        }
        lines.push(Line::Columns(vec![
            "Total net sales".into(),
            String::new(),
            self.money(self.totals.net_sales_minor()),
        ]));
        for f in &self.float {
            lines.push(Line::Columns(vec![
                format!("Float on {}", f.what),
                f.accounts.to_string(),
                self.money(f.posted_minor),
            ]));
        }
        for (heading, rows) in
            [(format!("By {}", self.period.grain.as_str()), &self.by_period), ("By store".into(), &self.by_store)]
        {
            lines.push(Line::Gap);
            lines.push(Line::Heading(heading));
            lines.push(Line::Columns(vec![
                String::new(),
                "IC card".into(),
                "Prepaid".into(),
                "Refunds".into(),
                "Fees".into(),
                "Payouts".into(),
                "Net sales".into(),
            ]));
            for row in rows {
                let refunds = row.get(Measure::IcCardRefunds).amount_minor
                    + row.get(Measure::PrepaidRefunds).amount_minor
                    - row.get(Measure::RefundsCancelled).amount_minor;
                lines.push(Line::Columns(vec![
                    row.label.clone(),
                    self.money(row.get(Measure::IcCardSales).amount_minor),
                    self.money(row.get(Measure::PrepaidSales).amount_minor),
                    self.money(refunds),
                    self.money(row.get(Measure::Fees).amount_minor),
                    self.money(row.get(Measure::Payouts).amount_minor),
                    self.money(row.net_sales_minor()),
                ]));
            }
        }
        pdf::write(&lines)
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `JPY 1,200`, `USD -12.34`: as `Money` shows itself, with a sign.
pub fn money(amount_minor: i64, currency: Currency) -> String {
    let shown = Money::new(amount_minor.unsigned_abs(), currency).map(|m| m.to_string());
    let shown = shown.unwrap_or_else(|_| format!("{} {}", currency.code(), amount_minor.unsigned_abs()));
    match shown.split_once(' ') {
        Some((code, figure)) if amount_minor < 0 => format!("{code} -{figure}"),
        _ => shown,
    }
}

/// A CSV field, quoted when it must be; a field a spreadsheet would read
/// as a formula is prefixed with `'`.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// A stacked bar chart: one bar per label, one colour per series, drawn as
/// SVG with its numbers in each bar's tooltip.
fn bar_chart(id: &str, title: &str, labels: &[&str], series: &[(&str, &str, Vec<i64>)], currency: Currency) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 96.0;
    const BOTTOM: f64 = 40.0;
    let stack = |i: usize| series.iter().map(|(_, _, v)| v.get(i).copied().unwrap_or(0).max(0)).sum::<i64>();
    let top = (0..labels.len()).map(stack).max().unwrap_or(0).max(1);
    let (plot_w, plot_h) = (W - LEFT - 8.0, H - BOTTOM - 24.0);
    let slot = plot_w / labels.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let y_of = |v: i64| 16.0 + plot_h - plot_h * v as f64 / top as f64;
    // At most eight labels under the bars, a day's without its year.
    let every = labels.len().div_ceil(8).max(1);
    let short = |label: &str| if label.len() == 10 { label[5..].to_owned() } else { label.to_owned() };
    // Each bar's segments, bottom up: (top, height, colour, tooltip).
    let bars: Vec<Vec<(f64, f64, &str, String)>> = (0..labels.len())
        .map(|i| {
            let mut base = 0i64;
            let mut segments = Vec::new();
            for (name, colour, values) in series {
                let v = values.get(i).copied().unwrap_or(0).max(0);
                if v > 0 {
                    let tip = format!("{} {name}: {}", labels[i], money(v, currency));
                    segments.push((y_of(base + v), y_of(base) - y_of(base + v), *colour, tip));
                }
                base += v;
            }
            segments
        })
        .collect();
    html! {
        figure {
            svg id=(id) xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (W) " " (H)} width="100%" role="img"
                aria-label=(title) font-family="system-ui,sans-serif" font-size="11" {
                title { (title) }
                line x1=(LEFT) y1=(y_of(0)) x2=(W - 8.0) y2=(y_of(0)) stroke="#888" {}
                text x=(LEFT - 4.0) y=(y_of(top) + 4.0) text-anchor="end" { (money(top, currency)) }
                text x=(LEFT - 4.0) y=(y_of(0)) text-anchor="end" { "0" }
                @for (i, (label, segments)) in labels.iter().zip(&bars).enumerate() {
                    @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                    @for (y, height, colour, tip) in segments {
                        rect x=(x) y=(y) width=(bar) height=(height) fill=(colour) { title { (tip) } }
                    }
                    @if i % every == 0 {
                        text x=(x + bar / 2.0) y=(H - BOTTOM + 14.0) text-anchor="middle" { (short(label)) }
                    }
                }
                @for (n, (name, colour, _)) in series.iter().enumerate() {
                    rect x=(LEFT + 130.0 * n as f64) y=(H - 14.0) width="10" height="10" fill=(colour) {}
                    text x=(LEFT + 14.0 + 130.0 * n as f64) y=(H - 5.0) { (name) }
                }
            }
        }
    }
}

/// One line of the printed report.
enum Line {
    Heading(String),
    Text(String),
    /// Cells laid out in fixed columns: the first left, the rest right.
    Columns(Vec<String>),
    Gap,
}

mod pdf {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

    use super::Line;

    const A4: (f32, f32) = (595.0, 842.0);
    const MARGIN: f32 = 48.0;
    const LEADING: f32 = 14.0;

    /// Text the standard fonts can show: printable ASCII, anything else `?`.
    fn printable(text: &str) -> Vec<u8> {
        text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c as u8 } else { b'?' }).collect()
    }

    pub(super) fn write(lines: &[Line]) -> Vec<u8> {
        let per_page = ((A4.1 - 2.0 * MARGIN) / LEADING) as usize;
        let pages: Vec<&[Line]> = lines.chunks(per_page.max(1)).collect();
        let (catalog, tree, regular, bold) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        let page_ids: Vec<Ref> = (0..pages.len()).map(|i| Ref::new(5 + 2 * i as i32)).collect();
        pdf.pages(tree).kids(page_ids.iter().copied()).count(page_ids.len() as i32);
        pdf.type1_font(regular).base_font(Name(b"Helvetica"));
        pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold"));
        for (n, chunk) in pages.iter().enumerate() {
            let (page_id, content_id) = (page_ids[n], Ref::new(6 + 2 * n as i32));
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, A4.0, A4.1));
            page.parent(tree);
            page.contents(content_id);
            page.resources().fonts().pair(Name(b"F1"), regular).pair(Name(b"F2"), bold);
            page.finish();
            let mut content = Content::new();
            let mut y = A4.1 - MARGIN;
            for line in chunk.iter() {
                match line {
                    Line::Heading(text) => show(&mut content, b"F2", 12.0, MARGIN, y, text),
                    Line::Text(text) => show(&mut content, b"F1", 9.0, MARGIN, y, text),
                    Line::Columns(cells) => {
                        for (i, cell) in cells.iter().enumerate() {
                            if i == 0 {
                                show(&mut content, b"F1", 9.0, MARGIN, y, cell);
                            } else {
                                // Right-aligned at its column's edge, by
                                // Helvetica's digit width (all digits are
                                // 0.556 em), near enough for the rest.
                                let right = MARGIN + 130.0 + 62.0 * i as f32;
                                let width = 9.0 * 0.556 * cell.chars().count() as f32;
                                show(&mut content, b"F1", 9.0, right - width, y, cell);
                            }
                        }
                    }
                    Line::Gap => {}
                }
                y -= LEADING;
            }
            show(&mut content, b"F1", 8.0, MARGIN, MARGIN / 2.0, &format!("page {} of {}", n + 1, pages.len()));
            pdf.stream(content_id, &content.finish());
        }
        pdf.finish()
    }

    fn show(content: &mut Content, font: &[u8], size: f32, x: f32, y: f32, text: &str) {
        content.begin_text();
        content.set_font(Name(font), size);
        content.next_line(x, y);
        content.show(Str(&printable(text)));
        content.end_text();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(day: i64, store: Option<&str>, what: &str, count: i64, amount_minor: i64) -> DayTally {
        DayTally { day, store: store.map(str::to_owned), what: what.into(), count, amount_minor }
    }

    #[test]
    fn tallies_fold_into_days_months_stores_and_totals() {
        let jpy = Currency::parse("JPY").unwrap();
        let d = |t: &str| Date::parse(t).unwrap().unix_day();
        let tallies = [
            tally(d("2026-11-30"), Some("shop-a"), "purchase", 2, 1_500),
            tally(d("2026-12-01"), Some("shop-a"), "purchase", 1, 700),
            tally(d("2026-12-01"), Some("shop-b"), "prepaid_payment", 1, 300),
            tally(d("2026-12-01"), Some("shop-a"), "refund", 1, -200),
            tally(d("2026-12-02"), None, "funding:cash", 1, 5_000),
            tally(d("2026-12-02"), None, "something new", 1, 99),
        ];
        let by_day = Period::parse("2026-11-30", "2026-12-02", "day", "JPY").unwrap();
        let r = Report::of(by_day, &tallies, Vec::new(), Timestamp::from_unix_s(0));
        assert_eq!(
            r.by_period.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
            ["2026-11-30", "2026-12-01", "2026-12-02"]
        );
        assert_eq!(r.by_period[1].get(Measure::IcCardRefunds), Figure { count: 1, amount_minor: 200 });
        assert_eq!(r.totals.get(Measure::IcCardSales), Figure { count: 3, amount_minor: 2_200 });
        assert_eq!(r.totals.net_sales_minor(), 2_200 + 300 - 200);
        assert_eq!(
            r.by_store.iter().map(|r| (r.label.as_str(), r.net_sales_minor())).collect::<Vec<_>>(),
            [("shop-a", 2_000), ("shop-b", 300)]
        );
        assert_eq!(r.totals.get(Measure::FundingCash).amount_minor, 5_000);
        let by_month = Period { grain: Grain::Month, ..by_day };
        let r = Report::of(by_month, &tallies, Vec::new(), Timestamp::from_unix_s(0));
        assert_eq!(
            r.by_period
                .iter()
                .map(|r| (r.label.as_str(), r.get(Measure::IcCardSales).amount_minor))
                .collect::<Vec<_>>(),
            [("2026-11", 1_500), ("2026-12", 700)]
        );
        assert_eq!(money(-123_456, jpy), "JPY -123,456");
        assert!(r.csv().contains("month,2026-12,refunds_ic_card,1,200,JPY\r\n"));
        assert_eq!(csv_field("=cmd|x"), "'=cmd|x");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn periods_are_checked() {
        assert!(Period::parse("2026-12-02", "2026-12-01", "day", "JPY").is_err());
        assert!(Period::parse("2026-02-30", "2026-12-01", "day", "JPY").is_err());
        assert!(Period::parse("2020-01-01", "2026-12-01", "day", "JPY").is_err());
        assert!(Period::parse("2026-01-01", "2026-12-01", "week", "JPY").is_err());
        assert!(Period::parse("2026-01-01", "2026-12-01", "month", "XXX").is_err());
        assert!(Period::parse("1969-12-31", "1970-01-02", "day", "JPY").is_err());
        let p = Period::parse("2026-01-01", "2026-12-31", "month", "JPY").unwrap();
        assert_eq!(p.buckets().len(), 12);
        assert_eq!(p.query(), "from=2026-01-01&to=2026-12-31&by=month&currency=JPY");
    }
}
