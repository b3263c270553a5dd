//! Property tests (proptest) of what takes untrusted text: connection URLs and audit contexts.
//! Failing cases are kept by proptest in `fuzz.proptest-regressions` beside this file and
//! replayed first on every run; `fuzz-corpus/` keeps hand-picked and past inputs with the
//! outcome each must have.

use audit_logs_core::{AuditContext, ConnectOptions, ConnectionError, ContextError, Error};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("actorId".to_owned()),
                    Just("ipAddress".to_owned()),
                    Just("metadata".to_owned()),
                    Just("__proto__".to_owned()),
                    "[a-zA-Z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Any text is either a URL or a typed InvalidUrl error, never a panic.
    #[test]
    fn any_text_parses_or_is_an_invalid_url(text in ".{0,200}") {
        if let Err(e) = ConnectOptions::parse(&text) {
            prop_assert!(matches!(e, Error::Connection(ConnectionError::InvalidUrl { .. })), "{e:?}");
        }
    }

    /// Anything after the scheme: same.
    #[test]
    fn any_url_body_parses_or_is_an_invalid_url(body in "[ -~]{0,120}") {
        for scheme in ["postgres://", "postgresql://"] {
            if let Err(e) = ConnectOptions::parse(&format!("{scheme}{body}")) {
                prop_assert!(matches!(e, Error::Connection(ConnectionError::InvalidUrl { .. })), "{e:?}");
            }
        }
    }

    /// Users, passwords and databases with any characters survive percent-encoding, and the
    /// password never shows in the target used in messages.
    #[test]
    fn encoded_parts_come_back_exactly(
        user in "[^\u{0}]{1,20}",
        password in "[^\u{0}]{1,30}",
        host in "[a-z][a-z0-9-]{0,20}",
        port in 1u16..,
        database in "[^\u{0}/?]{1,20}",
    ) {
        let url = format!(
            "postgres://{}:{}@{host}:{port}/{}",
            utf8_percent_encode(&user, NON_ALPHANUMERIC),
            utf8_percent_encode(&password, NON_ALPHANUMERIC),
            utf8_percent_encode(&database, NON_ALPHANUMERIC),
        );
        let options = ConnectOptions::parse(&url).unwrap();
        prop_assert_eq!(options.user(), user.as_str());
        prop_assert_eq!(options.database(), database.as_str());
        prop_assert_eq!(options.target(), format!("{host}:{port}/{database}"));
        let env = options.libpq_env();
        prop_assert!(env.contains(&("PGPASSWORD", password.clone())));
    }

    /// Any JSON is either a context or a typed InvalidContext error; an accepted context
    /// serializes within the limit, with no prototype-pollution key anywhere.
    #[test]
    fn any_json_is_a_context_or_an_invalid_context(value in any_json()) {
        match AuditContext::from_camel_case(value).and_then(|c| c.to_setting()) {
            Ok(None) => {}
            Ok(Some(setting)) => {
                prop_assert!(setting.len() <= audit_logs_core::context::MAX_CONTEXT_BYTES);
                prop_assert!(!setting.contains("\"__proto__\""), "{setting}");
                let parsed: Value = serde_json::from_str(&setting).unwrap();
                prop_assert!(parsed.is_object());
            }
            Err(e) => prop_assert!(matches!(e, Error::Context(ContextError::Invalid { .. })), "{e:?}"),
        }
    }

    /// Any text as an IP address is an address or a typed error naming it.
    #[test]
    fn any_ip_text_is_an_address_or_named_in_the_error(text in ".{0,45}") {
        match AuditContext::parse_ip(&text) {
            Ok(ip) => prop_assert_eq!(ip, text.trim().parse::<std::net::IpAddr>().unwrap()),
            Err(e) => prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}"),
        }
    }
}

/// A kept corpus: `ok` or `invalid`, a tab, the input; `#` lines are comments.
fn corpus(file: &str) -> Vec<(bool, String)> {
    let path = format!("{}/tests/fuzz-corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| match line.split_once('\t') {
            Some(("ok", input)) => (true, input.to_owned()),
            Some(("invalid", input)) => (false, input.to_owned()),
            _ => panic!("{path}: not `ok` or `invalid`, a tab, the input: {line:?}"),
        })
        .collect()
}

/// What became of one corpus input.
enum Outcome {
    Accepted,
    /// The typed refusal, with its reason.
    Refused(String),
    /// Any other error: always wrong.
    Failed(String),
}

/// The corpus entries whose outcome is not the kept one.
fn mismatches(entries: &[(bool, String)], check: impl Fn(&str) -> Outcome) -> Vec<String> {
    entries
        .iter()
        .filter_map(|(valid, input)| match (check(input), valid) {
            (Outcome::Accepted, false) => {
                Some(format!("{input:?} was accepted, and should be refused"))
            }
            (Outcome::Refused(reason), true) => Some(format!(
                "{input:?} was refused ({reason}), and should be accepted"
            )),
            (Outcome::Failed(other), _) => {
                Some(format!("{input:?}: refused with the wrong error: {other}"))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn every_url_of_the_corpus_parses_or_fails_as_kept() {
    let urls = corpus("urls.txt");
    assert!(urls.len() >= 20, "the corpus is there");
    let wrong = mismatches(&urls, |url| match ConnectOptions::parse(url) {
        Ok(_) => Outcome::Accepted,
        Err(Error::Connection(ConnectionError::InvalidUrl { reason })) => Outcome::Refused(reason),
        Err(other) => Outcome::Failed(format!("{other:?}")),
    });
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_context_of_the_corpus_is_accepted_or_refused_as_kept() {
    let contexts = corpus("contexts.jsonl");
    assert!(contexts.len() >= 20, "the corpus is there");
    let wrong = mismatches(&contexts, |text| {
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        match AuditContext::from_camel_case(value).and_then(|c| c.to_setting()) {
            Ok(_) => Outcome::Accepted,
            Err(Error::Context(ContextError::Invalid { reason })) => Outcome::Refused(reason),
            Err(other) => Outcome::Failed(format!("{other:?}")),
        }
    });
    assert!(wrong.is_empty(), "{wrong:#?}");
}
