//! Loopback proxies that inject faults between two endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// Decides the fate of each datagram: the datagrams to forward in its place (none =
/// dropped, two = duplicated, changed bytes = tampered).
pub type Hook = Box<dyn FnMut(Dir, &[u8]) -> Vec<Vec<u8>> + Send>;

pub struct UdpProxy {
    pub addr: SocketAddr,
    hook: Arc<Mutex<Hook>>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    pub async fn start(server: SocketAddr) -> UdpProxy {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        let hook: Arc<Mutex<Hook>> = Arc::new(Mutex::new(Box::new(|_, d: &[u8]| vec![d.to_vec()])));
        let h = hook.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let (dir, to) = if from == server {
                    match client {
                        Some(c) => (Dir::ToClient, c),
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    (Dir::ToServer, server)
                };
                let out = (h.lock().unwrap())(dir, &buf[..n]);
                for d in out {
                    let _ = sock.send_to(&d, to).await;
                }
            }
        });
        UdpProxy { addr, hook, task }
    }

    pub fn set_hook(&self, hook: Hook) {
        *self.hook.lock().unwrap() = hook;
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy for one connection that can flip the last byte of the next chunk going to
/// the server, or stop forwarding altogether.
pub struct TcpProxy {
    pub addr: SocketAddr,
    pub flip_next: Arc<AtomicBool>,
    pub blackhole: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(server: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flip_next = Arc::new(AtomicBool::new(false));
        let blackhole = Arc::new(AtomicBool::new(false));
        let (flip, hole) = (flip_next.clone(), blackhole.clone());
        let task = tokio::spawn(async move {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let outbound = TcpStream::connect(server).await.unwrap();
            let (mut ir, mut iw) = inbound.into_split();
            let (mut or, mut ow) = outbound.into_split();
            let hole2 = hole.clone();
            let up = async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let n = match ir.read(&mut buf).await {
                        Ok(0) | Err(_) => return silent_end(&hole, ow).await,
                        Ok(n) => n,
                    };
                    if hole.load(Ordering::Relaxed) {
                        continue;
                    }
                    if flip.swap(false, Ordering::Relaxed) {
                        buf[n - 1] ^= 0x01;
                    }
                    if ow.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            let down = async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let n = match or.read(&mut buf).await {
                        Ok(0) | Err(_) => return silent_end(&hole2, iw).await,
                        Ok(n) => n,
                    };
                    if hole2.load(Ordering::Relaxed) {
                        continue;
                    }
                    if iw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            tokio::join!(up, down);
        });
        TcpProxy {
            addr,
            flip_next,
            blackhole,
            task,
        }
    }
}

/// One side closed. A blackholed link passes nothing on, not even the close: the other side
/// must find the silence by its own idle timeout, whichever side's timer fires first.
async fn silent_end<W>(hole: &AtomicBool, writer: W) {
    if hole.load(Ordering::Relaxed) {
        let _held_open = writer;
        std::future::pending::<()>().await;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
