//! A small W3C WebDriver client for the UI tests: chromedriver as a child process on a free
//! loopback port, one headless Chromium session with a fresh profile, and the few commands
//! the tests use (navigate, find, click, type, read, run a script, wait, screenshot).
//!
//! Chromium resolves no host names but loopback ones, so a page under test cannot reach
//! anything outside the machine.

use base64::Engine;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key under which WebDriver returns an element's reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long [`Browser::wait_until`] waits before it fails the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where Debian's packages put the programs.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver and one browser session; both end when this is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A reference to an element of the current page.
#[derive(Clone, Debug)]
pub struct Element {
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        Browser::start_with_args(width, height, &[]).await
    }

    /// Like [`Browser::start`], with more Chromium arguments (such as
    /// `--ignore-certificate-errors-spki-list=<hash>` to trust one test server's key).
    pub async fn start_with_args(width: u32, height: u32, extra: &[String]) -> Browser {
        let port = super::free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that dropping the browser ends Chromium with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start {CHROMEDRIVER} (apt-get install chromium-driver): {e}")
        });
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            client,
            _profile: profile,
        };

        let ready = super::wait_for(Duration::from_secs(20), || async {
            let status = browser
                .client
                .get(format!("{}/status", browser.base))
                .send()
                .await;
            match status {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        assert!(ready, "chromedriver did not start on {}", browser.base);

        let profile = browser._profile.path().display().to_string();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
                .to_owned(),
            format!("--user-data-dir={profile}"),
            format!("--window-size={width},{height}"),
        ];
        args.extend(extra.iter().cloned());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": { "browser": "SEVERE" },
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": args,
                    },
                },
            },
        });
        let answer = browser
            .call(reqwest::Method::POST, "/session", capabilities)
            .await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in chromedriver's answer: {answer}"))
            .to_owned();
        browser
    }

    /// Sends a WebDriver command and answers its `value`; fails the test on an error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        match self.try_call(method.clone(), path, body).await {
            Ok(value) => value,
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        }
    }

    /// Sends a WebDriver command; an error answer is `Err` with its message.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = self.client.request(method.clone(), url);
        let request = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            request
        } else {
            request.json(&body)
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let mut answer: Value = response.json().await.map_err(|e| e.to_string())?;
        let value = answer["value"].take();
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!(
                "{status} {}: {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or_default()
            ))
        }
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/url"),
            json!({ "url": url }),
        )
        .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        let value = self
            .call(
                reqwest::Method::GET,
                &self.session_path("/url"),
                Value::Null,
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The first element matching the CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let found = self
            .try_call(
                reqwest::Method::POST,
                &self.session_path("/element"),
                json!({ "using": "css selector", "value": css }),
            )
            .await
            .ok()?;
        Some(Element {
            id: found[ELEMENT_KEY].as_str()?.to_owned(),
        })
    }

    /// Every element matching the CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                reqwest::Method::POST,
                &self.session_path("/elements"),
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str())
            .map(|id| Element { id: id.to_owned() })
            .collect()
    }

    /// Waits for an element matching the CSS selector and answers it.
    pub async fn wait_for_element(&self, css: &str) -> Element {
        self.wait_until(&format!("an element {css}"), async || self.find(css).await)
            .await
    }

    /// Clicks an element.
    pub async fn click(&self, element: &Element) {
        self.call(
            reqwest::Method::POST,
            &self.element_path(element, "/click"),
            json!({}),
        )
        .await;
    }

    /// Types `text` into an element.
    pub async fn send_keys(&self, element: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &self.element_path(element, "/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Empties an input.
    pub async fn clear(&self, element: &Element) {
        self.call(
            reqwest::Method::POST,
            &self.element_path(element, "/clear"),
            json!({}),
        )
        .await;
    }

    /// An element's visible text; empty when it has gone from the page.
    pub async fn text(&self, element: &Element) -> String {
        let path = self.element_path(element, "/text");
        let value = self
            .try_call(reqwest::Method::GET, &path, Value::Null)
            .await;
        value
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// An element's attribute (`data-state`, `href`...), `None` when absent.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let path = self.element_path(element, &format!("/attribute/{name}"));
        let value = self
            .try_call(reqwest::Method::GET, &path, Value::Null)
            .await;
        value.ok().and_then(|v| v.as_str().map(str::to_owned))
    }

    fn element_path(&self, element: &Element, rest: &str) -> String {
        self.session_path(&format!("/element/{}{rest}", element.id))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; a returned
    /// promise is awaited. Answers what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/execute/sync"),
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// The page's visible text, for failure messages.
    pub async fn page_text(&self) -> String {
        let value = self
            .try_call(
                reqwest::Method::POST,
                &self.session_path("/execute/sync"),
                json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] }),
            )
            .await;
        match value {
            Ok(text) => text.as_str().unwrap_or_default().to_owned(),
            Err(error) => format!("(the page's text could not be read: {error})"),
        }
    }

    /// Checks `check` every 100 ms until it answers `Some`, for at most [`WAIT`]; fails the
    /// test with `what`, the URL and the page's visible text when it never does.
    pub async fn wait_until<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = check().await {
                return found;
            }
            if Instant::now() >= deadline {
                let url = self.url().await;
                let text = self.page_text().await;
                panic!(
                    "waited {}s for {what}; the page at {url} shows:\n{text}",
                    WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's visible text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        self.wait_until(&format!("the text {needle:?}"), async || {
            self.page_text().await.contains(needle).then_some(())
        })
        .await;
    }

    /// The errors the page logged since the last call: script exceptions, refused content
    /// (the content security policy), failed loads. Chromium's own log, not a W3C command.
    pub async fn console_errors(&self) -> Vec<String> {
        let value = self
            .call(
                reqwest::Method::POST,
                &self.session_path("/se/log"),
                json!({ "type": "browser" }),
            )
            .await;
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["message"].as_str())
            .map(str::to_owned)
            .collect()
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let value = self
            .call(
                reqwest::Method::GET,
                &self.session_path("/screenshot"),
                Value::Null,
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a folder for screenshots");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn quit(mut self) {
        let path = self.session_path("");
        let _ = self
            .try_call(reqwest::Method::DELETE, &path, Value::Null)
            .await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, in which Chromium runs too: end them all.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
