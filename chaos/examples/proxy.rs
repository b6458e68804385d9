//! Run a fault proxy standalone (no toxics) in front of an upstream, for
//! `ci/bench-proxy.sh`: `proxy LISTEN UPSTREAM`, e.g. `proxy 127.0.0.1:0 127.0.0.1:8080`.
//! `proxy --plain LISTEN UPSTREAM` runs the benchmark's peer instead: a bare
//! `tokio::io::copy_bidirectional` proxy, the floor any tokio proxy pays.
//! Prints the address it listens on, then forwards until killed.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plain = args.first().is_some_and(|a| a == "--plain");
    if plain {
        args.remove(0);
    }
    let usage = "usage: proxy [--plain] LISTEN UPSTREAM";
    let listen: SocketAddr = args.first().ok_or(usage)?.parse()?;
    let upstream: SocketAddr = args.get(1).ok_or(usage)?.parse()?;
    if plain {
        let listener = TcpListener::bind(listen).await?;
        println!("{}", listener.local_addr()?);
        loop {
            let (mut client, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    }
    let proxy = chaos::FaultProxy::start(listen, upstream).await?;
    println!("{}", proxy.local_addr());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
