//! `wallet.encrypt`, `wallet.decrypt` and `wallet.sidecar_health()`: the database's
//! side of the trust boundary. The keys stay in the sidecar; these functions send
//! bytes, the record's context and whose records they are (see `decryption`)
//! over the socket and raise clean SQL errors.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::raise;
use super::settings::{SIDECAR_SOCKET, SIDECAR_TIMEOUT_MS};
use crate::decryption::{self, Attestation, SYSTEM_DECRYPT_ROLE_C};
use crate::sidecar::{self, SidecarError};

fn socket_path() -> PathBuf {
    SIDECAR_SOCKET.get().map(|path| PathBuf::from(path.to_string_lossy().into_owned())).unwrap_or_default()
}

fn timeout() -> Duration {
    Duration::from_millis(u64::try_from(SIDECAR_TIMEOUT_MS.get()).unwrap_or(2_000))
}

fn call(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<sidecar::Response, SidecarError> {
    sidecar::request(&socket_path(), method, path, headers, body, timeout(), || {
        pgrx::check_for_interrupts!();
    })
}

/// The current role, when it is a member (directly or not; superusers are
/// members of every role) of the system decryption role, which a database
/// still at 0.2.0 does not have yet. Catalog-cache lookups, not a query: this
/// runs on every system decryption.
fn system_decrypt_role() -> Option<String> {
    // SAFETY: called from a SQL function, so inside a transaction with the
    // catalog caches available; the name is copied before the palloc'd string
    // could be freed.
    unsafe {
        let role = pg_sys::get_role_oid(SYSTEM_DECRYPT_ROLE_C.as_ptr(), true);
        let current = pg_sys::GetUserId();
        if role == pg_sys::InvalidOid || !pg_sys::is_member_of_role(current, role) {
            return None;
        }
        let name = pg_sys::GetUserNameFromId(current, false);
        Some(std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// Who this call is for, or an insufficient_privilege error before any byte
/// reaches the sidecar.
fn attestation(context: &Value) -> Attestation {
    let owner = context["user_id"].as_str();
    decryption::attest(owner, super::identity::current_subject(), system_decrypt_role).unwrap_or_else(|refusal| {
        let code = match refusal {
            decryption::Refusal::NoRecordOwner => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            _ => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        };
        raise(code, format!("parker_wallet: {refusal}"))
    })
}

fn raise_transport(error: SidecarError) -> ! {
    let code = match error {
        SidecarError::Unreachable { .. } => PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
        SidecarError::Timeout { .. } => PgSqlErrorCode::ERRCODE_IO_ERROR,
        SidecarError::Protocol(_) => PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
    };
    raise(code, format!("parker_wallet: {error}"))
}

/// Maps the sidecar's problem codes to SQLSTATEs; the detail text carries over.
fn raise_problem(status: u16, body: &[u8]) -> ! {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = problem["code"].as_str().unwrap_or("unknown");
    let detail = problem["detail"].as_str().unwrap_or("");
    let sqlstate = match code {
        "invalid_context" | "invalid_request" => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        "decryption_failed" | "malformed_ciphertext" | "unsupported_ciphertext_version" | "key_rejected" => {
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION
        }
        "key_not_accepted" => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        "payload_too_large" => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        "caller_not_allowed" | "subject_required" | "subject_mismatch" => {
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
        }
        _ => PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
    };
    raise(sqlstate, format!("parker_wallet: sidecar refused ({status} {code}): {detail}"))
}

fn crypto_call(operation: &str, data: &[u8], context: JsonB) -> Vec<u8> {
    if !context.0.is_object() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "parker_wallet: context must be a JSON object");
    }
    let subject = attestation(&context.0).header_value();
    let body = json!({
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "context": context.0,
    })
    .to_string();
    let headers = [("parker-wallet-subject", subject.as_str())];
    let response = call("POST", &format!("/v1/crypto/{operation}"), &headers, Some(body.as_bytes()))
        .unwrap_or_else(|e| raise_transport(e));
    if response.status != 200 {
        raise_problem(response.status, &response.body);
    }
    let answer: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| raise_transport(SidecarError::Protocol("answer is not JSON".into())));
    answer["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .unwrap_or_else(|| raise_transport(SidecarError::Protocol("answer has no data".into())))
}

/// Envelope-encrypts `data` for the record `context` names
/// (`{"user_id": ..., "table": ..., "column": ..., "record_id": ...}`): the
/// session's own traveler's, unless the role holds system decryption.
#[pg_extern(volatile, parallel_restricted, strict)]
fn encrypt(data: &[u8], context: JsonB) -> Vec<u8> {
    crypto_call("encrypt", data, context)
}

/// Decrypts a record encrypted by `wallet.encrypt` under the same context: a
/// record of `wallet.uid()`, or of anyone for a role granted
/// `parker_wallet_system_decrypt`.
#[pg_extern(volatile, parallel_restricted, strict)]
fn decrypt(data: &[u8], context: JsonB) -> Vec<u8> {
    crypto_call("decrypt", data, context)
}

/// Whether the sidecar answers, and how fast; never raises.
#[pg_extern(volatile)]
fn sidecar_health() -> JsonB {
    let started = Instant::now();
    let socket = socket_path().display().to_string();
    let report = match call("GET", "/readyz", &[], None) {
        Ok(response) => json!({
            "reachable": true,
            "ready": response.status == 200,
            "status": response.status,
            "socket": socket,
            "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
            "detail": serde_json::from_slice::<Value>(&response.body).unwrap_or(Value::Null),
        }),
        Err(error) => json!({ "reachable": false, "ready": false, "socket": socket, "detail": error.to_string() }),
    };
    JsonB(report)
}
