//! `keel cluster --nodes N`: a local Raft cluster on loopback for newcomers. Writes one
//! configuration per node (the demo instruments and users, a `[cluster]` section with a
//! fresh random secret) into `DIR/nodeI.toml`, data into `DIR/nodeI/`, starts `keel serve`
//! for each and prefixes their logs with the node's name. Setting the shutdown flag (the
//! binary sets it on Ctrl-C) stops them all.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use crate::config::{ClusterConfig, Config, DurabilityConfig};
use crate::Error;

/// Options of `keel cluster`.
#[derive(Debug, clap::Args)]
pub struct LocalCluster {
    /// Number of nodes (odd, at least 3).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Directory for the configurations and the nodes' data.
    #[arg(long, default_value = "./keel-cluster")]
    pub dir: PathBuf,
    /// Order-entry port of node 1 (node i listens on this + i - 1).
    #[arg(long, default_value_t = 9001)]
    pub client_port: u16,
    /// Raft port of node 1 (node i uses this + i - 1).
    #[arg(long, default_value_t = 9101)]
    pub raft_port: u16,
    /// Durability policy of every node.
    #[arg(long, default_value = "fsync")]
    pub durability: String,
}

/// Runs the cluster, starting each node as `exe serve --config …` (`exe` is the `keel`
/// binary), until `shutdown` is set; then stops every node and waits for it.
pub fn run(args: &LocalCluster, exe: &Path, shutdown: &AtomicBool) -> Result<(), Error> {
    if args.nodes < 3 || args.nodes % 2 == 0 {
        return Err(Error::LocalCluster(
            "--nodes must be odd and at least 3".into(),
        ));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::LocalCluster(format!("cannot create {}: {e}", args.dir.display())))?;
    let paths = write_configs(args)?;
    let endpoints: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", u64::from(args.client_port) + i))
        .collect();
    eprintln!(
        "keel cluster: {} nodes, configurations and data in {}\n  order entry on {} \
         (followers answer Login Rejected S; clients try each)\n  \
         e.g. keel client --server {} --user alice buy BTC-PERP 10 @ 100.25\n  Ctrl-C stops every node",
        args.nodes,
        args.dir.display(),
        endpoints.join(", "),
        endpoints.join(","),
    );
    let mut children: Vec<(String, Child)> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let name = format!("node{}", i + 1);
        let child = start_node(exe, &name, path)?;
        children.push((name, child));
    }
    let exited = watch(args, &mut children, shutdown);
    stop(&mut children, &exited)
}

/// Writes (and checks) every node's configuration; their paths in node order.
fn write_configs(args: &LocalCluster) -> Result<Vec<PathBuf>, Error> {
    let secret = secret(&args.dir)?;
    let mut paths = Vec::new();
    for id in 1..=args.nodes {
        let path = args.dir.join(format!("node{id}.toml"));
        let header = format!(
            "# Written by `keel cluster`: node {id} of {}.\n\n",
            args.nodes
        );
        node_config(args, id, &secret)?.write(&path, &header)?;
        Config::load(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Starts `exe serve --config path`, its output prefixed with `name`.
fn start_node(exe: &Path, name: &str, path: &Path) -> Result<Child, Error> {
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::LocalCluster(format!("cannot start {name}: {e}")))?;
    if let Some(out) = child.stdout.take() {
        prefix(name.to_string(), out);
    }
    if let Some(err) = child.stderr.take() {
        prefix(name.to_string(), err);
    }
    Ok(child)
}

/// Reports nodes that exit until `shutdown` is set; which ones exited.
fn watch(
    args: &LocalCluster,
    children: &mut [(String, Child)],
    shutdown: &AtomicBool,
) -> Vec<bool> {
    let mut exited = vec![false; children.len()];
    while !shutdown.load(Ordering::Acquire) {
        for ((name, child), exited) in children.iter_mut().zip(exited.iter_mut()) {
            if *exited {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                *exited = true;
                eprintln!(
                    "[{name}] exited: {status} (restart it with `keel serve --config {}`)",
                    args.dir.join(format!("{name}.toml")).display()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    exited
}

/// Sends SIGTERM to every node, then waits for each, reporting those still running.
fn stop(children: &mut [(String, Child)], exited: &[bool]) -> Result<(), Error> {
    for (_, child) in children.iter_mut() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a child's pid and SIGTERM has no memory effects here.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    for ((name, child), &exited) in children.iter_mut().zip(exited) {
        let status = child.wait()?;
        if !exited {
            eprintln!("[{name}] stopped: {status}");
        }
    }
    Ok(())
}

fn prefix(name: String, stream: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => eprintln!("[{name}] {line}"),
                Err(_) => break,
            }
        }
    });
}

/// The cluster secret: kept in `DIR/secret` (created once, random, 0600).
fn secret(dir: &Path) -> Result<String, Error> {
    let path = dir.join("secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_string());
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &secret)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(secret)
}

/// Node `id`'s configuration: the demo configuration's instruments and users, with this
/// node's `[server]` and `[cluster]`.
pub fn node_config(args: &LocalCluster, id: u64, secret: &str) -> Result<Config, Error> {
    let durability = match args.durability.as_str() {
        "fsync" => DurabilityConfig::Fsync,
        "async" => DurabilityConfig::Async,
        other => {
            return Err(Error::LocalCluster(format!(
                "--durability must be fsync or async, not `{other}`"
            )))
        }
    };
    let loopback = |port: u64| -> Result<SocketAddr, Error> {
        u16::try_from(port)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| Error::LocalCluster(format!("port {port} is out of range")))
    };
    let mut config = Config::embedded_default();
    config.server.listen = loopback(u64::from(args.client_port) + id - 1)?;
    config.server.data_dir = std::path::absolute(args.dir.join(format!("node{id}")))?;
    config.server.durability = durability;
    let peers = (1..=args.nodes)
        .map(|peer| {
            Ok((
                peer.to_string(),
                loopback(u64::from(args.raft_port) + peer - 1)?,
            ))
        })
        .collect::<Result<_, Error>>()?;
    config.cluster = Some(ClusterConfig {
        node_id: id,
        peers,
        secret: secret.to_string(),
        election_timeout_ms: ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MS,
        heartbeat_ms: ClusterConfig::DEFAULT_HEARTBEAT_MS,
    });
    Ok(config)
}
