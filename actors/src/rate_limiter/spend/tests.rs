//! Spend slots, budgets and totals.
use super::*;

#[test]
fn the_anonymous_policy_has_its_own_slot_after_the_keys() {
    let t = SpendTable::new(vec![("a".into(), Budgets::default()), ("b".into(), Budgets::default())], vec![]);
    assert_eq!(t.slot(SpendKey::Configured(1)), 1);
    assert_eq!(t.slot(SpendKey::Anonymous), 2);
    assert_eq!(t.key_names().collect::<Vec<_>>(), ["a", "b", ANONYMOUS]);
    let none = SpendTable::new(vec![], vec![]);
    assert_eq!(none.slot(SpendKey::Anonymous), 0);
}

#[test]
fn slots_are_given_by_name_and_kept_across_redefinitions() {
    let t = SpendTable::new(vec![("a".into(), Budgets::default())], vec!["m".into()]);
    let day = 20_000;
    t.add(0, 0, 0.5, day);
    // A reload that changes a's budget keeps its slot and its spend.
    let a = t.define_key("a", &Budgets { daily_usd: Some(0.5), monthly_usd: None });
    assert_eq!(a, 0);
    assert_eq!(t.over_budget(a, day), Some(BudgetHit::Daily { budget_usd: 0.5 }));
    // A team is its own account, stored apart from a key of its name.
    let team = t.define_team("a", &Budgets::default());
    assert_ne!(team, a);
    assert_eq!(t.key_name(team), Some("team:a"));
    assert_eq!(t.find_key("team:a"), Some(team));
    // A model added later gets the next slot, and spend on it counts.
    let m2 = t.define_model("m2");
    assert_eq!((m2, t.define_model("m2")), (1, 1));
    t.add(team, m2, 0.25, day);
    assert!((t.key_total_usd(team) - 0.25).abs() < 1e-9);
    // Retired slots leave /status; the anonymous one never does.
    t.retain_live(&[team].into_iter().collect());
    let shown: Vec<String> = t.detail(day).into_iter().map(|d| d.key).collect();
    assert_eq!(shown, ["team:a", "anonymous"]);
}

#[test]
fn calendar() {
    assert_eq!(day_of(0), 0);
    assert_eq!(month_of(0), 0); // 1970-01
    assert_eq!(month_of(31), 1); // 1970-02-01
    assert_eq!(month_of(day_of(1_795_441_031)), (2026 - 1970) * 12 + 10); // 2026-11-23
    assert_eq!(month_of(day_of(951_782_400)), (2000 - 1970) * 12 + 1); // 2000-02-29
    assert_eq!(month_of(day_of(951_868_800)), (2000 - 1970) * 12 + 2); // 2000-03-01
}

#[test]
fn observed_totals_only_rise() {
    let t = SpendTable::new(vec![("a".into(), Budgets { daily_usd: Some(1.0), monthly_usd: None })], vec!["m".into()]);
    let day = 20_000;
    t.add(0, 0, 0.25, day);
    t.observe(0, Some(0), day, 900_000_000, 900_000_000, 900_000_000);
    assert!((t.key_total_usd(0) - 0.9).abs() < 1e-9);
    // An older (smaller) total arriving late changes nothing.
    t.observe(0, Some(0), day, 500_000_000, 500_000_000, 500_000_000);
    assert!((t.key_total_usd(0) - 0.9).abs() < 1e-9);
    t.observe(0, Some(0), day, 1_000_000_000, 1_000_000_000, 1_000_000_000);
    assert_eq!(t.over_budget(0, day), Some(BudgetHit::Daily { budget_usd: 1.0 }));
    // Yesterday's news does not touch today.
    t.observe(0, None, day - 1, 5_000_000_000, 0, 0);
    assert_eq!(t.over_budget(0, day), Some(BudgetHit::Daily { budget_usd: 1.0 }));
    assert!(t.over_budget(0, day + 1).is_none());
}

#[test]
fn budgets_stop_after_the_crossing_request() {
    let t = SpendTable::new(
        vec![("a".into(), Budgets { daily_usd: Some(0.01), monthly_usd: Some(0.05) })],
        vec!["m".into()],
    );
    let day = 20_000;
    assert!(t.over_budget(0, day).is_none());
    t.add(0, 0, 0.006, day);
    assert!(t.over_budget(0, day).is_none());
    t.add(0, 0, 0.006, day);
    assert_eq!(t.over_budget(0, day), Some(BudgetHit::Daily { budget_usd: 0.01 }));
    // A new day: the daily budget is fresh, the monthly one is not.
    assert!(t.over_budget(0, day + 1).is_none());
    for _ in 0..5 {
        t.add(0, 0, 0.008, day + 1);
    }
    assert!(matches!(t.over_budget(0, day + 1), Some(BudgetHit::Daily { .. })));
    assert!(matches!(t.over_budget(0, day + 2), Some(BudgetHit::Monthly { .. })));
    assert!((t.key_total_usd(0) - 0.052).abs() < 1e-9);
}
