//! Headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ended by NUL on file descriptors 3 and
//! 4), so a test can read a page's DOM as it changes without a WebSocket client.
//! `CHROMIUM_BIN` picks the binary (default `chromium`, which `make test` installs).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// A headless browser with one page open.
pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: BufReader<File>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// A pipe with both ends closed on exec: `(read, write)`.
#[allow(unsafe_code)]
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    (fds[0], fds[1])
}

impl Browser {
    /// Starts headless Chromium on `url` and attaches to its page.
    #[allow(unsafe_code)]
    pub fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (child_reads, parent_writes) = pipe();
        let (parent_reads, child_writes) = pipe();
        let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
        let mut command = Command::new(&bin);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                "--window-size=1100,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(File::create(profile.path().join("chromium.log")).unwrap());
        // SAFETY: only async-signal-safe calls between fork and exec. Both ends are
        // first copied above 10, so that placing one on 3 cannot overwrite the other
        // when the pipe itself got 3 or 4 (the test process frees low descriptors as
        // other tests' runtimes end); dup2 clears close-on-exec on the copies Chromium
        // reads and writes, the intermediate copies close on exec.
        unsafe {
            command.pre_exec(move || {
                let reads = libc::fcntl(child_reads, libc::F_DUPFD_CLOEXEC, 10);
                let writes = libc::fcntl(child_writes, libc::F_DUPFD_CLOEXEC, 10);
                if reads < 0 || writes < 0 || libc::dup2(reads, 3) < 0 || libc::dup2(writes, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (install chromium, or set CHROMIUM_BIN)"));
        // SAFETY: the descriptors come from pipe2 above and are owned here alone.
        let (to_browser, from_browser) = unsafe {
            libc::close(child_reads);
            libc::close(child_writes);
            (
                File::from_raw_fd(parent_writes),
                BufReader::new(File::from_raw_fd(parent_reads)),
            )
        };
        let mut browser = Browser {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let target = loop {
            let targets = browser.call("Target.getTargets", json!({}), false);
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .map(|t| t["targetId"].as_str().unwrap().to_owned());
            if let Some(page) = page {
                break page;
            }
            assert!(Instant::now() < deadline, "no page in Chromium");
            std::thread::sleep(Duration::from_millis(100));
        };
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            false,
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser
    }

    /// Sends one command (to the page when `on_page`) and returns its result.
    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!("{method}: {e}; Chromium said:\n{}", self.log());
        }
        loop {
            let mut reply = Vec::new();
            let n = self.from_browser.read_until(0, &mut reply).unwrap();
            assert!(n > 0, "Chromium closed the pipe; it said:\n{}", self.log());
            reply.pop();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// What Chromium wrote to its stderr, and how it exited if it did.
    fn log(&mut self) -> String {
        let log =
            std::fs::read_to_string(self._profile.path().join("chromium.log")).unwrap_or_default();
        format!("{log}\n(exit: {:?})", self.child.try_wait())
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
            true,
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` evaluates to `expected`; panics with the last value
    /// after 30 s.
    pub fn wait_for(&mut self, expression: &str, expected: &Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.eval(expression);
            if &value == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expression}: {value} after 30 s, expected {expected}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of what the page paints inside the element with id `id`: two of them
    /// differ exactly when something painted there changed.
    pub fn shot_of(&mut self, id: &str) -> Vec<u8> {
        let rect = self.eval(&format!(
            "(r => ({{x: r.x, y: r.y, width: r.width, height: r.height}}))(document.getElementById('{id}').getBoundingClientRect())"
        ));
        assert!(
            rect["width"].as_f64() > Some(0.0),
            "{id} is not shown: {rect}"
        );
        let mut clip = rect;
        clip["scale"] = json!(1);
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "clip": clip}),
            true,
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }

    /// Saves a PNG of the page as `name` in `target/test-output`, and returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}), true);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
