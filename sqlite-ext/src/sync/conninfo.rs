//! libpq connection strings, for the sync client.
//!
//! `persist_sync` accepts what `psql` accepts: `key=value` pairs
//! (`host=/var/run/postgresql dbname=sync user=app`) or a URI
//! (`postgresql://app@db.example.com:5432/sync?sslmode=verify-full`), with the
//! libpq environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
//! `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`) as defaults. tokio-postgres
//! reads neither the environment nor `sslrootcert` and knows only three of the
//! six `sslmode`s, so this module parses the string itself and builds the
//! client configuration from it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ExtError;

/// How the connection uses TLS, with libpq's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// TLS if the server offers it, without checking its certificate
    /// (`allow` and `prefer`).
    Prefer,
    /// TLS always, without checking the certificate.
    Require,
    /// TLS with a certificate signed by the root certificate.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

/// A parsed connection string.
pub struct ConnInfo {
    /// The client configuration, without TLS.
    pub config: postgres::Config,
    /// The TLS mode.
    pub ssl_mode: SslMode,
    /// The root certificate file for the verify modes.
    pub ssl_root_cert: Option<PathBuf>,
}

const KNOWN_KEYS: &str = "host, hostaddr, port, dbname, user, password, application_name, \
                          connect_timeout, options, sslmode, sslrootcert";

impl ConnInfo {
    /// Parses a connection string.
    ///
    /// # Errors
    ///
    /// [`ExtError::Usage`] naming the key or the part that is invalid. The
    /// password never appears in a message.
    pub fn parse(text: &str) -> Result<Self, ExtError> {
        let pairs = if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            parse_uri(text)?
        } else {
            parse_pairs(text)?
        };
        let mut settings = Settings::default();
        for (key, value) in pairs {
            settings.set(&key, value)?;
        }
        settings.apply_environment();
        settings.build()
    }
}

#[derive(Default)]
struct Settings {
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    dbname: Option<String>,
    user: Option<String>,
    password: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<String>,
    options: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl Settings {
    fn set(&mut self, key: &str, value: String) -> Result<(), ExtError> {
        let slot = match key {
            "host" => &mut self.host,
            "hostaddr" => &mut self.hostaddr,
            "port" => &mut self.port,
            "dbname" => &mut self.dbname,
            "user" => &mut self.user,
            "password" => &mut self.password,
            "application_name" => &mut self.application_name,
            "connect_timeout" => &mut self.connect_timeout,
            "options" => &mut self.options,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            other => {
                return Err(ExtError::usage(format!(
                    "persist_sync: connection option {other:?} is not supported; supported \
                     options are {KNOWN_KEYS}"
                )));
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn apply_environment(&mut self) {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        for (slot, name) in [
            (&mut self.host, "PGHOST"),
            (&mut self.hostaddr, "PGHOSTADDR"),
            (&mut self.port, "PGPORT"),
            (&mut self.dbname, "PGDATABASE"),
            (&mut self.user, "PGUSER"),
            (&mut self.password, "PGPASSWORD"),
            (&mut self.sslmode, "PGSSLMODE"),
            (&mut self.sslrootcert, "PGSSLROOTCERT"),
            (&mut self.connect_timeout, "PGCONNECT_TIMEOUT"),
        ] {
            if slot.is_none() {
                *slot = env(name);
            }
        }
    }

    fn build(self) -> Result<ConnInfo, ExtError> {
        let mut config = postgres::Config::new();
        // libpq's default on Debian is the server's socket directory.
        let host = self.host.unwrap_or_else(|| "/var/run/postgresql".into());
        let mut all_sockets = true;
        for host in host.split(',') {
            all_sockets &= host.starts_with('/');
            config.host(host);
        }
        if let Some(hostaddr) = &self.hostaddr {
            for address in hostaddr.split(',') {
                let ip = address.parse().map_err(|_| {
                    ExtError::usage(format!(
                        "persist_sync: hostaddr {address:?} is not an IP address"
                    ))
                })?;
                config.hostaddr(ip);
            }
            all_sockets = false;
        }
        let port = self.port.as_deref().unwrap_or("5432");
        for port in port.split(',') {
            let port: u16 = port.parse().map_err(|_| {
                ExtError::usage(format!(
                    "persist_sync: port {port:?} is not a port number (1 to 65535)"
                ))
            })?;
            config.port(port);
        }
        let user = self
            .user
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .ok_or_else(|| {
                ExtError::usage(
                    "persist_sync: no user name; give user=... in the connection string",
                )
            })?;
        config.dbname(self.dbname.as_deref().unwrap_or(&user));
        config.user(&user);
        if let Some(password) = &self.password {
            config.password(password);
        }
        config.application_name(self.application_name.as_deref().unwrap_or("persist_sync"));
        if let Some(options) = &self.options {
            config.options(options);
        }
        if let Some(timeout) = &self.connect_timeout {
            let seconds: u64 = timeout.parse().map_err(|_| {
                ExtError::usage(format!(
                    "persist_sync: connect_timeout {timeout:?} is not a whole number of seconds"
                ))
            })?;
            if seconds > 0 {
                config.connect_timeout(Duration::from_secs(seconds));
            }
        }

        let mut ssl_mode = match self.sslmode.as_deref().unwrap_or("prefer") {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ExtError::usage(format!(
                    "persist_sync: sslmode {other:?} is invalid; expected disable, allow, \
                     prefer, require, verify-ca or verify-full"
                )));
            }
        };
        // Like libpq, never try TLS over a Unix socket.
        if all_sockets && ssl_mode == SslMode::Prefer {
            ssl_mode = SslMode::Disable;
        }
        let ssl_root_cert = match self.sslrootcert {
            Some(path) => Some(PathBuf::from(path)),
            None if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                std::env::var_os("HOME")
                    .map(|home| PathBuf::from(home).join(".postgresql").join("root.crt"))
            }
            None => None,
        };
        Ok(ConnInfo {
            config,
            ssl_mode,
            ssl_root_cert,
        })
    }
}

/// Parses `key=value` pairs separated by white space; a value may be quoted
/// with single quotes, inside which `\'` and `\\` are escapes.
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, ExtError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ExtError::usage(format!(
                "persist_sync: expected \"{key}=value\" in the connection string, or a \
                 postgresql:// URI"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(escaped) => value.push(escaped),
                        None => break,
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(ExtError::usage(format!(
                            "persist_sync: the quoted value of {key} is not closed"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Parses `postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]`.
fn parse_uri(text: &str) -> Result<Vec<(String, String)>, ExtError> {
    let rest = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
        .unwrap_or(text);
    let (main, query) = match rest.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (main, None),
    };
    let mut pairs = Vec::new();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            pairs.push(("user".into(), percent_decode(user)?));
        }
        if let Some(password) = password {
            pairs.push(("password".into(), percent_decode(password)?));
        }
    }
    if !hostport.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for part in hostport.split(',') {
            let (host, port) = if let Some(bracketed) = part.strip_prefix('[') {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| {
                    ExtError::usage("persist_sync: an IPv6 host in the URI lacks its closing ]")
                })?;
                (host.to_owned(), after.strip_prefix(':').map(str::to_owned))
            } else {
                match part.rsplit_once(':') {
                    Some((host, port)) => (percent_decode(host)?, Some(port.to_owned())),
                    None => (percent_decode(part)?, None),
                }
            };
            if !host.is_empty() {
                hosts.push(host);
            }
            if let Some(port) = port {
                ports.push(port);
            }
        }
        if !hosts.is_empty() {
            pairs.push(("host".into(), hosts.join(",")));
        }
        if !ports.is_empty() {
            pairs.push(("port".into(), ports.join(",")));
        }
    }
    if let Some(path) = path.filter(|path| !path.is_empty()) {
        pairs.push(("dbname".into(), percent_decode(path)?));
    }
    for parameter in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (key, value) = parameter.split_once('=').ok_or_else(|| {
            ExtError::usage(format!(
                "persist_sync: URI parameter {parameter:?} has no value; expected key=value"
            ))
        })?;
        pairs.push((percent_decode(key)?, percent_decode(value)?));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Result<String, ExtError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(|| {
                ExtError::usage("persist_sync: a % in the URI is not followed by two hex digits")
            })?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| {
                ExtError::usage(format!(
                    "persist_sync: %{hex} in the URI is not a percent-encoded byte"
                ))
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ExtError::usage("persist_sync: a percent-encoded URI part is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        if text.starts_with("postgres") {
            parse_uri(text).unwrap()
        } else {
            parse_pairs(text).unwrap()
        }
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn key_value_pairs_with_quotes() {
        assert_eq!(
            pairs("host=/tmp/sock  dbname = sync password='it\\'s secret' port=5433"),
            vec![
                pair("host", "/tmp/sock"),
                pair("dbname", "sync"),
                pair("password", "it's secret"),
                pair("port", "5433"),
            ]
        );
    }

    #[test]
    fn uri_with_everything() {
        assert_eq!(
            pairs(
                "postgresql://app:p%40ss@db.example.com:6543/sync?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem"
            ),
            vec![
                pair("user", "app"),
                pair("password", "p@ss"),
                pair("host", "db.example.com"),
                pair("port", "6543"),
                pair("dbname", "sync"),
                pair("sslmode", "verify-full"),
                pair("sslrootcert", "/tmp/ca.pem"),
            ]
        );
    }

    #[test]
    fn uri_with_socket_directory_and_ipv6() {
        assert_eq!(
            pairs("postgresql://%2Fvar%2Frun%2Fpostgresql/db"),
            vec![pair("host", "/var/run/postgresql"), pair("dbname", "db")]
        );
        assert_eq!(
            pairs("postgres://[::1]:5432/db"),
            vec![
                pair("host", "::1"),
                pair("port", "5432"),
                pair("dbname", "db")
            ]
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("host", "expected \"host=value\""),
            ("host='unclosed", "not closed"),
            ("frobnicate=1 user=a", "\"frobnicate\" is not supported"),
            ("user=a sslmode=maybe", "sslmode \"maybe\" is invalid"),
            ("user=a port=http", "not a port number"),
            ("postgresql://a@h/db?sslmode", "has no value"),
            ("postgresql://a@h/%zz", "not a percent-encoded byte"),
        ];
        for (text, expected) in cases {
            let err = match ConnInfo::parse(text) {
                Ok(_) => panic!("{text} parsed"),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn password_never_in_errors() {
        let err = match ConnInfo::parse("password=hunter2 port=x user=a") {
            Ok(_) => panic!("parsed"),
            Err(err) => err.to_string(),
        };
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn unix_socket_never_uses_tls() {
        let info = ConnInfo::parse("host=/tmp user=a").unwrap();
        assert_eq!(info.ssl_mode, SslMode::Disable);
        let info =
            ConnInfo::parse("host=127.0.0.1 user=a sslmode=verify-full sslrootcert=/x").unwrap();
        assert_eq!(info.ssl_mode, SslMode::VerifyFull);
        assert_eq!(info.ssl_root_cert, Some(PathBuf::from("/x")));
    }
}
