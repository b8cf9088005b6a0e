//! `foldlog-bridge DIR nats://HOST:PORT[,...] [--log NAME] [--consumer NAME] [--replicas N]`: follows the
//! embedded store in DIR (read-only, beside its live writer) and publishes every event to the JetStream log
//! exactly once; killed at any point and restarted, it neither loses nor duplicates one. Runs until killed.
//! Exit codes: 2 on a usage error, 1 when the bridge stops on an error.

use std::process::ExitCode;

use foldlog::{Options, Store};
use foldlog_jetstream::{bridge, JetStreamOptions, JetStreamStore};

const USAGE: &str =
    "usage: foldlog-bridge DIR nats://HOST:PORT[,nats://...] [--log NAME] [--consumer NAME] [--replicas N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut positional, mut log, mut consumer, mut replicas) = (Vec::new(), "default".to_owned(), None, 1);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "--log" => value("--log").map(|v| log = v),
            "--consumer" => value("--consumer").map(|v| consumer = Some(v)),
            "--replicas" => value("--replicas")
                .and_then(|v| v.parse().map_err(|e| format!("--replicas {v:?}: {e}")))
                .map(|n| replicas = n),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with("--") => Err(format!("unknown option {arg}")),
            _ => {
                positional.push(arg);
                Ok(())
            }
        };
        if let Err(e) = parsed {
            eprintln!("foldlog-bridge: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let [dir, url] = positional.as_slice() else {
        eprintln!("foldlog-bridge: needs DIR and a nats:// URL\n{USAGE}");
        return ExitCode::from(2);
    };
    // The position is saved on the JetStream side under this name; one per source store and log.
    let consumer = consumer.unwrap_or_else(|| format!("foldlog-bridge-{log}"));
    let run = || -> foldlog_jetstream::Result<bridge::BridgeStats> {
        let source = Store::open_with(dir, Options::default().read_only(true))?;
        let target =
            JetStreamStore::connect(JetStreamOptions::new(url.as_str()).log(&log).replicas(replicas))?;
        eprintln!("foldlog-bridge: {dir} -> {url} (log {log}), position saved as {consumer:?}");
        bridge::run(&source, &target, &consumer, |_| true)
    };
    match run() {
        Ok(stats) => {
            eprintln!("foldlog-bridge: stopped: {stats:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("foldlog-bridge: {e}");
            ExitCode::from(1)
        }
    }
}
