use super::*;
use crate::reconcile::plan;

fn peopleai() -> Arc<Profile> {
    Profiles::builtin().get("peopleai").unwrap().clone()
}

fn ann(role: &str) -> Account {
    Account {
        user_name: "ann@corp.com".into(),
        email: "ann@corp.com".into(),
        given_name: Some("Ann".into()),
        family_name: Some("Lee".into()),
        display_name: None,
        department: None,
        role: role.into(),
        active: true,
    }
}

/// A small valid profile; tests break one thing in it with `replace`.
const MINIMAL: &str = r#"key = "mini"
display_name = "Mini"
roles = ["Owner", "Member"]
default_role = "Member"

[group_roles]
"Mini Owners" = "Owner"

[scim_roles]
boss = "Owner"

[tasks.create_account]
title = "Create {{ who }}"
steps = ["Add {{ target.email }} as {{ target.role }}."]

[tasks.update_attributes]
title = "Update {{ who }}"
steps = [{ per_change = "Set {{ change.field }} to {{ change.to | show }}." }]

[tasks.change_role]
title = "Role of {{ who }}"
steps = ["Make {{ base.email }} {{ target.role }}."]

[tasks.deactivate]
title = "Deactivate {{ who }}"
steps = ["Switch off {{ base.email }}."]

[tasks.reactivate]
title = "Reactivate {{ who }}"
steps = ["Switch on {{ base.email }}."]

[tasks.remove]
title = "Remove {{ who }}"
steps = ["Delete {{ base.email }}."]

[[tasks.remove.fields]]
name = "seat_freed"
label = "Seat freed?"
required = true
choices = ["yes", "no"]
"#;

fn parse(text: &str) -> Result<Profile, ProfileError> {
    Profile::parse("mini.toml", text)
}

fn broken(from: &str, to: &str) -> ProfileError {
    assert!(
        MINIMAL.contains(from),
        "test setup: {from:?} not in MINIMAL"
    );
    parse(&MINIMAL.replacen(from, to, 1)).unwrap_err()
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn built_in_and_example_profiles_load() {
    let p = peopleai();
    assert_eq!(p.display_name, "People.ai");
    assert_eq!(p.roles, ["Admin", "Standard"]);
    let examples = [
        (
            "6sense.toml",
            include_str!("../../../profiles/examples/6sense.toml"),
        ),
        (
            "amazinghiring.toml",
            include_str!("../../../profiles/examples/amazinghiring.toml"),
        ),
    ];
    let all = Profiles::with_files(examples).unwrap();
    assert_eq!(all.keys(), ["6sense", "amazinghiring", "peopleai"]);
    assert_eq!(
        all.get("6sense").unwrap().roles,
        ["Admin", "User", "Read-only"]
    );
}

#[test]
fn admins_group_or_roles_value_grant_admin() {
    let p = peopleai();
    assert_eq!(p.resolve_role(["Sales"], []), "Standard");
    assert_eq!(p.resolve_role(["people.ai admins"], []), "Admin");
    assert_eq!(p.resolve_role([], ["admin"]), "Admin");
    assert_eq!(p.resolve_role([], ["Unknown"]), "Standard");
    assert!(p.group_decides_role("PEOPLE.AI ADMINS"));
    assert!(!p.group_decides_role("Sales"));
}

#[test]
fn scim_role_aliases_map_and_the_most_privileged_role_wins() {
    let p = parse(MINIMAL).unwrap();
    assert_eq!(p.resolve_role([], ["BOSS"]), "Owner", "alias, any case");
    assert_eq!(
        p.resolve_role([], ["member"]),
        "Member",
        "a role's own name"
    );
    assert_eq!(p.resolve_role([], ["member", "owner"]), "Owner");
    assert_eq!(p.resolve_role(["Mini Owners"], ["member"]), "Owner");
    assert_eq!(p.resolve_role(["Other"], []), "Member", "default");
}

#[test]
fn create_task_carries_email_role_and_sso_caveat() {
    let p = peopleai();
    let a = ann("Admin");
    let (title, steps) = p.render(&plan(Some(&a), None).unwrap());
    assert_eq!(
        title,
        "Create People.ai account for Ann Lee (ann@corp.com) as Admin"
    );
    assert!(steps
        .iter()
        .any(|s| s == "Add the user by work email ann@corp.com with role Admin (name: Ann Lee)."));
    assert!(steps.iter().any(|s| s.contains("SSO")));
    let (_, leave) = p.render(&plan(None, Some(&a)).unwrap());
    assert!(leave.iter().any(|s| s.contains("connector")));
    assert!(leave.iter().any(|s| s.contains("seat")));
}

/// The texts before profiles became files, kept verbatim as the oracle that the
/// People.ai file says exactly what the code said.
fn hard_coded(plan: &Plan) -> (String, Vec<String>) {
    let app = "People.ai";
    let who = plan
        .target
        .as_ref()
        .or(plan.base.as_ref())
        .map(Account::label)
        .unwrap_or_default();
    let sign_in = format!("Sign in to {app} with an administrative account.");
    let open_area = "Open the administrative user-management area.".to_string();
    let open_record = |a: Option<&Account>| {
        format!(
            "Open the user record of {}.",
            a.map(|a| a.email.as_str()).unwrap_or("the user")
        )
    };
    let changes: Vec<String> = plan
        .changes
        .iter()
        .map(|c| {
            format!(
                "Change {} from {} to {}.",
                c.field,
                show_json(&c.from),
                show_json(&c.to)
            )
        })
        .collect();
    let ownership = "Review connector ownership and CRM-linked responsibilities \
        (email, calendar and CRM connectors the user owns) and move them to another owner."
        .to_string();
    let record = "Record in this task whether the seat (licence) was freed and who now \
        owns the user's connectors and records."
        .to_string();
    let name_clause = |a: &Account| match (&a.given_name, &a.family_name) {
        (Some(g), Some(f)) => format!(" (name: {g} {f})"),
        (Some(n), None) | (None, Some(n)) => format!(" (name: {n})"),
        (None, None) => String::new(),
    };
    match (plan.kind, plan.target.as_ref()) {
        (TaskKind::CreateAccount, Some(t)) => (
            format!("Create {app} account for {who} ({}) as {}", t.email, t.role),
            vec![
                sign_in,
                open_area,
                format!(
                    "Add the user by work email {} with role {}{}.",
                    t.email,
                    t.role,
                    name_clause(t)
                ),
                format!(
                    "If enterprise SSO is on, make sure {} is assigned to the {app} app \
                     in the IdP before their first login.",
                    t.user_name
                ),
                "Complete this task; record the account's id in the app if it shows one.".into(),
            ],
        ),
        (TaskKind::ChangeRole, Some(t)) => (
            format!("Change {app} role of {who} ({}) to {}", t.email, t.role),
            [vec![sign_in, open_record(plan.base.as_ref())], changes].concat(),
        ),
        (TaskKind::UpdateAttributes, _) => (
            format!("Update {app} account of {who}"),
            [vec![sign_in, open_record(plan.base.as_ref())], changes].concat(),
        ),
        (TaskKind::Reactivate, _) => (
            format!("Reactivate {app} account of {who}"),
            [
                vec![
                    sign_in,
                    open_record(plan.base.as_ref()),
                    "Restore the user's platform access.".into(),
                ],
                changes,
            ]
            .concat(),
        ),
        (TaskKind::Deactivate, _) => (
            format!("Deactivate {app} account of {who} (leaver)"),
            vec![
                sign_in,
                open_record(plan.base.as_ref()),
                ownership,
                "Deactivate the user or revoke platform access.".into(),
                record,
            ],
        ),
        (TaskKind::Remove, _) => (
            format!("Remove {app} account of {who} (leaver)"),
            vec![
                sign_in,
                open_record(plan.base.as_ref()),
                ownership,
                "Remove the user (or deactivate them if the app offers no removal).".into(),
                record,
            ],
        ),
        (TaskKind::CreateAccount | TaskKind::ChangeRole, None) => {
            (format!("Review {app} account of {who}"), changes)
        }
        // Never planned from a difference (snapshots make these); no hard-coded text.
        (TaskKind::ReviewAccount, _) => (String::new(), Vec::new()),
    }
}

#[test]
fn the_peopleai_file_says_exactly_what_the_hard_coded_texts_said() {
    let p = peopleai();
    let only_given = Account {
        family_name: None,
        ..ann("Standard")
    };
    let bare = Account {
        given_name: None,
        family_name: None,
        display_name: Some("Annie".into()),
        department: Some("Sales".into()),
        ..ann("Standard")
    };
    let mut checked = 0;
    for a in [ann("Standard"), only_given, bare] {
        let admin = Account {
            role: "Admin".into(),
            ..a.clone()
        };
        let moved = Account {
            email: "ann.lee@corp.com".into(),
            department: None,
            ..a.clone()
        };
        let off = Account {
            active: false,
            ..a.clone()
        };
        let off_moved = Account {
            active: false,
            ..moved.clone()
        };
        let pairs = [
            (Some(&a), None),
            (Some(&admin), Some(&a)),
            (Some(&moved), Some(&a)),
            (Some(&off), Some(&a)),
            (Some(&moved), Some(&off_moved)),
            (Some(&a), Some(&off_moved)),
            (None, Some(&a)),
            (None, Some(&off)),
        ];
        for (desired, basis) in pairs {
            let plan = plan(desired, basis).unwrap();
            assert_eq!(p.render(&plan), hard_coded(&plan), "{:?}", plan.kind);
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn peopleai_completion_fields_are_unchanged() {
    let p = peopleai();
    let create = p.completion_fields(TaskKind::CreateAccount);
    assert_eq!(create.len(), 1);
    assert_eq!(create[0].name, "app_account_id");
    assert!(!create[0].required);
    for kind in [TaskKind::Deactivate, TaskKind::Remove] {
        let f = p.completion_fields(kind);
        assert_eq!(f.len(), 2, "{kind:?}");
        assert_eq!(f[0].name, "seat_freed");
        assert!(f[0].required);
        assert_eq!(f[0].choices, ["yes", "no", "unknown"]);
        assert_eq!(f[1].name, "ownership_moved_to");
        assert!(!f[1].required && f[1].choices.is_empty());
    }
    for kind in [
        TaskKind::UpdateAttributes,
        TaskKind::ChangeRole,
        TaskKind::Reactivate,
    ] {
        assert!(p.completion_fields(kind).is_empty(), "{kind:?}");
    }
}

#[test]
fn steps_that_render_empty_are_dropped_and_none_prints_as_nothing() {
    let text = MINIMAL.replace(
        r#"steps = ["Add {{ target.email }} as {{ target.role }}."]"#,
        r#"steps = ["Add {{ target.email }}{{ target.department }} ({{ target.active }}).", "{% if target.department %}Put them in {{ target.department }}.{% endif %}"]"#,
    );
    let p = parse(&text).unwrap();
    let (_, steps) = p.render(&plan(Some(&ann("Member")), None).unwrap());
    assert_eq!(
        steps,
        ["Add ann@corp.com (true)."],
        "JSON's true, not Python's True"
    );
    let sales = Account {
        department: Some("Sales".into()),
        ..ann("Member")
    };
    let (_, steps) = p.render(&plan(Some(&sales), None).unwrap());
    assert_eq!(
        steps,
        ["Add ann@corp.comSales (true).", "Put them in Sales."]
    );
}

#[test]
fn per_change_steps_list_each_change() {
    let p = parse(MINIMAL).unwrap();
    let moved = Account {
        email: "ann.lee@corp.com".into(),
        department: Some("Sales".into()),
        ..ann("Member")
    };
    let (title, steps) = p.render(&plan(Some(&moved), Some(&ann("Member"))).unwrap());
    assert_eq!(title, "Update Ann Lee");
    assert_eq!(
        steps,
        [
            "Set department to \"Sales\".",
            "Set email to \"ann.lee@corp.com\"."
        ]
    );
}

#[test]
fn bad_toml_is_reported_with_its_line() {
    let e = broken("display_name = \"Mini\"", "display_name = \"Mini");
    assert_eq!(e.file, "mini.toml");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().starts_with("mini.toml:2:"), "{e}");
}

#[test]
fn unknown_keys_and_task_kinds_are_refused_at_their_line() {
    let e = broken("[tasks.remove]", "[tasks.delete]");
    assert_eq!(e.line, Some(line_of(MINIMAL, "[tasks.remove]")), "{e}");
    assert!(e.message.contains("delete"), "{e}");
    let e = broken(
        "title = \"Create {{ who }}\"",
        "titel = \"Create {{ who }}\"",
    );
    assert!(e.message.contains("titel"), "{e}");
    assert_eq!(e.line, Some(line_of(MINIMAL, "title = \"Create")), "{e}");
}

#[test]
fn a_mapping_to_an_unknown_role_names_the_role_and_line() {
    let e = broken("\"Mini Owners\" = \"Owner\"", "\"Mini Owners\" = \"Admin\"");
    assert_eq!(e.line, Some(line_of(MINIMAL, "\"Mini Owners\"")), "{e}");
    assert!(
        e.message.contains("\"Admin\"") && e.message.contains("Owner, Member"),
        "{e}"
    );
    let e = broken("boss = \"Owner\"", "boss = \"owner\"");
    assert!(e.message.contains("did you mean \"Owner\""), "{e}");
    let e = broken("default_role = \"Member\"", "default_role = \"Guest\"");
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn roles_must_be_present_and_distinct() {
    let e = broken(r#"roles = ["Owner", "Member"]"#, "roles = []");
    assert!(e.message.contains("at least one role"), "{e}");
    let e = broken(
        r#"roles = ["Owner", "Member"]"#,
        r#"roles = ["Owner", "owner"]"#,
    );
    assert!(e.message.contains("twice"), "{e}");
    assert_eq!(e.line, Some(3));
}

#[test]
fn a_missing_task_kind_is_named() {
    let start = MINIMAL.find("[tasks.reactivate]").unwrap();
    let end = MINIMAL.find("[tasks.remove]").unwrap();
    let text = format!("{}{}", &MINIMAL[..start], &MINIMAL[end..]);
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("[tasks.reactivate] is missing"), "{e}");
    let e = broken(r#"steps = ["Switch off {{ base.email }}."]"#, "steps = []");
    assert!(e.message.contains("tasks.deactivate.steps"), "{e}");
}

#[test]
fn template_syntax_errors_name_the_template_and_line() {
    let e = broken(
        "Switch off {{ base.email }}.",
        "Switch off {{ base.email }.",
    );
    assert_eq!(e.line, Some(line_of(MINIMAL, "Switch off")), "{e}");
    assert!(
        e.message
            .starts_with("tasks.deactivate.steps[0]: syntax error"),
        "{e}"
    );

    // The third line of a multi-line string is three lines below its opening quotes.
    let e = broken(
        r#"title = "Remove {{ who }}""#,
        "title = \"\"\"\nRemove\n{{ who }\n\"\"\"",
    );
    assert_eq!(
        e.line,
        Some(line_of(MINIMAL, "title = \"Remove") + 2),
        "{e}"
    );
    assert!(e.message.starts_with("tasks.remove.title:"), "{e}");
}

#[test]
fn misspelt_variables_and_misplaced_change_fail_at_start() {
    let e = broken("Make {{ base.email }}", "Make {{ base.emial }}");
    assert!(
        e.message
            .starts_with("tasks.change_role.steps[0]: undefined"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(MINIMAL, "Make {{")), "{e}");
    // target is none in a remove task.
    let e = broken("Delete {{ base.email }}", "Delete {{ target.email }}");
    assert!(e.message.contains("tasks.remove.steps[0]"), "{e}");
    // change exists only in per_change steps.
    let e = broken("Switch on {{ base.email }}", "Switch on {{ change.field }}");
    assert!(e.message.contains("tasks.reactivate.steps[0]"), "{e}");
    let e = broken("{{ change.to | show }}", "{{ change.to | shout }}");
    assert!(
        e.message.contains("tasks.update_attributes.steps[0]"),
        "{e}"
    );
}

#[test]
fn steps_have_one_of_two_shapes_and_fields_are_distinct() {
    let e = broken(r#"[{ per_change = "Set"#, r#"[{ each = "Set"#);
    assert!(e.message.contains("per_change"), "{e}");
    let text = MINIMAL.replace(
        "choices = [\"yes\", \"no\"]\n",
        "choices = [\"yes\", \"no\"]\n\n[[tasks.remove.fields]]\nname = \"seat_freed\"\nlabel = \"Again\"\n",
    );
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("defined twice"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "label = \"Again\"") - 1), "{e}");
}

#[test]
fn a_key_defined_twice_is_an_error_naming_both_files() {
    let twice = Profiles::with_files([("a.toml", MINIMAL), ("b.toml", MINIMAL)]).unwrap_err();
    assert_eq!(twice.file, "b.toml");
    assert_eq!(twice.line, Some(1));
    assert!(twice.message.contains("a.toml"), "{twice}");
    let builtin = MINIMAL.replace("key = \"mini\"", "key = \"peopleai\"");
    let e = Profiles::with_files([("mine.toml", builtin.as_str())]).unwrap_err();
    assert!(e.message.contains("profiles/peopleai.toml"), "{e}");
}

#[test]
fn a_template_that_fails_on_real_data_still_yields_a_task_with_the_changes() {
    // `nope` is only reached for a department no sample has, so validation passes.
    let text = MINIMAL.replace(
        "Add {{ target.email }}",
        "Add {% if target.department == 'Boom' %}{{ nope }}{% endif %}{{ target.email }}",
    );
    let p = parse(&text).unwrap();
    let boom = Account {
        department: Some("Boom".into()),
        ..ann("Member")
    };
    let (title, steps) = p.render(&plan(Some(&boom), None).unwrap());
    assert_eq!(title, "Review Mini account of Ann Lee (create_account)");
    assert!(steps[0].contains("could not be rendered"), "{steps:?}");
    assert!(steps.contains(&"Change email from (none) to \"ann@corp.com\".".to_string()));
}

#[test]
fn peopleai_reads_its_export_and_words_orphan_reviews() {
    let p = peopleai();
    assert_eq!(
        p.snapshot.key_field(),
        Ok(crate::reconcile::snapshot::Field::Email)
    );
    assert_eq!(p.snapshot.role_of("administrator", &p.roles), "Admin");
    assert_eq!(p.snapshot.status_of(" revoked "), Some(false));
    let orphan = ann("Admin");
    let review = Plan {
        kind: TaskKind::ReviewAccount,
        base: Some(orphan.clone()),
        target: None,
        changes: Vec::new(),
    };
    let (title, steps) = p.render(&review);
    assert_eq!(
        title,
        "Review People.ai account ann@corp.com: no IdP user has it"
    );
    assert!(steps.iter().any(|s| s.contains("connector")));
    let fields = p.completion_fields(TaskKind::ReviewAccount);
    assert_eq!(fields[0].name, "resolution");
    assert!(fields[0].required);
}

#[test]
fn a_profile_without_review_texts_gets_the_default_and_a_bad_snapshot_table_its_line() {
    let p = parse(MINIMAL).unwrap();
    let (title, _) = p.render(&Plan {
        kind: TaskKind::ReviewAccount,
        base: Some(ann("Member")),
        target: None,
        changes: Vec::new(),
    });
    assert_eq!(
        title,
        "Review Mini account ann@corp.com: no IdP user has it"
    );
    assert_eq!(p.snapshot.threshold, 0.2);
    let text = format!("{MINIMAL}\n[snapshot]\nthreshold = 3.0\n");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("threshold"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "[snapshot]")));
    let text = format!("{MINIMAL}\n[snapshot.roles]\nBoss = \"Chief\"\n");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("Chief"), "{e}");
}
