//! The real `formid-ledger` binary as a separate process, for what only a
//! process can show: being killed, or stopped by a signal.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::RedisServer;
use super::app::{ADMIN_KEY, COLLECT_KEY, SEND_KEY, SimClient};

pub struct ServiceProcess {
    child: Child,
    pub base: String,
}

impl ServiceProcess {
    /// Starts the service on a free port, on `redis` under `prefix` and the
    /// simulator `sim`, with `env` added; returns once it is ready.
    pub async fn start(redis: &RedisServer, prefix: &str, sim: &SimClient, env: &[(&str, &str)]) -> Self {
        Self::start_with_clock(redis, prefix, sim, env, None).await
    }

    /// Like [`Self::start`], with the process's wall clock moved by `skew`
    /// (libfaketime's offset syntax, e.g. `+120s`, `-2m`), as on a machine
    /// whose NTP is broken.
    pub async fn start_with_clock(
        redis: &RedisServer,
        prefix: &str,
        sim: &SimClient,
        env: &[(&str, &str)],
        skew: Option<&str>,
    ) -> Self {
        let store = [
            ("REDIS_URL", redis.url()),
            ("REDIS_KEY_PREFIX", prefix.to_owned()),
        ];
        Self::launch(&store, sim, env, skew).await
    }

    /// Starts the service on the embedded store kept in `data_dir`, and the
    /// simulator `sim`, with `env` added; returns once it is ready.
    pub async fn start_embedded(data_dir: &std::path::Path, sim: &SimClient, env: &[(&str, &str)]) -> Self {
        let store = [("DATA_DIR", data_dir.display().to_string())];
        Self::launch(&store, sim, env, None).await
    }

    async fn launch(
        store: &[(&str, String)],
        sim: &SimClient,
        env: &[(&str, &str)],
        skew: Option<&str>,
    ) -> Self {
        let port = super::free_port();
        let binary = env!("CARGO_BIN_EXE_formid-ledger");
        // libfaketime preloaded into the binary itself: the `faketime`
        // wrapper forks, and killing it would leave the service running.
        // Without an apps file, the simulator's mini-program is the one app.
        let apps_file = env.iter().any(|(name, _)| *name == "APPS_FILE");
        let single_app = [("WECHAT_APPID", "wxsandbox"), ("WECHAT_SECRET", "sandbox-secret")]
            .into_iter()
            .filter(|_| !apps_file);
        let mut command = Command::new(binary);
        command.env_clear();
        if let Some(offset) = skew {
            command
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .envs(store.iter().map(|(name, value)| (*name, value.as_str())))
            .env("WECHAT_API_BASE", format!("{}/sandbox/wechat", sim.base))
            .env("SESSION_SECRET", "test-session-secret-0123456789")
            .env(
                "API_KEYS",
                format!("admin:{ADMIN_KEY}:admin,sender:{SEND_KEY}:send,collector:{COLLECT_KEY}:collect"),
            )
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .envs(single_app)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the formid-ledger binary starts (a skewed one needs faketime: scripts/test installs it)",
            );
        // Owned from here on: dropped (killed and reaped) whatever happens.
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http
                .get(format!("{}/readyz", process.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service process did not become ready");
    }

    /// SIGKILL: no shutdown, nothing flushed or settled.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit; true if it exited 0.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        sent && self.child.wait().is_ok_and(|s| s.success())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Debian's libfaketime (package `libfaketime`, which `faketime` pulls in).
fn libfaketime() -> std::path::PathBuf {
    let under_lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"));
    ["/usr/lib/faketime/libfaketime.so.1".into()]
        .into_iter()
        .chain(under_lib)
        .find(|path: &std::path::PathBuf| path.exists())
        .expect("libfaketime.so.1 is installed (scripts/test installs faketime)")
}
