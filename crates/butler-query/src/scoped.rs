//! Property-scoped subjects (CONTRACT §7): `analytics.query.<endpoint>.<propertyId>`.
//! The property is the subject's last token, so the NATS server's permissions decide
//! which hotel may ask for what; the body's `propertyId` may be left out and, when
//! given, must agree with the subject.

use serde_json::{Map, Value};

use crate::QueryError;

/// Whether `property` can be a scoped subject's last token and a key of the live
/// dashboard bucket: not empty, no `.`, `*`, `>`, whitespace or control characters, and
/// only the characters a JetStream key allows.
pub fn is_subject_token(property: &str) -> bool {
    !property.is_empty()
        && property
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '/'))
        && !property.starts_with('/')
        && !property.ends_with('/')
}

/// Where each value of a property's live dashboard is also published (core NATS, the
/// same JSON as the key-value bucket's): a hotel's client follows its dashboard with a
/// plain subscribe, which its permissions can grant without revealing other
/// properties (CONTRACT §7).
pub fn live_subject(property: &str) -> String {
    format!("analytics.live.dashboard.{property}")
}

/// The request body of a scoped subject, made the unscoped endpoint's: `propertyId`
/// set to `property` when absent.
///
/// # Errors
/// `bad_request` when the body is not a JSON object, or its `propertyId` differs from
/// the subject's (naming both).
pub fn unscoped_body(body: &[u8], property: &str) -> Result<Vec<u8>, QueryError> {
    let mut fields: Map<String, Value> = crate::reply::parse(body)?;
    match fields.get("propertyId") {
        None => {
            fields.insert("propertyId".into(), Value::String(property.to_owned()));
        }
        Some(Value::String(given)) if given == property => {}
        Some(given) => {
            return Err(QueryError::BadRequest(format!(
                "propertyId {given} in the body differs from the subject's property {property:?}; leave it out or make them equal"
            )));
        }
    }
    serde_json::to_vec(&fields).map_err(|e| QueryError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_supplies_a_missing_property() {
        let body = unscoped_body(br#"{"type":"daily"}"#, "hotel_a").unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["propertyId"], "hotel_a");
        assert_eq!(v["type"], "daily");
        let empty = unscoped_body(b"", "hotel_a").unwrap();
        assert_eq!(empty, br#"{"propertyId":"hotel_a"}"#);
    }

    #[test]
    fn a_different_property_in_the_body_is_refused_naming_both() {
        let err = unscoped_body(br#"{"propertyId":"hotel_b"}"#, "hotel_a").unwrap_err();
        assert_eq!(err.code(), "bad_request");
        let message = err.to_string();
        assert!(
            message.contains("hotel_a") && message.contains("hotel_b"),
            "{message}"
        );
        assert!(unscoped_body(br#"{"propertyId":"hotel_a"}"#, "hotel_a").is_ok());
        assert!(unscoped_body(br#"{"propertyId":7}"#, "hotel_a").is_err());
        assert!(unscoped_body(b"[1]", "hotel_a").is_err());
    }

    #[test]
    fn only_plain_tokens_are_scoped() {
        for ok in ["hotel_a", "prop-7", "A1"] {
            assert!(is_subject_token(ok), "{ok}");
        }
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "/a", "é"] {
            assert!(!is_subject_token(bad), "{bad}");
        }
    }
}
