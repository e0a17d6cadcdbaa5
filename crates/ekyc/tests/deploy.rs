//! The deploy checks that need no cluster, in `cargo test`: deploy/monitoring/test.sh checks
//! the alerting rules with promtool (`promtool check rules`, then the rules' unit tests in
//! rules.test.yaml) and that every metric the rules and the dashboard name is one the code
//! records. promtool comes from Debian's `prometheus` (`./scripts/setup.sh` installs it);
//! without it these tests fail, they never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn run_monitoring_check(monitoring_dir: &Path) -> Output {
    Command::new("bash").arg(monitoring_dir.join("test.sh")).output().expect("bash runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of deploy/monitoring beside a link to the real crates/, so that test.sh checks an
/// altered rule file against the real code.
fn altered_copy(name: &str, alter: impl Fn(String) -> String) -> PathBuf {
    let root = repo_root();
    let dir = std::env::temp_dir().join(format!("ekyc-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let monitoring = dir.join("deploy/monitoring");
    std::fs::create_dir_all(&monitoring).expect("temp dir");
    std::os::unix::fs::symlink(root.join("crates"), dir.join("crates")).expect("link crates/");
    for file in ["test.sh", "prometheusrule.yaml", "rules.test.yaml", "grafana-dashboard.json"] {
        let mut content = std::fs::read_to_string(root.join("deploy/monitoring").join(file)).expect(file);
        if file == "prometheusrule.yaml" {
            let altered = alter(content.clone());
            assert_ne!(altered, content, "the alteration changed nothing");
            content = altered;
        }
        std::fs::write(monitoring.join(file), content).expect("write copy");
    }
    monitoring
}

#[test]
fn promtool_is_installed() {
    let out = Command::new("promtool").arg("--version").output();
    assert!(
        matches!(&out, Ok(o) if o.status.success()),
        "promtool is missing: `./scripts/setup.sh` installs it (apt package `prometheus`): {out:?}"
    );
}

#[test]
fn the_alerting_rules_pass_promtool_and_name_only_recorded_metrics() {
    let out = run_monitoring_check(&repo_root().join("deploy/monitoring"));
    let all = text(&out);
    assert!(out.status.success(), "deploy/monitoring/test.sh failed:\n{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `promtool check rules` and `promtool test rules` each say SUCCESS; the metric check
    // prints its count last.
    assert!(stdout.contains("SUCCESS: ") && stdout.contains(" rules found"), "no rule check in the output:\n{all}");
    assert!(stdout.lines().any(|l| l.trim() == "SUCCESS"), "no rule unit tests in the output:\n{all}");
    assert!(stdout.contains("all recorded by the code"), "no metric check in the output:\n{all}");
}

#[test]
fn a_broken_alert_expression_fails_the_check() {
    // A PromQL syntax error in the first alert's expression: `promtool check rules` refuses it.
    let monitoring = altered_copy("broken-expr", |rules| rules.replacen("expr: histogram_quantile(", "expr: histogram_quantile((", 1));
    let out = run_monitoring_check(&monitoring);
    let all = text(&out);
    assert!(!out.status.success(), "a rule file with a broken expression passed:\n{all}");
    assert!(all.contains("FAILED:") && all.contains("could not parse expression"), "not refused by promtool:\n{all}");
    let _ = std::fs::remove_dir_all(monitoring.join("../.."));
}

#[test]
fn an_alert_on_a_metric_the_code_does_not_record_fails_the_check() {
    // A valid rule on a metric nobody records: promtool accepts it, the metric check must not.
    // The check reads crates/*/src only, so naming it in this test records nothing.
    let metric = "ekyc_not_recorded_anywhere_total";
    let monitoring = altered_copy("unknown-metric", |rules| {
        let groups = rules.find("groups:").expect("spec.groups");
        let first_rule = rules[groups..].find("- record: ").expect("a recording rule") + groups;
        let indent = &rules[rules[..first_rule].rfind('\n').expect("line") + 1..first_rule];
        let extra = format!("- record: ekyc:not_recorded:rate5m\n{indent}  expr: rate({metric}[5m])\n{indent}");
        format!("{}{extra}{}", &rules[..first_rule], &rules[first_rule..])
    });
    let out = run_monitoring_check(&monitoring);
    let all = text(&out);
    assert!(!out.status.success(), "a rule on an unrecorded metric passed:\n{all}");
    assert!(all.contains(&format!("not recorded anywhere in crates/: ['{metric}']")), "refused for another reason:\n{all}");
    let _ = std::fs::remove_dir_all(monitoring.join("../.."));
}
