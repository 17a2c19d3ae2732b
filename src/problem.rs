//! `application/problem+json` (RFC 9457) responses, the body of every error response the
//! layers produce.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// Media type of problem details.
///
/// ```
/// use tenant_guard::problem::{Problem, PROBLEM_JSON};
/// let res: http::Response<String> = Problem::new(http::StatusCode::NOT_FOUND, "Not found").into_response();
/// assert_eq!(res.headers()["content-type"], PROBLEM_JSON);
/// ```
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
///
/// ```
/// use http::StatusCode;
/// use tenant_guard::problem::Problem;
///
/// let res: http::Response<String> = Problem::new(StatusCode::BAD_REQUEST, "Missing tenant")
///     .detail("expected a tenant id in the `X-Tenant-ID` header")
///     .with("expected", "X-Tenant-ID")
///     .into_response();
/// assert_eq!(res.status(), 400);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
/// assert_eq!(body["status"], 400);
/// assert_eq!(body["title"], "Missing tenant");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    status: StatusCode,
    fields: Map<String, Value>,
}

impl Problem {
    /// A problem with a status and a short, human-readable title.
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// let p = Problem::new(http::StatusCode::TOO_MANY_REQUESTS, "Too many requests");
    /// assert_eq!(p.status(), 429);
    /// ```
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        let mut fields = Map::new();
        fields.insert("type".into(), Value::from("about:blank"));
        fields.insert("title".into(), Value::from(title.into()));
        fields.insert("status".into(), Value::from(status.as_u16()));
        Self { status, fields }
    }

    /// Sets the `type` URI identifying the kind of problem.
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// let p = Problem::new(http::StatusCode::FORBIDDEN, "Refused").type_uri("https://example.com/problems/refused");
    /// let body: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    /// assert_eq!(body["type"], "https://example.com/problems/refused");
    /// ```
    #[must_use]
    pub fn type_uri(mut self, uri: impl Into<String>) -> Self {
        self.fields.insert("type".into(), Value::from(uri.into()));
        self
    }

    /// Sets the `detail`: what happened in this occurrence and how to fix it.
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// let p = Problem::new(http::StatusCode::BAD_REQUEST, "Bad tenant").detail("tenant ids are 1 to 64 characters");
    /// let body: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    /// assert_eq!(body["detail"], "tenant ids are 1 to 64 characters");
    /// ```
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.fields
            .insert("detail".into(), Value::from(detail.into()));
        self
    }

    /// Adds an extension member.
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// let p = Problem::new(http::StatusCode::TOO_MANY_REQUESTS, "Too many requests").with("rule", "per-user").with("limit", 100);
    /// let body: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    /// assert_eq!((body["rule"].as_str(), body["limit"].as_u64()), (Some("per-user"), Some(100)));
    /// ```
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// The HTTP status.
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// assert_eq!(Problem::new(http::StatusCode::BAD_REQUEST, "Bad").status(), http::StatusCode::BAD_REQUEST);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// let json = Problem::new(http::StatusCode::BAD_REQUEST, "Bad").to_json();
    /// let body: serde_json::Value = serde_json::from_str(&json).unwrap();
    /// assert_eq!((body["status"].as_u64(), body["title"].as_str()), (Some(400), Some("Bad")));
    /// ```
    pub fn to_json(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }

    /// Builds the response, for any body type that can be made from a `String`
    /// (`axum::body::Body`, `http_body_util::Full<Bytes>`, `String`, ...).
    ///
    /// ```
    /// use tenant_guard::problem::Problem;
    /// let res: http::Response<String> = Problem::new(http::StatusCode::BAD_REQUEST, "Bad").into_response();
    /// assert_eq!(res.status(), 400);
    /// assert!(res.body().contains("Bad"));
    /// ```
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let mut res = Response::new(B::from(self.to_json()));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        Problem::into_response(self)
    }
}
