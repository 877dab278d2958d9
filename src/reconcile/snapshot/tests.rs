use super::*;

fn roles() -> Vec<String> {
    vec!["Admin".into(), "Standard".into()]
}

fn parse_all(
    format: Format,
    text: &str,
    chunk: usize,
) -> Result<(Vec<Observed>, Rows), SnapshotError> {
    let config = SnapshotConfig {
        roles: [("Administrator".to_owned(), "Admin".to_owned())].into(),
        ..SnapshotConfig::default()
    };
    let roles = roles();
    let mut p = RowParser::new(format, &config, &roles)?;
    let mut out = Vec::new();
    for c in text.as_bytes().chunks(chunk) {
        p.feed(c, &mut out)?;
    }
    let rows = p.finish(&mut out)?;
    Ok((out, rows))
}

const PEOPLEAI_CSV: &str = "Email,First Name,Last Name,Role,Status\n\
    Ann@Corp.com,Ann,Lee,Administrator,Active\n\
    bob@corp.com,Bob,,User,Inactive\n";

#[test]
fn a_people_ai_export_reads_into_observed_accounts() {
    for chunk in [1, 5, 4096] {
        let (rows, info) = parse_all(Format::Csv, PEOPLEAI_CSV, chunk).unwrap();
        assert_eq!(info.rows, 2);
        assert!(info.unknown_columns.is_empty());
        assert_eq!(
            rows[0].key, "ann@corp.com",
            "the key is compared ignoring case"
        );
        assert_eq!(rows[0].line, 2);
        assert!(rows[0].active);
        assert_eq!(rows[0].fields[&Field::Role].as_deref(), Some("Admin"));
        assert_eq!(
            rows[0].fields[&Field::Email].as_deref(),
            Some("Ann@Corp.com")
        );
        assert!(!rows[1].active);
        assert_eq!(
            rows[1].fields[&Field::FamilyName],
            None,
            "an empty cell is none"
        );
        assert_eq!(
            rows[1].fields[&Field::Role].as_deref(),
            Some("User"),
            "an unknown role is kept as the app shows it"
        );
    }
}

#[test]
fn headers_match_ignoring_case_spaces_and_punctuation_and_unknown_ones_are_listed() {
    let csv = "EMAIL,first_name,Status,Seat Type\nann@corp.com,Ann,enabled,Full\n";
    let (rows, info) = parse_all(Format::Csv, csv, 3).unwrap();
    assert_eq!(rows[0].fields[&Field::GivenName].as_deref(), Some("Ann"));
    assert!(rows[0].active);
    assert_eq!(info.unknown_columns, ["Seat Type"]);
    assert!(
        !rows[0].fields.contains_key(&Field::Role),
        "no role column: not observed"
    );
}

#[test]
fn json_rows_use_the_same_names() {
    let json = r#"[{"email": "ann@corp.com", "First Name": "Ann", "status": true, "role": "admin"},
                   {"Email": "bob@corp.com", "Status": "inactive", "extra": 1}]"#;
    let (rows, info) = parse_all(Format::Json, json, 7).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].active);
    assert_eq!(rows[0].fields[&Field::Role].as_deref(), Some("Admin"));
    assert!(!rows[1].active);
    assert_eq!(info.unknown_columns, ["extra"]);
}

#[test]
fn bad_rows_are_refused_with_their_line() {
    let cases = [
        ("Email,Name\nann@corp.com,Ann\n", "missing_column", "row 1"),
        ("Email,Status\n,Active\n", "missing_key", "row 2"),
        (
            "Email,Status\nann@corp.com,Pending\n",
            "invalid_status",
            "row 2",
        ),
        (
            "Email,Status,E-mail\na,Active,b\n",
            "duplicate_column",
            "row 1",
        ),
        (
            "Email,Status\na@x.com,Active,extra\n",
            "ragged_row",
            "row 2",
        ),
        (
            "Email,Status\na\u{0}@x.com,Active\n",
            "invalid_value",
            "row 2",
        ),
    ];
    for (csv, code, line) in cases {
        let e = parse_all(Format::Csv, csv, 4).unwrap_err();
        assert_eq!(e.code, code, "{csv:?}: {}", e.message);
        assert!(e.message.contains(line), "{csv:?}: {}", e.message);
    }
}

#[test]
fn an_empty_file_has_no_rows() {
    assert_eq!(parse_all(Format::Csv, "", 1).unwrap().1.rows, 0);
    assert_eq!(
        parse_all(Format::Csv, "Email,Status\n", 1).unwrap().1.rows,
        0
    );
    assert_eq!(parse_all(Format::Json, "[]", 1).unwrap().1.rows, 0);
}

#[test]
fn the_observed_account_keeps_what_the_export_cannot_show() {
    let (rows, _) = parse_all(Format::Csv, PEOPLEAI_CSV, 4096).unwrap();
    let desired = Account {
        user_name: "ann".into(),
        email: "ann@corp.com".into(),
        given_name: Some("Ann".into()),
        family_name: Some("Lee".into()),
        display_name: Some("Ann Lee".into()),
        department: Some("Sales".into()),
        role: "Standard".into(),
        active: true,
    };
    let seen = rows[0].account(Some(&desired), "Standard");
    assert_eq!(seen.department.as_deref(), Some("Sales"));
    assert_eq!(seen.user_name, "ann");
    assert_eq!(seen.role, "Admin");
    assert_eq!(seen.email, "ann@corp.com", "the same email in another case");
    let moved = Account {
        email: "ann.lee@corp.com".into(),
        ..desired.clone()
    };
    assert_eq!(
        rows[0].account(Some(&moved), "Standard").email,
        "Ann@Corp.com"
    );
    let orphan = rows[1].account(None, "Standard");
    assert_eq!(
        (orphan.email.as_str(), orphan.active),
        ("bob@corp.com", false)
    );
}

#[test]
fn profile_settings_are_checked() {
    let roles = roles();
    assert_eq!(SnapshotConfig::default().validate(&roles), Ok(()));
    let c = SnapshotConfig {
        match_key: "phone".into(),
        ..SnapshotConfig::default()
    };
    assert!(c.validate(&roles).unwrap_err().contains("match_key"));
    let c = SnapshotConfig {
        threshold: 1.5,
        ..SnapshotConfig::default()
    };
    assert!(c.validate(&roles).unwrap_err().contains("threshold"));
    let mut c = SnapshotConfig::default();
    c.columns.insert("seat".into(), "Seat".into());
    assert!(c
        .validate(&roles)
        .unwrap_err()
        .contains("snapshot.columns.seat"));
    let mut c = SnapshotConfig::default();
    c.columns.remove("status");
    assert!(c.validate(&roles).unwrap_err().contains("status"));
    let mut c = SnapshotConfig::default();
    c.roles.insert("Boss".into(), "Owner".into());
    assert!(c.validate(&roles).unwrap_err().contains("Owner"));
    let mut c = SnapshotConfig::default();
    c.status.inactive.push("Active".into());
    assert!(c.validate(&roles).unwrap_err().contains("both"));
}
