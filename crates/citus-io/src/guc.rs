//! `verify`'s "config settings" check: whether a node runs with each of the config's
//! `[settings]`, and where the value comes from when it does not.
//!
//! A value is compared in the server's own spelling where the server can give one: for a
//! setting a session may change (`user` and `superuser` contexts), `set_config(name, value,
//! true)` returns the config's value as the server would show it (`65536kB` → `64MB`), and it is
//! undone when its statement ends. Settings fixed at start or reload (`max_connections`,
//! `shared_buffers`, `wal_level`) are compared in their base unit (`pg_settings.unit`: bytes,
//! microseconds), as booleans, or as text without regard to case.

use citus_config::Setting;
use postgres::types::Type;

/// What one node has for one configured setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    /// The config's value.
    pub want: String,
    /// `current_setting(name)`, `None` when the server has no such setting.
    pub current: Option<String>,
    /// `pg_settings`'s `setting`, `unit`, `vartype`, `context`, `source`, `sourcefile` and
    /// `sourceline` (all `None` for a custom placeholder no loaded library defines).
    pub setting: Option<String>,
    pub unit: Option<String>,
    pub vartype: Option<String>,
    pub context: Option<String>,
    pub source: Option<String>,
    pub sourcefile: Option<String>,
    pub sourceline: Option<i32>,
    /// The config's value as the server spells it (`set_config`), or its refusal, when the
    /// setting can be changed in a session.
    pub normalised: Option<Result<String, String>>,
}

const QUERY: &str = "SELECT u.n, current_setting(u.n, true), s.setting, s.unit, s.vartype, s.context, s.source, s.sourcefile, s.sourceline \
     FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) LEFT JOIN pg_settings s ON s.name = u.n ORDER BY u.i";

/// Reads every configured setting on one node: one query, and one more per setting a session
/// may change.
pub fn read(client: &mut postgres::Client, settings: &[Setting]) -> Result<Vec<Seen>, postgres::Error> {
    let names: Vec<&str> = settings.iter().map(|s| s.name.as_str()).collect();
    let rows = client.query_typed(QUERY, &[(&names, Type::TEXT_ARRAY)])?;
    let mut seen = Vec::with_capacity(rows.len());
    for (row, s) in rows.iter().zip(settings) {
        let mut v = Seen {
            name: row.get(0),
            want: s.value.clone(),
            current: row.get(1),
            setting: row.get(2),
            unit: row.get(3),
            vartype: row.get(4),
            context: row.get(5),
            source: row.get(6),
            sourcefile: row.get(7),
            sourceline: row.get(8),
            normalised: None,
        };
        if matches!(v.context.as_deref(), Some("user" | "superuser")) {
            v.normalised = Some(
                client
                    .query_typed_one("SELECT set_config($1, $2, true)", &[(&v.name, Type::TEXT), (&v.want, Type::TEXT)])
                    .map(|r| r.get(0))
                    .map_err(|e| crate::pg::describe(&e)),
            );
        }
        seen.push(v);
    }
    Ok(seen)
}

/// The check's verdict on one node: whether every setting is in effect, the detail, and the
/// fix when one is not.
pub fn judge(seen: &[Seen], node: &str, coordinator: &str, database: &str, user: &str) -> (bool, String, Option<String>) {
    let wrong: Vec<&Seen> = seen.iter().filter(|s| !in_effect(s)).collect();
    if wrong.is_empty() {
        let names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
        return (true, format!("{} as the config sets them: {}", if seen.len() == 1 { "1 setting" } else { "all settings" }, names.join(", ")), None);
    }
    let detail = wrong
        .iter()
        .map(|s| match &s.current {
            None => format!("{}: the server has no such setting (config: {})", s.name, s.want),
            Some(c) => format!("{} = {c} (config: {}; {})", s.name, s.want, origin(s)),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut fixes: Vec<String> = Vec::new();
    for f in wrong.iter().map(|s| fix(s, node, coordinator, database, user)) {
        if !fixes.contains(&f) {
            fixes.push(f);
        }
    }
    (false, detail, Some(fixes.join("; ")))
}

/// Whether the node runs with the config's value.
fn in_effect(s: &Seen) -> bool {
    let Some(current) = s.current.as_deref() else { return false };
    if let Some(Ok(n)) = &s.normalised {
        return n == current;
    }
    // Otherwise (fixed at start or reload, or refused in a session) as `pg_settings` has it.
    let (Some(setting), Some(vartype)) = (s.setting.as_deref(), s.vartype.as_deref()) else {
        // A placeholder of a library the server has not loaded: text, as written.
        return current == s.want;
    };
    match vartype {
        "bool" => parse_bool(&s.want).is_some_and(|b| b == (setting == "on")),
        "integer" | "real" => match (in_base_unit(&s.want, s.unit.as_deref()), setting.parse::<f64>()) {
            // PostgreSQL rounds an integer setting to its unit (`100kB` of 8kB pages is 13).
            (Some(want), Ok(have)) if vartype == "integer" => (want - have).abs() <= 0.5,
            (Some(want), Ok(have)) => (want - have).abs() <= 1e-9 * want.abs().max(have.abs()),
            _ => false,
        },
        _ => s.want.eq_ignore_ascii_case(setting) || s.want.eq_ignore_ascii_case(current),
    }
}

/// Where the value in effect comes from, in words.
fn origin(s: &Seen) -> String {
    match (s.source.as_deref(), s.sourcefile.as_deref()) {
        (Some("configuration file"), Some(f)) if f.ends_with("/postgresql.auto.conf") => {
            format!("set by ALTER SYSTEM in {f}{}", s.sourceline.map_or(String::new(), |l| format!(":{l}")))
        }
        (Some("configuration file"), Some(f)) if f.ends_with(crate::local::SETTINGS_FILE) => {
            format!("from {f}, which `up` wrote when the server started: the config changed since")
        }
        (Some("configuration file"), Some(f)) => format!("from {f}{}", s.sourceline.map_or(String::new(), |l| format!(":{l}"))),
        (Some("command line"), _) => "from the server's command line: the config changed since it started".into(),
        (Some("database"), _) => "set by ALTER DATABASE ... SET".into(),
        (Some("user"), _) => "set by ALTER ROLE ... SET".into(),
        (Some("database user"), _) => "set by ALTER ROLE ... IN DATABASE ... SET".into(),
        (Some(other), _) => format!("source: {other}"),
        (None, _) => "a custom setting no loaded library defines".into(),
    }
}

fn fix(s: &Seen, node: &str, coordinator: &str, database: &str, user: &str) -> String {
    let name = &s.name;
    let restart = "`cargo xtask down`, then `cargo xtask up`, restarts the nodes with the config's settings";
    // A setting read at start needs a restart; the others a reload.
    let apply = if s.context.as_deref() == Some("postmaster") { format!("then {restart}") } else { "SELECT pg_reload_conf();".to_string() };
    if s.current.is_none() {
        return format!("check the spelling of `{name}` (an extension's setting needs its library in shared_preload_libraries)");
    }
    if let Some(Err(e)) = &s.normalised {
        return format!("the server refuses {name} = {:?}: {e}", s.want);
    }
    let db = postgres_protocol::escape::escape_identifier(database);
    let role = postgres_protocol::escape::escape_identifier(user);
    match (s.source.as_deref(), s.sourcefile.as_deref()) {
        (Some("configuration file"), Some(f)) if f.ends_with("/postgresql.auto.conf") => {
            format!("on {node}: ALTER SYSTEM RESET {name}; {apply}")
        }
        (Some("configuration file"), Some(f)) if !f.ends_with(crate::local::SETTINGS_FILE) => format!("remove {name} from {f}, then {restart}"),
        // Citus refuses these on a worker and passes them on from the coordinator.
        (Some("database"), _) => format!("on the coordinator ({coordinator}): ALTER DATABASE {db} RESET {name}"),
        (Some("user"), _) => format!("on the coordinator ({coordinator}): ALTER ROLE {role} RESET {name}"),
        (Some("database user"), _) => format!("on the coordinator ({coordinator}): ALTER ROLE {role} IN DATABASE {db} RESET {name}"),
        _ => restart.to_string(),
    }
}

/// PostgreSQL's boolean spellings (`parse_bool`: any unique prefix of these words, and 1/0).
fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(&v);
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || v == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

/// Bytes or microseconds per unit, for PostgreSQL's memory and time units.
fn unit_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "min" => 60e6,
        "h" => 3600e6,
        "d" => 86400e6,
        _ => return None,
    })
}

/// `value` (a number, with or without one of PostgreSQL's units) in the setting's base unit
/// (`pg_settings.unit`, e.g. `8kB`, `ms`, or none).
fn in_base_unit(value: &str, base: Option<&str>) -> Option<f64> {
    let v = value.trim();
    let split = v.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(v.len());
    let (number, unit) = (v[..split].trim(), v[split..].trim());
    let number: f64 = number.parse().ok()?;
    if unit.is_empty() {
        return Some(number);
    }
    let base = base?;
    let digits = base.find(|c: char| !c.is_ascii_digit()).unwrap_or(base.len());
    let base_count: f64 = if digits == 0 { 1.0 } else { base[..digits].parse().ok()? };
    Some(number * unit_factor(unit)? / (base_count * unit_factor(&base[digits..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(want: &str, current: &str, setting: &str, unit: Option<&str>, vartype: &str, context: &str) -> Seen {
        Seen {
            name: "x".into(),
            want: want.into(),
            current: Some(current.into()),
            setting: Some(setting.into()),
            unit: unit.map(Into::into),
            vartype: Some(vartype.into()),
            context: Some(context.into()),
            source: Some("command line".into()),
            sourcefile: None,
            sourceline: None,
            normalised: None,
        }
    }

    #[test]
    fn values_compare_in_the_servers_units() {
        assert!(in_effect(&seen("300", "300", "300", None, "integer", "postmaster")));
        assert!(!in_effect(&seen("300", "100", "100", None, "integer", "postmaster")));
        assert!(in_effect(&seen("256MB", "256MB", "32768", Some("8kB"), "integer", "postmaster")));
        assert!(in_effect(&seen("100kB", "104kB", "13", Some("8kB"), "integer", "postmaster")), "rounded to whole pages");
        assert!(!in_effect(&seen("128MB", "256MB", "32768", Some("8kB"), "integer", "postmaster")));
        assert!(in_effect(&seen("1min", "1min", "60", Some("s"), "integer", "sighup")));
        assert!(in_effect(&seen("60000", "1min", "60000", Some("ms"), "integer", "sighup")), "no unit: the base unit");
        assert!(in_effect(&seen("1.5", "1.5", "1.5", None, "real", "sighup")));
        assert!(in_effect(&seen("yes", "on", "on", None, "bool", "sighup")));
        assert!(in_effect(&seen("off", "off", "off", None, "bool", "sighup")));
        assert!(!in_effect(&seen("on", "off", "off", None, "bool", "sighup")));
        assert!(in_effect(&seen("LOGICAL", "logical", "logical", None, "enum", "postmaster")));
        assert!(!in_effect(&seen("logical", "replica", "replica", None, "enum", "postmaster")));
        assert!(!in_effect(&seen("12XB", "12", "12", Some("kB"), "integer", "postmaster")), "an unknown unit never matches");
    }

    #[test]
    fn session_settings_use_the_servers_spelling() {
        let mut s = seen("65536kB", "64MB", "65536", Some("kB"), "integer", "user");
        s.normalised = Some(Ok("64MB".into()));
        assert!(in_effect(&s));
        s.normalised = Some(Ok("128MB".into()));
        assert!(!in_effect(&s));
        // Refused in a session (a check that depends on the session's state): compared in
        // the base unit instead.
        s.normalised = Some(Err("invalid value".into()));
        assert!(in_effect(&s));
        s.want = "1MB".into();
        assert!(!in_effect(&s));
    }

    #[test]
    fn placeholders_and_unknown_names() {
        let mut s = seen("1", "1", "", None, "", "");
        (s.setting, s.vartype, s.context, s.source) = (None, None, None, None);
        assert!(in_effect(&s));
        s.current = None;
        assert!(!in_effect(&s));
        let (ok, detail, fix) = judge(&[s], "w1", "c", "db", "u");
        assert!(!ok);
        assert_eq!(detail, "x: the server has no such setting (config: 1)");
        assert!(fix.unwrap().contains("spelling"));
    }

    #[test]
    fn the_fix_names_where_the_value_comes_from() {
        let mut s = seen("300", "500", "500", None, "integer", "postmaster");
        s.source = Some("configuration file".into());
        s.sourcefile = Some("/d/postgresql.auto.conf".into());
        s.sourceline = Some(3);
        let (ok, detail, fix) = judge(std::slice::from_ref(&s), "citus_worker1", "c", "db", "u");
        assert!(!ok);
        assert_eq!(detail, "x = 500 (config: 300; set by ALTER SYSTEM in /d/postgresql.auto.conf:3)");
        assert!(fix.unwrap().starts_with("on citus_worker1: ALTER SYSTEM RESET x; then `cargo xtask down`"));
        s.context = Some("sighup".into());
        assert_eq!(judge(std::slice::from_ref(&s), "w1", "c", "db", "u").2.unwrap(), "on w1: ALTER SYSTEM RESET x; SELECT pg_reload_conf();");
        s.source = Some("database".into());
        s.sourcefile = None;
        assert_eq!(judge(std::slice::from_ref(&s), "w1", "c", "my db", "u").2.unwrap(), "on the coordinator (c): ALTER DATABASE \"my db\" RESET x");
        // Two settings with the same fix name it once.
        let s = seen("300", "100", "100", None, "integer", "postmaster");
        let (_, detail, fix) = judge(&[s.clone(), s], "c", "c", "db", "u");
        assert!(detail.contains("command line"), "{detail}");
        assert_eq!(fix.unwrap(), "`cargo xtask down`, then `cargo xtask up`, restarts the nodes with the config's settings");
    }

    #[test]
    fn booleans_as_postgresql_reads_them() {
        for t in ["on", "TRUE", "t", "yes", "y", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["off", "false", "f", "no", "n", "0", "of"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("o"), None);
        assert_eq!(parse_bool("maybe"), None);
    }
}
