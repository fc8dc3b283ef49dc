//! `verify`'s "config settings" check: whether a node runs with each of the config's
//! `[settings]`, and where the value comes from when it does not.
//!
//! A value is compared in the server's own spelling where the server can give one: for a
//! setting a session may change (`user` and `superuser` contexts), `set_config(name, value,
//! true)` returns the config's value as the server would show it (`65536kB` → `64MB`), and it is
//! undone when its statement ends. Settings fixed at start or reload (`max_connections`,
//! `shared_buffers`, `wal_level`) are compared as PostgreSQL reads them: numbers in their base
//! unit (`pg_settings.unit`), rounded as the server rounds them, octal and hex integers
//! included; booleans in any of PostgreSQL's spellings; enums without regard to case; strings
//! as written, less a trailing `/` (without regard to case when they hold no `%` escapes, which
//! are case-sensitive).
//! A custom setting no loaded library defines passes when the server holds the config's text,
//! and is named as such (a misspelt extension prefix looks the same); one that verify's own
//! connection sets (`application_name`, `client_encoding`) is named as not checked.

use citus_config::Setting;
use postgres::types::Type;

/// What one node has for one configured setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The setting's name, lower-cased as in the config.
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

/// `pg_settings` spells three names in mixed case (`DateStyle`, `IntervalStyle`, `TimeZone`).
const QUERY: &str = "SELECT u.n, current_setting(u.n, true), s.setting, s.unit, s.vartype, s.context, s.source, s.sourcefile, s.sourceline \
     FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) LEFT JOIN pg_settings s ON lower(s.name) = u.n ORDER BY u.i";

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
        if matches!(v.context.as_deref(), Some("user" | "superuser")) && v.source.as_deref() != Some("client") {
            // Each query ends with a Sync: its implicit transaction, and the change, end with it.
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

/// How one setting stands on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    InEffect,
    /// In effect as text, but no loaded library defines it (a custom setting, or a misspelt
    /// extension prefix).
    Custom,
    /// Verify's own connection sets it, so its session cannot show the server's value.
    SetByThisSession,
    Differs,
}

/// The check's verdict on one node: whether every setting is in effect, the detail, and the
/// fix when one is not.
pub fn judge(seen: &[Seen], node: &str, coordinator: &str, database: &str, user: &str) -> (bool, String, Option<String>) {
    let verdicts: Vec<(&Seen, Verdict)> = seen.iter().map(|s| (s, verdict(s))).collect();
    let with = |v: Verdict| verdicts.iter().filter(move |(_, x)| *x == v).map(|(s, _)| s.name.as_str()).collect::<Vec<_>>();
    let notes = {
        let mut notes = String::new();
        let custom = with(Verdict::Custom);
        if !custom.is_empty() {
            notes.push_str(&format!("; custom, read by no loaded library (check the spelling): {}", custom.join(", ")));
        }
        let unchecked = with(Verdict::SetByThisSession);
        if !unchecked.is_empty() {
            notes.push_str(&format!("; not checked, as every client sets it for its own session: {}", unchecked.join(", ")));
        }
        notes
    };
    let wrong: Vec<&Seen> = verdicts.iter().filter(|(_, v)| *v == Verdict::Differs).map(|(s, _)| *s).collect();
    if wrong.is_empty() {
        let names = with(Verdict::InEffect);
        let lead = match names.len() {
            0 => "none compared".to_string(),
            1 => format!("1 setting as the config sets it: {}", names[0]),
            _ => format!("all settings as the config sets them: {}", names.join(", ")),
        };
        return (true, format!("{lead}{notes}"), None);
    }
    let detail = wrong
        .iter()
        .map(|s| match &s.current {
            None => format!("{}: the server has no such setting (config: '{}')", s.name, s.want),
            Some(c) => format!("{} = '{c}' (config: '{}'; {})", s.name, s.want, origin(s)),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut fixes: Vec<String> = Vec::new();
    for f in wrong.iter().map(|s| fix(s, node, coordinator, database, user)) {
        if !fixes.contains(&f) {
            fixes.push(f);
        }
    }
    (false, format!("{detail}{notes}"), Some(fixes.join(" | ")))
}

fn verdict(s: &Seen) -> Verdict {
    let Some(current) = s.current.as_deref() else { return Verdict::Differs };
    if s.source.as_deref() == Some("client") {
        return Verdict::SetByThisSession;
    }
    if let Some(Ok(n)) = &s.normalised {
        return if n == current { Verdict::InEffect } else { Verdict::Differs };
    }
    // Otherwise (fixed at start or reload, or refused in a session) as `pg_settings` has it.
    let (Some(setting), Some(vartype)) = (s.setting.as_deref(), s.vartype.as_deref()) else {
        // A placeholder: the server keeps the text as it was given.
        return if current == s.want { Verdict::Custom } else { Verdict::Differs };
    };
    if same_value(&s.want, setting, s.unit.as_deref(), vartype) {
        Verdict::InEffect
    } else {
        Verdict::Differs
    }
}

/// Whether `want` (the config's text) is what the server reads as `setting` (`pg_settings`'s,
/// in the base unit `unit`) for a setting of type `vartype`.
fn same_value(want: &str, setting: &str, unit: Option<&str>, vartype: &str) -> bool {
    match vartype {
        "bool" => parse_bool(want).is_some_and(|b| b == (setting == "on")),
        // PostgreSQL rounds an integer setting to its unit, half to even (`rint`).
        // `pg_settings` shows a few in octal (`log_file_mode`, `unix_socket_permissions`: `0640`).
        "integer" => {
            let have = split_number(setting, true).filter(|(_, rest)| rest.is_empty()).map(|(n, _)| n);
            in_base_unit(want, unit, true).is_some_and(|w| Some(w.round_ties_even()) == have)
        }
        // `pg_settings` shows a real with six significant digits (`%g`).
        "real" => match (in_base_unit(want, unit, false), setting.parse::<f64>()) {
            (Some(w), Ok(h)) => (w - h).abs() <= 1e-5 * w.abs().max(h.abs()),
            _ => false,
        },
        "enum" => {
            want.eq_ignore_ascii_case(setting)
                // Hidden spellings: the boolean ones of on/off enums, and wal_level's old names.
                || (matches!(setting, "on" | "off") && parse_bool(want).is_some_and(|b| b == (setting == "on")))
                || (setting == "replica" && ["archive", "hot_standby"].iter().any(|old| want.eq_ignore_ascii_case(old)))
        }
        _ => {
            let tidy = |s: &str| s.trim_end_matches('/').to_string();
            want == setting || tidy(want) == tidy(setting) || (!want.contains('%') && want.eq_ignore_ascii_case(setting))
        }
    }
}

/// Where the value in effect comes from, in words.
fn origin(s: &Seen) -> String {
    let line = s.sourceline.map_or(String::new(), |l| format!(":{l}"));
    match (s.source.as_deref(), s.sourcefile.as_deref()) {
        (Some("configuration file"), Some(f)) if f.ends_with("/postgresql.auto.conf") => format!("set by ALTER SYSTEM in {f}{line}"),
        (Some("configuration file"), Some(f)) if f.ends_with(crate::local::SETTINGS_FILE) => {
            format!("from {f}, which `up` wrote when the server started: the config changed since")
        }
        (Some("configuration file"), Some(f)) => format!("from {f}{line}"),
        (Some("command line"), _) => "from the server's command line: the config changed since it started".into(),
        (Some("default"), _) => "the server's default: it started without this setting (the config changed since), or it could not read the value".into(),
        (Some("database"), _) => "set by ALTER DATABASE ... SET".into(),
        (Some("user"), _) => "set by ALTER ROLE ... SET".into(),
        (Some("database user"), _) => "set by ALTER ROLE ... IN DATABASE ... SET".into(),
        (Some("global"), _) => "set by ALTER ROLE ALL ... SET".into(),
        (Some(other), _) => format!("source: {other}"),
        (None, _) => "a custom setting no loaded library defines".into(),
    }
}

fn fix(s: &Seen, node: &str, coordinator: &str, database: &str, user: &str) -> String {
    let name = &s.name;
    // `up --restart` restarts a node whose settings in the config changed since it started;
    // a change made elsewhere needs a restart of its own.
    let restart = "`cargo xtask up --restart` restarts the nodes with the config's settings";
    let restart_any = "`cargo xtask down`, then `cargo xtask up`, restarts the nodes";
    if s.current.is_none() {
        return format!("check the spelling of `{name}` in [settings] (an extension's setting needs its library in shared_preload_libraries)");
    }
    if let Some(Err(e)) = &s.normalised {
        return format!("the server refuses {name} = '{}': {e}; correct it in [settings]", s.want);
    }
    // A value the server cannot read as its type: an extension only warns about it at start.
    let readable = match s.vartype.as_deref() {
        Some("bool") => parse_bool(&s.want).is_some(),
        Some(t @ ("integer" | "real")) => in_base_unit(&s.want, s.unit.as_deref(), t == "integer").is_some(),
        _ => true,
    };
    if !readable {
        let kind = match s.vartype.as_deref() {
            Some("integer") => "an integer (with one of its units)",
            Some("real") => "a number",
            _ => "a boolean",
        };
        return format!("`{name} = '{}'` is not {kind}, as the server needs: correct it in [settings], then {restart}", s.want);
    }
    // A setting read at start needs a restart; the others a reload.
    let apply = if s.context.as_deref() == Some("postmaster") { format!("then {restart_any}") } else { "then SELECT pg_reload_conf();".to_string() };
    let db = postgres_protocol::escape::escape_identifier(database);
    let role = postgres_protocol::escape::escape_identifier(user);
    match (s.source.as_deref(), s.sourcefile.as_deref()) {
        (Some("configuration file"), Some(f)) if f.ends_with("/postgresql.auto.conf") => format!("on {node}: ALTER SYSTEM RESET {name}, {apply}"),
        (Some("configuration file"), Some(f)) if !f.ends_with(crate::local::SETTINGS_FILE) => format!("remove {name} from {f}, then {restart_any}"),
        // Citus refuses these on a worker and passes them on from the coordinator.
        (Some("database"), _) => format!("on the coordinator ({coordinator}): ALTER DATABASE {db} RESET {name}"),
        (Some("user"), _) => format!("on the coordinator ({coordinator}): ALTER ROLE {role} RESET {name}"),
        (Some("database user"), _) => format!("on the coordinator ({coordinator}): ALTER ROLE {role} IN DATABASE {db} RESET {name}"),
        (Some("global"), _) => format!("on the coordinator ({coordinator}): ALTER ROLE ALL RESET {name}"),
        _ => restart.to_string(),
    }
}

use citus_config::parse_bool;

/// PostgreSQL's memory and time units, largest first, in bytes and microseconds.
const MEMORY_UNITS: [(&str, f64); 5] = [("TB", 1_099_511_627_776.0), ("GB", 1_073_741_824.0), ("MB", 1_048_576.0), ("kB", 1024.0), ("B", 1.0)];
const TIME_UNITS: [(&str, f64); 6] = [("d", 86_400e6), ("h", 3_600e6), ("min", 60e6), ("s", 1e6), ("ms", 1e3), ("us", 1.0)];

/// The number at the start of `v` and the rest (the unit), as PostgreSQL reads it: an
/// integer setting through `strtol` with base 0 (`0x1F` hex, `0640` octal) unless a `.` or an
/// exponent follows, then as a decimal (`strtod`).
fn split_number(v: &str, integer: bool) -> Option<(f64, &str)> {
    let v = v.trim();
    let (sign, body) = match v.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, v.strip_prefix('+').unwrap_or(v)),
    };
    let radix_end = |digits: &str, radix: u32| digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if integer {
        if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            let end = radix_end(hex, 16);
            return Some((sign * i64::from_str_radix(&hex[..end], 16).ok()? as f64, hex[end..].trim()));
        }
        let end = radix_end(body, 10);
        let decimal_follows = body[end..].starts_with(['.', 'e', 'E']);
        if body.len() > 1 && body.starts_with('0') && !decimal_follows {
            let oct = radix_end(body, 8);
            return Some((sign * i64::from_str_radix(&body[..oct], 8).ok()? as f64, body[oct..].trim()));
        }
    }
    // The longest prefix that is a decimal number.
    let end = (1..=body.len()).rev().find(|&i| body.is_char_boundary(i) && body[..i].parse::<f64>().is_ok())?;
    Some((sign * body[..end].parse::<f64>().ok()?, body[end..].trim()))
}

/// `value` (a number, with or without one of PostgreSQL's units) in the setting's base unit
/// (`pg_settings.unit`, e.g. `8kB`, `ms`, or none). A fractional value in a unit is first
/// rounded to the next smaller unit, as the server does (`0.3GB` is 307MB).
fn in_base_unit(value: &str, base: Option<&str>, integer: bool) -> Option<f64> {
    let (number, unit) = split_number(value, integer)?;
    if unit.is_empty() {
        return Some(number);
    }
    let base = base?;
    let digits = base.find(|c: char| !c.is_ascii_digit()).unwrap_or(base.len());
    let count: f64 = if digits == 0 { 1.0 } else { base[..digits].parse().ok()? };
    let family: &[(&str, f64)] = if MEMORY_UNITS.iter().any(|(u, _)| *u == &base[digits..]) { &MEMORY_UNITS } else { &TIME_UNITS };
    let base_factor = family.iter().find(|(u, _)| *u == &base[digits..])?.1;
    let at = family.iter().position(|(u, _)| *u == unit)?;
    let mut amount = number * family[at].1;
    if let Some((_, smaller)) = family.get(at + 1) {
        amount = (amount / smaller).round_ties_even() * smaller;
    }
    Some(amount / (count * base_factor))
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

    fn in_effect(s: &Seen) -> bool {
        verdict(s) == Verdict::InEffect
    }

    #[test]
    fn values_compare_in_the_servers_units() {
        assert!(in_effect(&seen("300", "300", "300", None, "integer", "postmaster")));
        assert!(!in_effect(&seen("300", "100", "100", None, "integer", "postmaster")));
        assert!(in_effect(&seen("256MB", "256MB", "32768", Some("8kB"), "integer", "postmaster")));
        // 100kB is 12.5 pages: rounded half to even, as the server's rint() does.
        assert!(in_effect(&seen("100kB", "96kB", "12", Some("8kB"), "integer", "postmaster")));
        assert!(!in_effect(&seen("100kB", "104kB", "13", Some("8kB"), "integer", "postmaster")));
        // A fraction of a unit is first rounded to the next smaller unit (0.3GB = 307MB).
        assert!(in_effect(&seen("0.3GB", "307MB", "39296", Some("8kB"), "integer", "postmaster")));
        assert!(!in_effect(&seen("128MB", "256MB", "32768", Some("8kB"), "integer", "postmaster")));
        assert!(in_effect(&seen("1min", "1min", "60", Some("s"), "integer", "sighup")));
        assert!(in_effect(&seen("60000", "1min", "60000", Some("ms"), "integer", "sighup")), "no unit: the base unit");
        assert!(in_effect(&seen("1.5 s", "1500ms", "1500", Some("ms"), "integer", "sighup")));
        assert!(in_effect(&seen("-1", "-1", "-1", Some("ms"), "integer", "sighup")));
        // strtol with base 0: octal and hex.
        assert!(in_effect(&seen("0640", "0640", "0640", None, "integer", "sighup")), "shown in octal");
        assert!(in_effect(&seen("416", "0640", "0640", None, "integer", "sighup")));
        assert!(!in_effect(&seen("0600", "0640", "0640", None, "integer", "sighup")));
        assert!(in_effect(&seen("0x10", "16", "16", None, "integer", "sighup")));
        assert!(in_effect(&seen("0.5", "0.5", "0.5", None, "real", "sighup")));
        assert!(in_effect(&seen("0.123456789", "0.123457", "0.123457", None, "real", "sighup")), "six significant digits");
        assert!(!in_effect(&seen("0.2", "0.5", "0.5", None, "real", "sighup")));
        assert!(in_effect(&seen("yes", "on", "on", None, "bool", "sighup")));
        assert!(in_effect(&seen("off", "off", "off", None, "bool", "sighup")));
        assert!(!in_effect(&seen("on", "off", "off", None, "bool", "sighup")));
        assert!(!in_effect(&seen("12XB", "12", "12", Some("kB"), "integer", "postmaster")), "an unknown unit never matches");
    }

    #[test]
    fn enums_and_strings_as_the_server_reads_them() {
        assert!(in_effect(&seen("LOGICAL", "logical", "logical", None, "enum", "postmaster")));
        assert!(!in_effect(&seen("logical", "replica", "replica", None, "enum", "postmaster")));
        assert!(in_effect(&seen("hot_standby", "replica", "replica", None, "enum", "postmaster")));
        assert!(in_effect(&seen("yes", "on", "on", None, "enum", "postmaster")), "archive_mode = yes");
        assert!(in_effect(&seen("log/", "log", "log", None, "string", "postmaster")));
        assert!(in_effect(&seen("utc", "UTC", "UTC", None, "string", "sighup")));
        assert!(in_effect(&seen("%m [%p] ", "%m [%p] ", "%m [%p] ", None, "string", "sighup")));
        assert!(!in_effect(&seen("%M [%p] ", "%m [%p] ", "%m [%p] ", None, "string", "sighup")), "%-escapes are case-sensitive");
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
    fn placeholders_unknown_names_and_what_the_session_sets() {
        let mut s = seen("1", "1", "", None, "", "");
        (s.setting, s.vartype, s.context, s.source) = (None, None, None, None);
        assert_eq!(verdict(&s), Verdict::Custom);
        let (ok, detail, _) = judge(std::slice::from_ref(&s), "w1", "c", "db", "u");
        assert!(ok);
        assert_eq!(detail, "none compared; custom, read by no loaded library (check the spelling): x");
        s.current = None;
        let (ok, detail, fix) = judge(&[s], "w1", "c", "db", "u");
        assert!(!ok);
        assert_eq!(detail, "x: the server has no such setting (config: '1')");
        assert!(fix.unwrap().contains("spelling"));
        let mut s = seen("tests", "citus-xtask", "citus-xtask", None, "string", "user");
        s.source = Some("client".into());
        let (ok, detail, _) = judge(&[s], "w1", "c", "db", "u");
        assert!(ok, "{detail}");
        assert_eq!(detail, "none compared; not checked, as every client sets it for its own session: x");
    }

    #[test]
    fn the_fix_names_where_the_value_comes_from() {
        let mut s = seen("300", "500", "500", None, "integer", "postmaster");
        s.source = Some("configuration file".into());
        s.sourcefile = Some("/d/postgresql.auto.conf".into());
        s.sourceline = Some(3);
        let (ok, detail, fix) = judge(std::slice::from_ref(&s), "citus_worker1", "c", "db", "u");
        assert!(!ok);
        assert_eq!(detail, "x = '500' (config: '300'; set by ALTER SYSTEM in /d/postgresql.auto.conf:3)");
        assert_eq!(fix.unwrap(), "on citus_worker1: ALTER SYSTEM RESET x, then `cargo xtask down`, then `cargo xtask up`, restarts the nodes");
        s.context = Some("sighup".into());
        assert_eq!(judge(std::slice::from_ref(&s), "w1", "c", "db", "u").2.unwrap(), "on w1: ALTER SYSTEM RESET x, then SELECT pg_reload_conf();");
        s.source = Some("database".into());
        s.sourcefile = None;
        assert_eq!(judge(std::slice::from_ref(&s), "w1", "c", "my db", "u").2.unwrap(), "on the coordinator (c): ALTER DATABASE \"my db\" RESET x");
        s.source = Some("global".into());
        assert_eq!(judge(std::slice::from_ref(&s), "w1", "c", "db", "u").2.unwrap(), "on the coordinator (c): ALTER ROLE ALL RESET x");
        // Two settings with the same fix name it once.
        let s = seen("300", "100", "100", None, "integer", "postmaster");
        let (_, detail, fix) = judge(&[s.clone(), s], "c", "c", "db", "u");
        assert!(detail.contains("command line"), "{detail}");
        assert_eq!(fix.unwrap(), "`cargo xtask up --restart` restarts the nodes with the config's settings");
        // A value the server could not read (an extension only warns): no restart helps.
        let mut s = seen("abc", "32", "32", None, "integer", "postmaster");
        s.source = Some("default".into());
        let fix = judge(&[s], "c", "c", "db", "u").2.unwrap();
        assert!(fix.starts_with("`x = 'abc'` is not an integer (with one of its units), as the server needs: correct it in [settings]"), "{fix}");
    }
}
