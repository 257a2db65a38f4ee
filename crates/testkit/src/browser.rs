//! A browser for tests of the server-rendered pages (the license server's dashboard, the
//! node's console) over real HTTP: a client that keeps cookies and shows redirects instead
//! of following them, the answer as a test reads it, and a page's hidden form fields.

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};

/// Keeps cookies, shows redirects instead of following them.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// An answer: its status, where it redirects, its type and disposition, its text.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub content_type: String,
    pub disposition: Option<String>,
    pub body: String,
}

/// Reads an answer.
pub async fn page(r: reqwest::Response) -> Page {
    let header = |name| {
        r.headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    Page {
        status: r.status(),
        location: header(LOCATION),
        content_type: header(CONTENT_TYPE).unwrap_or_default(),
        disposition: header(CONTENT_DISPOSITION),
        body: r.text().await.unwrap(),
    }
}

pub async fn get(b: &Client, url: &str) -> Page {
    page(b.get(url).send().await.unwrap()).await
}

pub async fn post(b: &Client, url: &str, form: &[(&str, &str)]) -> Page {
    page(b.post(url).form(form).send().await.unwrap()).await
}

/// The value of the first hidden `name` field in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}
