//! The API as clients see it: every route, with its request and answer types
//! as JSON Schema taken from the serde types themselves (schemars), and the
//! TypeScript the Edge Functions import, generated from that schema
//! (`kms-sidecar api-types`, checked in as supabase/functions/_shared/api.ts;
//! a unit test fails when the two part).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

use super::crypto::CryptoRequest;
use super::phone::{CheckCode, StartVerification};
use super::privacy::EraseAccount;
use super::views::{
    BookingView, CardView, ConsentView, CryptoView, DeletedView, ErasureView, PhoneVerificationView, PhoneVerifiedView,
    ProfileView, SetupIntentView, WebhookReceiptView,
};
use super::wallet::{AddCard, ConsentInput};
use crate::bookings::open::NewBooking;

/// A type in the API: its TypeScript name (or expression) and how to put its
/// schema in a generator.
#[derive(Clone)]
pub struct ApiType {
    typescript: String,
    register: fn(&mut SchemaGenerator),
}

fn register<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

fn of<T: JsonSchema>() -> ApiType {
    ApiType { typescript: T::schema_name().into_owned(), register: register::<T> }
}

impl ApiType {
    fn list(self) -> Self {
        Self { typescript: format!("{}[]", self.typescript), ..self }
    }

    /// In the `{"data": ...}` envelope.
    fn in_data(self) -> Self {
        Self { typescript: format!("Data<{}>", self.typescript), ..self }
    }
}

/// What a route takes.
#[derive(Clone)]
pub enum RequestBody {
    None,
    Json(ApiType),
    /// Bytes passed on unread (a webhook's signed body).
    Raw,
}

/// What a route answers.
#[derive(Clone)]
pub enum AnswerBody {
    Json(ApiType),
    /// A streamed download.
    Stream,
}

/// One route of the API, as a client calls it.
#[derive(Clone)]
pub struct ApiRoute {
    /// The client function's name.
    pub function: &'static str,
    pub method: &'static str,
    /// With `{id}` for the one path parameter.
    pub path: &'static str,
    pub summary: &'static str,
    pub request: RequestBody,
    pub answer: AnswerBody,
}

/// Every route a client calls (the Edge Functions' and the database's), in
/// the router's order. Not the probes (`/healthz`, `/readyz`: a 503 there is a
/// readiness report, not a refusal) nor `/metrics` (Prometheus text): they are
/// for operators' tools, not clients.
pub const OPERATORS_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub fn catalogue() -> Vec<ApiRoute> {
    use AnswerBody::{Json as Answers, Stream};
    use RequestBody::{Json, None, Raw};
    let route = |function, method, path, summary, request, answer| ApiRoute {
        function,
        method,
        path,
        summary,
        request,
        answer,
    };
    vec![
        route(
            "encrypt",
            "POST",
            "/v1/crypto/encrypt",
            "Seal a value for its record.",
            Json(of::<CryptoRequest>()),
            Answers(of::<CryptoView>()),
        ),
        route(
            "decrypt",
            "POST",
            "/v1/crypto/decrypt",
            "Open a sealed value of the caller's own.",
            Json(of::<CryptoRequest>()),
            Answers(of::<CryptoView>()),
        ),
        route(
            "rewrap",
            "POST",
            "/v1/crypto/rewrap",
            "Re-seal a value under the current key.",
            Json(of::<CryptoRequest>()),
            Answers(of::<CryptoView>()),
        ),
        route(
            "listPaymentMethods",
            "GET",
            "/v1/wallet/payment-methods",
            "The traveler's cards, default first.",
            None,
            Answers(of::<CardView>().list().in_data()),
        ),
        route(
            "addPaymentMethod",
            "POST",
            "/v1/wallet/payment-methods",
            "Save the card a confirmed SetupIntent collected.",
            Json(of::<AddCard>()),
            Answers(of::<CardView>().in_data()),
        ),
        route(
            "createSetupIntent",
            "POST",
            "/v1/wallet/setup-intents",
            "A SetupIntent for Stripe.js to collect a card.",
            None,
            Answers(of::<SetupIntentView>()),
        ),
        route(
            "deletePaymentMethod",
            "DELETE",
            "/v1/wallet/payment-methods/{id}",
            "Delete a card (detached at Stripe too).",
            None,
            Answers(of::<DeletedView>()),
        ),
        route(
            "makeDefaultPaymentMethod",
            "POST",
            "/v1/wallet/payment-methods/{id}/default",
            "Make a card the default.",
            None,
            Answers(of::<CardView>().in_data()),
        ),
        route(
            "consentToOffSessionCharges",
            "POST",
            "/v1/wallet/payment-methods/{id}/consent",
            "Record the traveler's consent to charges while away.",
            Json(of::<ConsentInput>()),
            Answers(of::<ConsentView>().in_data()),
        ),
        route(
            "withdrawOffSessionConsent",
            "DELETE",
            "/v1/wallet/payment-methods/{id}/consent",
            "Withdraw that consent.",
            None,
            Answers(of::<ConsentView>().in_data()),
        ),
        route(
            "receiveStripeEvent",
            "POST",
            "/v1/webhooks/stripe",
            "A Stripe event, its body and Stripe-Signature unchanged.",
            Raw,
            Answers(of::<WebhookReceiptView>()),
        ),
        route(
            "createBooking",
            "POST",
            "/v1/bookings",
            "Book a campaign's offer on the traveler's card.",
            Json(of::<NewBooking>()),
            Answers(of::<BookingView>().in_data()),
        ),
        route(
            "showBooking",
            "GET",
            "/v1/bookings/{id}",
            "A booking, with what Stripe.js needs while 3-D Secure is pending.",
            None,
            Answers(of::<BookingView>().in_data()),
        ),
        route(
            "resumeBooking",
            "POST",
            "/v1/bookings/{id}/resume",
            "Carry on after 3-D Secure.",
            None,
            Answers(of::<BookingView>().in_data()),
        ),
        route(
            "showProfile",
            "GET",
            "/v1/profile",
            "How complete the traveler's profile is, and what to add.",
            None,
            Answers(of::<ProfileView>().in_data()),
        ),
        route(
            "startPhoneVerification",
            "POST",
            "/v1/profile/phone/verification",
            "Send a code to a phone number.",
            Json(of::<StartVerification>()),
            Answers(of::<PhoneVerificationView>().in_data()),
        ),
        route(
            "checkPhoneCode",
            "POST",
            "/v1/profile/phone/verification/check",
            "Check the code: the phone is verified.",
            Json(of::<CheckCode>()),
            Answers(of::<PhoneVerifiedView>().in_data()),
        ),
        route(
            "exportData",
            "GET",
            "/v1/privacy/export",
            "Everything held about the traveler (GDPR art. 15 and 20), streamed.",
            None,
            Stream,
        ),
        route(
            "eraseAccount",
            "DELETE",
            "/v1/privacy/account",
            "Erase the account (GDPR art. 17).",
            Json(of::<EraseAccount>()),
            Answers(of::<ErasureView>().in_data()),
        ),
    ]
}

/// The JSON Schema of every (answer, request) type, by name: answers as serde
/// writes them, requests as serde reads them.
fn definitions_by_direction() -> (Map<String, Value>, Map<String, Value>) {
    let mut answers = SchemaSettings::draft2020_12().for_serialize().into_generator();
    let mut requests = SchemaSettings::draft2020_12().for_deserialize().into_generator();
    for route in catalogue() {
        if let RequestBody::Json(request) = &route.request {
            (request.register)(&mut requests);
        }
        if let AnswerBody::Json(answer) = &route.answer {
            (answer.register)(&mut answers);
        }
    }
    (answers.definitions().clone(), requests.definitions().clone())
}

/// Every request and answer type's schema, by name (a unit test holds the
/// two sets' names apart, so neither hides the other).
pub fn definitions() -> Map<String, Value> {
    let (mut all, requests) = definitions_by_direction();
    all.extend(requests);
    all
}

/// The JSON Schema document (`kms-sidecar api-types --schema`).
pub fn json_schema() -> Value {
    let routes: Vec<Value> = catalogue()
        .iter()
        .map(|route| {
            serde_json::json!({
                "function": route.function,
                "method": route.method,
                "path": route.path,
                "summary": route.summary,
                "request": match &route.request {
                    RequestBody::None => Value::Null,
                    RequestBody::Json(t) => Value::from(t.typescript.clone()),
                    RequestBody::Raw => Value::from("bytes"),
                },
                "answer": match &route.answer {
                    AnswerBody::Json(t) => Value::from(t.typescript.clone()),
                    AnswerBody::Stream => Value::from("stream"),
                },
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Parker Wallet sidecar API",
        "$defs": definitions(),
        "x-routes": routes,
    })
}

const TYPESCRIPT_HEADER: &str = "\
// Generated by `kms-sidecar api-types` from the sidecar's own request and
// answer types (their JSON Schema): do not edit. A unit test of the sidecar
// fails when this file and the types part.

/** The envelope of the wallet, booking, phone and privacy answers. */
export interface Data<T> {
  data: T;
}

/** A route's answer: status, body, and whether it replays a stored answer. */
export interface Answer<T> {
  status: number;
  body: T;
  replayed: boolean;
}

/** A request's JSON exactly as the app sent it, passed on unchanged (see withJsonBody). */
export type JsonBytes<T> = Uint8Array<ArrayBuffer> & { readonly json?: T };
/** A request body: the value, or its JSON as received. */
export type Json<T> = T | JsonBytes<T>;

/** Sends one request and reads its JSON answer (see _shared/sidecar.ts). */
export type Send = <T>(method: string, path: string, caller: Headers, body?: unknown) => Promise<Answer<T>>;
/** Sends one request and hands back the streamed response. */
export type Stream = (method: string, path: string, caller: Headers) => Promise<Response>;
";

/// The TypeScript module: every type, then one client function per route.
pub fn typescript() -> String {
    let mut out = String::from(TYPESCRIPT_HEADER);
    for (name, schema) in definitions() {
        out.push('\n');
        out.push_str(&declaration(&name, &schema));
    }
    out.push_str("\n/** One function per sidecar route; `caller` carries the traveler's headers. */\n");
    out.push_str("export function sidecarRoutes(send: Send, stream: Stream) {\n  return {\n");
    for route in catalogue() {
        out.push_str(&client_function(&route));
    }
    out.push_str("  };\n}\n\nexport type SidecarRoutes = ReturnType<typeof sidecarRoutes>;\n");
    out
}

fn client_function(route: &ApiRoute) -> String {
    let mut parameters = vec!["caller: Headers".to_owned()];
    let path = if route.path.contains("{id}") {
        parameters.push("id: string".to_owned());
        format!("`{}`", route.path.replace("{id}", "${encodeURIComponent(id)}"))
    } else {
        format!("\"{}\"", route.path)
    };
    let body = match &route.request {
        RequestBody::None => "",
        RequestBody::Json(t) => {
            parameters.push(format!("body: Json<{}>", t.typescript));
            ", body"
        }
        RequestBody::Raw => {
            parameters.push("body: Uint8Array<ArrayBuffer>".to_owned());
            ", body"
        }
    };
    let call = match &route.answer {
        AnswerBody::Json(t) => format!("send<{}>(\"{}\", {path}, caller{body})", t.typescript, route.method),
        AnswerBody::Stream => format!("stream(\"{}\", {path}, caller)", route.method),
    };
    format!(
        "    /** `{} {}`: {} */\n    {}: ({}) => {call},\n",
        route.method,
        route.path,
        route.summary,
        route.function,
        parameters.join(", ")
    )
}

/// `export interface Name { ... }` for an object, `export type Name = ...` otherwise.
fn declaration(name: &str, schema: &Value) -> String {
    let doc = schema.get("description").and_then(Value::as_str).map(doc_comment).unwrap_or_default();
    match schema.as_object().and_then(fields) {
        Some(fields) => {
            let mut out = format!("{doc}export interface {name} {{\n");
            for (field, field_schema) in fields {
                if let Some(text) = field_schema.get("description").and_then(Value::as_str) {
                    out.push_str(&indent(&doc_comment(text)));
                }
                out.push_str(&format!("  {field}: {};\n", typescript_of(field_schema)));
            }
            out.push_str("}\n");
            out
        }
        None => format!("{doc}export type {name} = {};\n", typescript_of(schema)),
    }
}

/// An object schema's properties, each named as TypeScript declares it (`name?`
/// when not required), with its schema; `None` for a schema without properties.
fn fields(object: &Map<String, Value>) -> Option<Vec<(String, &Value)>> {
    let properties = object.get("properties").and_then(Value::as_object)?;
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let optional = |field: &str| if required.contains(&field) { "" } else { "?" };
    Some(properties.iter().map(|(field, schema)| (format!("{field}{}", optional(field)), schema)).collect())
}

fn doc_comment(text: &str) -> String {
    let text = text.replace("*/", "* /");
    if text.contains('\n') {
        let lines: Vec<String> = text.lines().map(|line| format!(" * {line}").trim_end().to_owned()).collect();
        format!("/**\n{}\n */\n", lines.join("\n"))
    } else {
        format!("/** {text} */\n")
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// A schema as a TypeScript type: the subset schemars writes for serde types.
fn typescript_of(schema: &Value) -> String {
    let Some(object) = schema.as_object() else {
        return if schema == &Value::Bool(false) { "never".into() } else { "unknown".into() };
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(alternatives) = object.get("anyOf").or_else(|| object.get("oneOf")).and_then(Value::as_array) {
        return union(alternatives.iter().map(typescript_of));
    }
    if let Some(values) = object.get("enum").and_then(Value::as_array) {
        return union(values.iter().map(Value::to_string));
    }
    if let Some(value) = object.get("const") {
        return value.to_string();
    }
    match object.get("type") {
        Some(Value::String(kind)) => single(kind, object),
        Some(Value::Array(kinds)) => union(kinds.iter().filter_map(Value::as_str).map(|kind| single(kind, object))),
        _ => "unknown".into(),
    }
}

fn union(parts: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        if !seen.contains(&part) {
            seen.push(part);
        }
    }
    seen.join(" | ")
}

fn single(kind: &str, object: &Map<String, Value>) -> String {
    match kind {
        "string" => "string".into(),
        "integer" | "number" => "number".into(),
        "boolean" => "boolean".into(),
        "null" => "null".into(),
        "array" => {
            let item = object.get("items").map_or_else(|| "unknown".to_owned(), typescript_of);
            if item.contains(' ') {
                format!("({item})[]")
            } else {
                format!("{item}[]")
            }
        }
        "object" => match fields(object) {
            Some(fields) => {
                let fields: Vec<String> =
                    fields.iter().map(|(field, schema)| format!("{field}: {}", typescript_of(schema))).collect();
                format!("{{ {} }}", fields.join("; "))
            }
            None => match object.get("additionalProperties") {
                Some(values @ Value::Object(_)) => format!("Record<string, {}>", typescript_of(values)),
                _ => "Record<string, unknown>".into(),
            },
        },
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_the_router_s_routes() {
        let mut served: Vec<(String, String)> = super::super::served()
            .into_iter()
            .filter(|(path, _)| !OPERATORS_ROUTES.contains(path))
            .map(|(path, method)| (path.to_owned(), method.to_owned()))
            .collect();
        let mut catalogued: Vec<(String, String)> =
            catalogue().iter().map(|route| (route.path.to_owned(), route.method.to_owned())).collect();
        served.sort();
        catalogued.sort();
        assert_eq!(served, catalogued, "every route served is in the catalogue, and nothing else");
    }

    #[test]
    fn the_checked_in_typescript_is_generated_from_these_types() {
        let checked_in = include_str!("../../../supabase/functions/_shared/api.ts");
        assert!(
            checked_in == typescript(),
            "supabase/functions/_shared/api.ts is stale: run `kms-sidecar api-types > supabase/functions/_shared/api.ts`"
        );
    }

    #[test]
    fn optional_answers_are_present_and_nullable() {
        let definitions = definitions();
        let card = declaration("CardView", &definitions["CardView"]);
        assert!(card.contains("  brand: string | null;\n"), "{card}");
        assert!(card.contains("  off_session_consent: CardConsentView | null;\n"), "{card}");
        let booking = declaration("BookingView", &definitions["BookingView"]);
        assert!(booking.contains("  authentication?: AuthenticationView | null;\n"), "{booking}");
    }

    #[test]
    fn requests_and_answers_have_distinct_names() {
        let (answers, requests) = definitions_by_direction();
        let shared: Vec<&String> = answers.keys().filter(|name| requests.contains_key(*name)).collect();
        assert!(shared.is_empty(), "one name for a request and an answer type: {shared:?}");
    }

    #[test]
    fn requests_refuse_unknown_fields_in_their_schema() {
        let definitions = definitions();
        assert_eq!(definitions["AddPaymentMethodRequest"]["additionalProperties"], Value::Bool(false));
    }
}
