//! The service under test: its base URL, which must be a loopback address unless the
//! operator passes `--allow-non-loopback`.

use std::net::IpAddr;

use reqwest::Url;

/// Parses `--base-url`. Unless `allow_non_loopback` is set, it rejects any host that is not
/// a loopback address (127.0.0.0/8, `::1` or `localhost`), so that a load run never leaves
/// this machine by mistake.
pub fn parse_base_url(raw: &str, allow_non_loopback: bool) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("invalid base URL {raw:?}: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "invalid base URL {raw:?}: the scheme must be http or https"
        ));
    }
    // `host_str` writes an IPv6 address in brackets.
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback && !allow_non_loopback {
        return Err(format!(
            "base URL {raw:?} is not a loopback address; use 127.0.0.1, [::1] or localhost, \
             or pass --allow-non-loopback for a host you run yourself"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("base URL {raw:?} must not carry credentials"));
    }
    Ok(url)
}

/// Returns the URL of an API path under the base URL, keeping any path prefix of the base.
pub fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_accepted() {
        for raw in [
            "http://127.0.0.1:8003",
            "http://127.3.4.5:1/",
            "http://[::1]:8003",
            "http://localhost:8003",
            "http://LOCALHOST",
        ] {
            assert!(parse_base_url(raw, false).is_ok(), "{raw} was rejected");
        }
    }

    #[test]
    fn other_hosts_are_rejected() {
        for raw in [
            "http://10.0.0.1:8003",
            "http://192.168.1.2",
            "http://example.com",
            "http://localhost.example.com",
            "http://0.0.0.0:8003",
            "http://[::]:8003",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(parse_base_url(raw, false).is_err(), "{raw} was accepted");
        }
    }

    #[test]
    fn allow_flag_accepts_other_hosts() {
        assert!(parse_base_url("http://10.0.0.1:8003", true).is_ok());
        assert!(parse_base_url("ftp://10.0.0.1", true).is_err());
        assert!(parse_base_url("http://user:secret@10.0.0.1", true).is_err());
    }

    #[test]
    fn endpoint_keeps_base_prefix() {
        let base = parse_base_url("http://127.0.0.1:8003/prefix/", false).unwrap();
        let url = endpoint(&base, "/api/v1/queue/stats");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8003/prefix/api/v1/queue/stats"
        );
    }
}
