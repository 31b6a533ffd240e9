//! The extension's own settings (GUCs) and reading other settings safely.

use std::ffi::{CStr, CString};

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

/// Superuser-only, so a traveler's session cannot switch the protection off.
pub static PIN_JWT_SUBJECT: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Where the kms-sidecar listens. Superuser-only: a session must not be able to
/// send its plaintext to a socket of its choosing.
pub static SIDECAR_SOCKET: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"/run/parker-wallet/sidecar.sock"));

/// How long a backend waits for the sidecar before giving up.
pub static SIDECAR_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2_000);

pub fn register() {
    GucRegistry::define_string_guc(
        c"parker_wallet.sidecar_socket",
        c"Unix socket of the kms-sidecar that wallet.encrypt/decrypt call.",
        c"The sidecar holds the KMS credentials; the database only ever sees ciphertext and the plaintext it asked for.",
        &SIDECAR_SOCKET,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"parker_wallet.sidecar_timeout_ms",
        c"Milliseconds a backend waits for the kms-sidecar before raising an error.",
        c"Query cancel is honoured while waiting, whatever this is.",
        &SIDECAR_TIMEOUT_MS,
        1,
        600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"parker_wallet.pin_jwt_subject",
        c"Refuse a change of request.jwt.claims' subject within one transaction.",
        c"PostgREST and the sidecar set the claims once per transaction; a later change of \
          subject means one transaction is acting as two users. Turn off only for a role that \
          legitimately switches claims in one transaction (Supabase Realtime's RLS checks).",
        &PIN_JWT_SUBJECT,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// `read` of a setting's current value, or of `None` when it was never set
/// (custom settings such as `request.jwt.claims` need not exist). The value
/// is borrowed for `read` only: it is valid until the setting changes.
pub fn with_setting<T>(name: &CStr, read: impl FnOnce(Option<&CStr>) -> T) -> T {
    // SAFETY: GetConfigOption returns NULL or a pointer into the GUC's current
    // value, valid until the setting changes, which nothing does during `read`.
    let value = unsafe {
        let value = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!value.is_null()).then(|| CStr::from_ptr(value))
    };
    read(value)
}

/// The text of a setting, or `None` when it was never set.
pub fn setting_text(name: &CStr) -> Option<String> {
    with_setting(name, |value| value.map(|v| v.to_string_lossy().into_owned()))
}
