//! etcd for tests: a single-member etcd (Debian's `etcd-server`) started inside a network
//! namespace the test made, listening on that namespace's loopback, with its data in a
//! temporary directory. Killed and removed when dropped, also when the test fails; each has
//! its own namespace and directory, so tests run in parallel. Never in the machine's own
//! namespace: the test reaches it by making its client on a thread inside the namespace
//! ([`Etcd::store`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft::adapters::cluster::etcd::{EtcdConfig, EtcdStore, TlsFiles};

use super::{ok, Netns};

/// The client port, on the namespace's loopback.
pub const CLIENT_ADDR: &str = "127.0.0.1:2379";
const PEER_URL: &str = "http://127.0.0.1:2380";

/// A running (or stopped, see [`Etcd::kill`]) etcd in its own namespace.
pub struct Etcd {
    child: Option<Child>,
    /// Temporary directory: data/, etcd.log, certificates.
    pub dir: PathBuf,
    tls: bool,
    /// The client address it listens on (`IP:port`).
    client_addr: String,
    /// The namespace it listens in (dropped last: fields drop in order).
    pub ns: Netns,
}

/// Whether the tests can run etcd (the suite installs it; say so if it is missing).
pub fn etcd_or_skip(test: &str) -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        super::skipped(test, "etcd is not installed (apt-get install etcd-server)");
    }
    found
}

impl Etcd {
    /// Starts etcd over plain HTTP in a new namespace and waits until it answers.
    pub fn start(prefix: &str) -> Etcd {
        Self::start_with(prefix, false)
    }

    /// Starts etcd with TLS (certificates made with the openssl CLI for this test: a CA, a
    /// server certificate for 127.0.0.1, a client certificate; client certificates required).
    pub fn start_tls(prefix: &str) -> Etcd {
        Self::start_with(prefix, true)
    }

    fn start_with(prefix: &str, tls: bool) -> Etcd {
        Self::start_at(prefix, tls, CLIENT_ADDR, |_| {})
    }

    /// Starts etcd in a new namespace listening on `client_addr` (`IP:port`), which `wire`
    /// gives the namespace (e.g. a veth to a test's underlay) before etcd starts.
    pub fn start_on(prefix: &str, client_addr: &str, wire: impl FnOnce(&Netns)) -> Etcd {
        Self::start_at(prefix, false, client_addr, wire)
    }

    fn start_at(prefix: &str, tls: bool, client_addr: &str, wire: impl FnOnce(&Netns)) -> Etcd {
        let ns = Netns::new(prefix);
        wire(&ns);
        let dir = std::env::temp_dir().join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = Etcd {
            child: None,
            dir,
            tls,
            client_addr: client_addr.to_string(),
            ns,
        };
        if tls {
            make_certificates(&etcd.dir);
        }
        etcd.start_again();
        etcd
    }

    /// The client URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.client_addr)
    }

    /// The client TLS files (CA, client certificate and key) of a TLS etcd.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca: Some(self.dir.join("ca.crt")),
            cert: Some(self.dir.join("client.crt")),
            key: Some(self.dir.join("client.key")),
        }
    }

    /// The store's configuration for this etcd (with the client TLS files for a TLS one).
    pub fn config(&self) -> EtcdConfig {
        let mut c = EtcdConfig::new(vec![self.url()]);
        if self.tls {
            c.tls = Some(self.tls_files());
        }
        c
    }

    /// A store connected to this etcd from inside its namespace.
    pub fn store(&self) -> EtcdStore {
        store_in(&self.ns, &self.config()).expect("a store for the test etcd")
    }

    /// Starts etcd (again, on the same data directory after [`Etcd::kill`]) and waits until
    /// it serves requests.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        let data = self.dir.join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let url = self.url();
        let mut args: Vec<String> = [
            "--name",
            "t",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            PEER_URL,
            "--initial-advertise-peer-urls",
            PEER_URL,
            "--initial-cluster",
            &format!("t={PEER_URL}"),
            // One member: short ticks make it leader (at start and restart) in a blink.
            "--heartbeat-interval",
            "25",
            "--election-timeout",
            "250",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.tls {
            for (flag, file) in [
                ("--cert-file", "server.crt"),
                ("--key-file", "server.key"),
                ("--trusted-ca-file", "ca.crt"),
            ] {
                args.push(flag.into());
                args.push(self.dir.join(file).display().to_string());
            }
            args.push("--client-cert-auth".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.ns.cmd("etcd", &args);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // etcd dies with the test process even if that is killed outright (nsenter execs
        // etcd, so this applies to etcd itself). Set on the test's own thread, which lives
        // as long as the test.
        use std::os::unix::process::CommandExt as _;
        // SAFETY: prctl is async-signal-safe and touches only the child being started.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start etcd"));
        self.wait_ready();
    }

    /// Kills etcd (SIGKILL: a crash, no goodbye to clients) and waits for it; the data
    /// directory stays for [`Etcd::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        // First the port (cheap), then a real request (the member has a leader).
        let client_addr: std::net::SocketAddr = self.client_addr.parse().unwrap();
        let listening = weft::adapters::netns::run_in(Path::new(&self.ns.path()), move || {
            let addr = client_addr;
            while Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
        .unwrap();
        if listening {
            use weft::adapters::cluster::ClusterStore as _;
            let store = self.store();
            while Instant::now() < deadline {
                if store.get("/ready").is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        panic!(
            "etcd did not become ready in 20 s (exited: {exited:?}); its log:\n{}",
            self.log()
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes a store on a thread inside `ns`: its runtime's threads, hence its sockets, are in
/// that namespace.
pub fn store_in(
    ns: &Netns,
    config: &EtcdConfig,
) -> Result<EtcdStore, weft::adapters::cluster::StoreError> {
    let config = config.clone();
    weft::adapters::netns::run_in(Path::new(&ns.path()), move || EtcdStore::connect(&config))
        .expect("enter the test namespace")
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir` (PEM).
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        ok(Command::new("openssl").current_dir(dir).args(args));
    };
    let key = |name: &str| {
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ])
    };
    key("ca");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=weft test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        key(name);
        openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=weft test {name}"),
        ]);
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}
