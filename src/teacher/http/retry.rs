//! When and how long to wait before sending a failed request again: exponential backoff with full
//! jitter, `Retry-After` parsing, and the server's error message cut to a readable size.
//!
//! Pure functions (the random source and the clock are arguments), so `http.rs` keeps the loop and
//! these keep the arithmetic, each tested on its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::Value;

/// The wait before retry number `attempt + 1`: uniform in `[0, min(max, initial · 2^attempt)]`.
///
/// Full jitter (rather than a fixed exponential schedule) spreads the retries of many requests
/// that failed together — a restarted server sees a trickle, not a synchronised wave.
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = initial.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(max);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=ms))
}

/// A `Retry-After` value: delay seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`,
/// the IMF-fixdate form every current server sends) relative to `now`. A date in the past means
/// zero; anything unparseable is `None`, and the caller falls back to its own backoff.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // Some servers send fractional seconds; tolerate them.
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = parse_imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the Unix epoch of `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let mut parts = s.split_ascii_whitespace();
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].iter().position(|m| *m == month_name)? as u64
            + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), year ≥ 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Longest server message kept in an error, in characters.
const MESSAGE_MAX_CHARS: usize = 300;

/// The server's own words from an error body: `{"error": {"message": …}}` (OpenAI, vLLM),
/// `{"error": "…"}`, `{"detail": …}` (FastAPI, as in llama-cpp-python), `{"message": …}`, else the
/// raw text; truncated, with `secret` (the API key) blanked out in case the server echoes it.
pub(crate) fn server_message(body: &[u8], secret: Option<&str>) -> String {
    let text = String::from_utf8_lossy(body);
    let found = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        let pick = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        v.pointer("/error/message")
            .and_then(pick)
            .or_else(|| v.get("error").filter(|e| e.is_string()).and_then(pick))
            .or_else(|| v.get("detail").and_then(pick))
            .or_else(|| v.get("message").and_then(pick))
    });
    let mut msg = found.unwrap_or_else(|| text.trim().to_string());
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        msg = msg.replace(secret, "<redacted>");
    }
    if msg.is_empty() {
        return "(empty body)".to_string();
    }
    match msg.char_indices().nth(MESSAGE_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &msg[..cut]),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn backoff_stays_within_its_ceiling() {
        let mut rng = StdRng::seed_from_u64(7);
        let (initial, max) = (Duration::from_millis(500), Duration::from_millis(30_000));
        for attempt in 0..40 {
            let ceiling = Duration::from_millis((500u64 << attempt.min(20)).min(30_000));
            let mut longest = Duration::ZERO;
            for _ in 0..200 {
                let d = backoff(attempt, initial, max, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                longest = longest.max(d);
            }
            // Full jitter reaches up towards the ceiling, not just a sliver of it.
            assert!(longest >= ceiling / 2, "attempt {attempt}: longest {longest:?} of {ceiling:?}");
        }
        assert_eq!(backoff(3, Duration::ZERO, max, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50 GMT
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0.5", now), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", UNIX_EPOCH), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 29 Feb 2032 00:00:00 GMT", UNIX_EPOCH), Some(Duration::from_secs(1_961_625_600)));
        for bad in
            ["", "-1", "soon", "Wed, 21 Oct 2015 07:28:00 PST", "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Foo 2015 07:28:00 GMT", "NaN"]
        {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn server_messages_are_found_truncated_and_redacted() {
        assert_eq!(server_message(br#"{"error": {"message": "bad top_p", "type": "invalid_request_error"}}"#, None), "bad top_p");
        assert_eq!(server_message(br#"{"error": "overloaded"}"#, None), "overloaded");
        assert_eq!(server_message(br#"{"detail": [{"msg": "field required"}]}"#, None), r#"[{"msg":"field required"}]"#);
        assert_eq!(server_message(b"  Bad Gateway\n", None), "Bad Gateway");
        assert_eq!(server_message(b"", None), "(empty body)");
        assert_eq!(
            server_message(br#"{"error": {"message": "Incorrect API key provided: sk-123"}}"#, Some("sk-123")),
            "Incorrect API key provided: <redacted>"
        );
        let long = "é".repeat(1000);
        let m = server_message(long.as_bytes(), None);
        assert_eq!(m.chars().count(), MESSAGE_MAX_CHARS + 1);
    }
}
