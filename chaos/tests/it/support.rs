//! Real processes (`sleep`) and real fault proxies standing in for the stack's
//! components, behind the `chaos::Components` trait the supervisor implements.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use chaos::{Component, ComponentError, ComponentKind, Components, ProcStat, ProxyHandle};
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Local {
    pub kind: ComponentKind,
    pub child: Option<Child>,
    /// A pid we do not own (for the crash test's child runner).
    pub pid: Option<u32>,
    pub proxy: Option<ProxyHandle>,
    pub starts: u32,
}

/// Components made of `sleep` processes and proxies.
#[derive(Default)]
pub struct LocalComponents {
    pub map: Mutex<BTreeMap<String, Local>>,
}

pub fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

impl LocalComponents {
    pub fn add_process(&self, name: &str, kind: ComponentKind) {
        self.map.lock().unwrap().insert(
            name.into(),
            Local {
                kind,
                child: Some(sleeper()),
                pid: None,
                proxy: None,
                starts: 1,
            },
        );
    }

    pub fn add_pid(&self, name: &str, pid: u32) {
        self.map.lock().unwrap().insert(
            name.into(),
            Local {
                kind: ComponentKind::Other,
                child: None,
                pid: Some(pid),
                proxy: None,
                starts: 1,
            },
        );
    }

    pub fn add_proxy(&self, name: &str, proxy: ProxyHandle) {
        self.map.lock().unwrap().insert(
            name.into(),
            Local {
                kind: ComponentKind::Redis,
                child: None,
                pid: None,
                proxy: Some(proxy),
                starts: 1,
            },
        );
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.lookup(name).and_then(|c| c.pid)
    }

    pub fn starts(&self, name: &str) -> u32 {
        self.map.lock().unwrap()[name].starts
    }

    /// Wait for the named child to exit, returning its status.
    pub fn wait(&self, name: &str) -> std::process::ExitStatus {
        let mut child = self
            .map
            .lock()
            .unwrap()
            .get_mut(name)
            .unwrap()
            .child
            .take()
            .unwrap();
        child.wait().unwrap()
    }
}

impl Drop for LocalComponents {
    fn drop(&mut self) {
        for local in self.map.lock().unwrap().values_mut() {
            if let Some(child) = local.child.as_mut() {
                let _ = chaos::process::resume(child.id());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Components for LocalComponents {
    fn names(&self) -> Vec<String> {
        self.map.lock().unwrap().keys().cloned().collect()
    }

    fn lookup(&self, name: &str) -> Option<Component> {
        let map = self.map.lock().unwrap();
        let l = map.get(name)?;
        Some(Component {
            name: name.into(),
            kind: l.kind.clone(),
            pid: l.child.as_ref().map(|c| c.id()).or(l.pid),
            proxy: l.proxy.clone(),
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ComponentError>> {
        Box::pin(async move {
            let mut map = self.map.lock().unwrap();
            let l = map
                .get_mut(name)
                .ok_or_else(|| ComponentError(format!("no {name}")))?;
            if let Some(mut child) = l.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            Ok(())
        })
    }

    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ComponentError>> {
        Box::pin(async move {
            let mut map = self.map.lock().unwrap();
            let l = map
                .get_mut(name)
                .ok_or_else(|| ComponentError(format!("no {name}")))?;
            if l.child.is_none() {
                l.child = Some(sleeper());
                l.starts += 1;
            }
            Ok(())
        })
    }
}

/// Poll (bounded) until `pid`'s stopped state is `stopped`; false on timeout.
pub fn wait_stopped(pid: u32, stopped: bool) -> bool {
    for _ in 0..2_000 {
        match ProcStat::read(pid) {
            Some(s) if s.stopped() == stopped => return true,
            None => return false,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    false
}

/// An echo server on port 0.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
