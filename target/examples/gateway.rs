//! A minimal runner for `ci/bench-gateway.sh`: serves the gateway from a JSON
//! config, or prints the nginx.conf of the peer, without building the whole
//! `slolab` binary (whose `serve gateway` does the same for the real stack).
//!
//! ```text
//! gateway serve <config.json> <listen-addr> [threads]
//! gateway nginx-conf <listen-port> <run-dir> <name=addr>...
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use target::gateway::{nginx_conf, GatewayConfig, NginxOptions, Upstream};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 3 => {
            let text =
                std::fs::read_to_string(&args[1]).map_err(|e| format!("{}: {e}", args[1]))?;
            let config: GatewayConfig =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args[1]))?;
            let listen: SocketAddr = args[2].parse().map_err(|e| format!("{}: {e}", args[2]))?;
            let threads = match args.get(3) {
                Some(t) => t.parse().map_err(|e| format!("threads `{t}`: {e}"))?,
                None => 0,
            };
            let listener =
                std::net::TcpListener::bind(listen).map_err(|e| format!("{listen}: {e}"))?;
            target::gateway::run_blocking(config, listener, threads, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .map_err(|e| e.to_string())
        }
        Some("nginx-conf") if args.len() >= 4 => {
            let port: u16 = args[1]
                .parse()
                .map_err(|e| format!("port `{}`: {e}", args[1]))?;
            let upstreams = args[3..]
                .iter()
                .map(|spec| {
                    let (name, addr) = spec
                        .split_once('=')
                        .ok_or_else(|| format!("`{spec}`: expected name=addr"))?;
                    let addr = addr.parse().map_err(|e| format!("`{spec}`: {e}"))?;
                    Ok(Upstream {
                        name: name.to_string(),
                        addr,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let options = NginxOptions {
                access_log: false,
                ..NginxOptions::default()
            };
            print!(
                "{}",
                nginx_conf(&upstreams, port, Path::new(&args[2]), &options)
            );
            Ok(())
        }
        _ => Err(
            "usage: gateway serve <config.json> <listen-addr> [threads] | \
                  gateway nginx-conf <listen-port> <run-dir> <name=addr>..."
                .into(),
        ),
    }
}
