use super::*;

fn acct(role: &str, active: bool) -> Account {
    Account {
        user_name: "ann@corp.com".into(),
        email: "ann@corp.com".into(),
        given_name: Some("Ann".into()),
        family_name: None,
        display_name: None,
        department: None,
        role: role.into(),
        active,
    }
}

fn subject<'a>(desired: Option<&'a Account>, observed: Option<&'a Account>) -> Subject<'a> {
    Subject {
        desired,
        observed,
        open: None,
        in_progress: false,
        last_done: None,
    }
}

const SEEN: Seen<'static> = Seen {
    app: "People.ai",
    snapshot: 3,
    date: "2026-12-05",
};

#[test]
fn the_app_having_what_the_idp_wants_is_verified_and_closes_the_open_task() {
    let a = acct("Standard", true);
    let s = Subject {
        open: Some(TaskRef {
            id: 7,
            target: Some(&a),
        }),
        ..subject(Some(&a), Some(&a))
    };
    assert_eq!(decide(&s), Verdict::Verified { close: Some(7) });
    // A deleted user whose account is gone, and a switched-off one, are verified too.
    assert_eq!(
        decide(&subject(None, None)),
        Verdict::Verified { close: None }
    );
    let off = acct("Standard", false);
    let mut old_name = off.clone();
    old_name.given_name = Some("Anne".into());
    assert_eq!(
        decide(&subject(Some(&off), Some(&old_name))),
        Verdict::Verified { close: None }
    );
}

#[test]
fn a_leaver_still_active_is_drift_in_words_people_read() {
    let on = acct("Standard", true);
    let off = acct("Standard", false);
    let Verdict::Finding {
        kind,
        changes,
        reopen,
    } = decide(&subject(Some(&off), Some(&on)))
    else {
        panic!("expected a finding");
    };
    assert_eq!((kind, reopen), (FindingKind::Drift, None));
    assert_eq!(
        finding_text(kind, Some(&on), Some(&off), &changes, SEEN, None),
        "still active in People.ai on 2026-12-05 per snapshot #3"
    );
}

#[test]
fn a_wrong_role_names_both_values() {
    let admin = acct("Admin", true);
    let std = acct("Standard", true);
    let Verdict::Finding { kind, changes, .. } = decide(&subject(Some(&std), Some(&admin))) else {
        panic!("expected a finding");
    };
    assert_eq!(
        finding_text(kind, Some(&admin), Some(&std), &changes, SEEN, None),
        "role is \"Admin\" (the IdP wants \"Standard\") in People.ai on 2026-12-05 per snapshot #3"
    );
}

#[test]
fn a_joiner_absent_is_missing_and_a_done_create_contradicted_is_reopened() {
    let a = acct("Standard", true);
    let missing = decide(&subject(Some(&a), None));
    assert!(matches!(
        missing,
        Verdict::Finding {
            kind: FindingKind::Missing,
            reopen: None,
            ..
        }
    ));
    let s = Subject {
        last_done: Some(TaskRef {
            id: 4,
            target: Some(&a),
        }),
        ..subject(Some(&a), None)
    };
    let Verdict::Finding {
        kind,
        changes,
        reopen,
    } = decide(&s)
    else {
        panic!("expected a finding");
    };
    assert_eq!((kind, reopen), (FindingKind::Contradiction, Some(4)));
    assert_eq!(
        finding_text(kind, None, Some(&a), &changes, SEEN, reopen),
        "Verification failed: not found in People.ai on 2026-12-05 per snapshot #3, although \
         task #4 was completed as done"
    );
}

#[test]
fn an_open_task_is_not_reopened_and_work_in_progress_is_left_alone() {
    let on = acct("Standard", true);
    let off = acct("Standard", false);
    let done = TaskRef {
        id: 4,
        target: Some(&off),
    };
    let open = TaskRef {
        id: 9,
        target: Some(&off),
    };
    let s = Subject {
        open: Some(open),
        last_done: Some(done),
        ..subject(Some(&off), Some(&on))
    };
    assert!(matches!(
        decide(&s),
        Verdict::Finding {
            kind: FindingKind::Drift,
            reopen: None,
            ..
        }
    ));
    let busy = Subject {
        in_progress: true,
        ..s
    };
    assert_eq!(decide(&busy), Verdict::InProgress { matches: false });
}

#[test]
fn a_finding_seen_again_has_the_same_fingerprint_even_after_its_task_was_reopened() {
    let on = acct("Standard", true);
    let off = acct("Standard", false);
    let changes = plan(Some(&off), Some(&on)).unwrap().changes;
    assert_eq!(
        fingerprint(FindingKind::Contradiction, &changes),
        fingerprint(FindingKind::Drift, &changes)
    );
    let other = plan(Some(&acct("Admin", true)), Some(&on)).unwrap().changes;
    assert_ne!(
        fingerprint(FindingKind::Drift, &changes),
        fingerprint(FindingKind::Drift, &other)
    );
}

#[test]
fn the_safeguard_holds_empty_unknown_shaped_and_mass_flagging_snapshots() {
    let mut t = Tally::default();
    assert!(t.hold_reason(0.2, &[]).unwrap().contains("empty"));
    t.rows = 10;
    t.matched = 10;
    t.verified = 8;
    t.drift = 2;
    assert_eq!(
        t.hold_reason(0.2, &[]),
        None,
        "2 of 10 is not more than 20 %"
    );
    assert!(t
        .hold_reason(0.2, &["Seat".into()])
        .unwrap()
        .contains("Seat"));
    t.missing = 1;
    let why = t.hold_reason(0.2, &[]).unwrap();
    assert!(why.contains("3 accounts"), "{why}");
    t.orphans = 5;
    t.matched = 0;
    assert!(t.hold_reason(0.2, &[]).is_some(), "nothing matched");
}
