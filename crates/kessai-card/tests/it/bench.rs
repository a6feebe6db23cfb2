//! The benchmark runs every configuration and reports sane figures.

#[test]
fn every_configuration_runs() {
    let dir = tempfile::tempdir().unwrap();
    let options = kessai_card::bench::BenchOptions { sessions: 10, dir: dir.path().to_path_buf() };
    let mut out = Vec::new();
    let report = kessai_card::bench::run(&options, &mut out).unwrap();
    assert_eq!(report.results.len(), 5);
    let table = String::from_utf8(out).unwrap();
    for r in &report.results {
        assert!(r.sessions >= 10);
        assert!(r.sessions_per_s() > 0.0);
        assert!(table.contains(&r.name), "{table}");
    }
    assert!(table.contains("vpcd loopback, file, fsync"));
}
