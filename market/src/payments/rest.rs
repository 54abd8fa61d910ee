//! What the real providers' adapters share about talking to an HTTP API:
//! sending a request, reading a bounded JSON answer, and mapping a refusal
//! to the platform's errors — so Stripe and Flutterwave answer a buyer the
//! same way when the provider is down, rejects our credentials or refuses a
//! request, and no provider's internals reach a client.

use doppel_platform::{Error, Result};

/// The most of a provider's answer we read (their answers are a few KiB).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A provider's answer: its HTTP status and JSON body (`Null` when the body
/// was not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

impl Answer {
    /// Whether the status is 2xx.
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Send `req` to `provider` and read its answer, at most
/// [`MAX_ANSWER_BYTES`] of it.
pub(crate) async fn send(provider: &str, req: reqwest::RequestBuilder) -> Result<Answer> {
    let unreachable = |e: &dyn std::fmt::Display| {
        tracing::warn!(provider, error = %e, "Payment provider unreachable.");
        Error::Unavailable("the payment provider cannot be reached; try again".into())
    };
    let mut resp = req.send().await.map_err(|e| unreachable(&e))?;
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(&e))? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            tracing::warn!(provider, status, "Payment provider answer too large; ignored.");
            return Err(Error::Unavailable(
                "the payment provider gave an unexpected answer; try again".into(),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Answer { status, body })
}

/// The error for a refused request: credentials problems and outages are
/// "unavailable" (the buyer can do nothing but wait), a missing object is
/// "not found", a refusal of what was asked names the provider's reason,
/// and a 2xx that the adapter could not use is an unexpected answer.
pub(crate) fn refusal(provider: &str, status: u16, message: &str) -> Error {
    tracing::warn!(provider, status, %message, "Payment provider refused a request.");
    match status {
        401 | 403 => Error::Unavailable("the payment provider rejected the platform's credentials".into()),
        404 => Error::NotFound("payment".into()),
        400 | 402 | 409 | 422 => Error::Refused {
            code: "payment_provider_error",
            message: format!("the payment provider refused: {message}"),
        },
        200..=299 => Error::Unavailable("the payment provider gave an unexpected answer; try again".into()),
        _ => Error::Unavailable("the payment provider is having trouble; try again".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_what_a_buyer_can_act_on() {
        assert!(matches!(refusal("p", 401, "bad key"), Error::Unavailable(m) if m.contains("credentials")));
        assert!(matches!(refusal("p", 404, "gone"), Error::NotFound(_)));
        assert!(
            matches!(refusal("p", 402, "card declined"), Error::Refused { message, .. } if message.ends_with("card declined"))
        );
        assert!(matches!(refusal("p", 200, "?"), Error::Unavailable(m) if m.contains("unexpected")));
        assert!(matches!(refusal("p", 503, "down"), Error::Unavailable(m) if m.contains("trouble")));
    }
}
