//! #22 item 5: the Prometheus recording rules and the Grafana dashboard in
//! `ops/` read only series the parties export, and Prometheus's own tool
//! (promtool) accepts the rules and evaluates them to the expected values.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn ops(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops")).join(path)
}

/// The series names a PromQL expression selects: identifiers that are not
/// functions, aggregation clauses, keywords, label names or strings.
pub(crate) fn selected(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 23] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        // Aggregations, which may be followed by `by (…)` before their `(`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let (mut names, mut i, mut braces, mut brackets) = (BTreeSet::new(), 0, 0usize, 0usize);
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            '(' if skip_group => {
                // The label list of `by (…)`, `on (…)` and the like.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                if braces == 0 && brackets == 0 && next != Some('(') && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                } else if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word.as_str()) {
                    skip_group = true;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// The rules file's recorded names and expressions (one per line, as it is
/// written).
fn rules() -> (BTreeSet<String>, Vec<String>) {
    let text = std::fs::read_to_string(ops("prometheus/kessai.rules.yml")).unwrap();
    let (mut recorded, mut exprs) = (BTreeSet::new(), Vec::new());
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- record:") {
            recorded.insert(name.trim().to_owned());
        } else if let Some(expr) = line.strip_prefix("expr:") {
            exprs.push(expr.trim().to_owned());
        }
    }
    (recorded, exprs)
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(ops("grafana/kessai.dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        assert!(panel["title"].is_string() && panel["gridPos"].is_object(), "{panel}");
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 7, "{exprs:?}");
    exprs
}

/// The series names an OpenMetrics exposition holds: counters as
/// `_total`, histograms as `_bucket`, `_sum` and `_count`.
fn exported(expositions: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in expositions.iter().flat_map(|t| t.lines()) {
        let mut words = line.split_whitespace();
        if (words.next(), words.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(family), Some(kind)) = (words.next(), words.next()) else { continue };
        match kind {
            "counter" => {
                names.insert(format!("{family}_total"));
            }
            "histogram" => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{family}{s}"))),
            _ => {
                names.insert(family.to_owned());
            }
        }
    }
    names
}

/// Every series the rules and the dashboard read is recorded by a rule or
/// exported by the parties (their /metrics, `expositions`).
pub(crate) fn rules_and_dashboard_read_what_the_parties_export(expositions: &[String]) {
    let exported = exported(expositions);
    for needed in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "kessai_settlements_total",
        "store_orders_total",
        "store_completions_total",
    ] {
        assert!(exported.contains(needed), "{needed} not exported: {exported:?}");
    }
    let (recorded, rule_exprs) = rules();
    assert!(recorded.len() >= 9, "{recorded:?}");
    for expr in rule_exprs.iter().chain(dashboard_exprs().iter()) {
        let names = selected(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            let known = if name.contains(':') { recorded.contains(&name) } else { exported.contains(&name) };
            assert!(known, "{name} in {expr:?} is neither recorded nor exported");
        }
    }
}

#[test]
fn selectors_are_read_out_of_promql() {
    let expr = r#"sum by (service, le) (rate(http_requests_total{status=~"5.."}[5m])) / on (service) kessai:x:rate5m"#;
    let names: Vec<String> = selected(expr).into_iter().collect();
    assert_eq!(names, ["http_requests_total", "kessai:x:rate5m"]);
    let q = "histogram_quantile(0.99, sum by (route, le) (rate(h_bucket{}[5m])))";
    assert_eq!(selected(q).into_iter().collect::<Vec<_>>(), ["h_bucket"]);
}

/// promtool (Prometheus's own) checks the rules and evaluates them on
/// series of known rates (`kessai.rules.test.yml`).
#[test]
fn promtool_accepts_the_rules_and_they_compute_what_they_say() {
    let Some(promtool) = kessai_testkit::tool_on_path("promtool", "KESSAI_PROMTOOL") else { return };
    let check = Command::new(&promtool).args(["check", "rules"]).arg(ops("prometheus/kessai.rules.yml")).output();
    let check = check.unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test =
        Command::new(&promtool).args(["test", "rules"]).arg(ops("prometheus/kessai.rules.test.yml")).output().unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // A wrong expectation fails: the test file is not vacuous.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(ops("prometheus/kessai.rules.yml"), dir.path().join("kessai.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(ops("prometheus/kessai.rules.test.yml")).unwrap();
    let wrong = tests.replacen("value: 0.25", "value: 0.3", 1);
    std::fs::write(dir.path().join("wrong.test.yml"), wrong).unwrap();
    let test = Command::new(&promtool).args(["test", "rules"]).arg(dir.path().join("wrong.test.yml")).output().unwrap();
    assert!(!test.status.success(), "promtool took a wrong expectation");
}
