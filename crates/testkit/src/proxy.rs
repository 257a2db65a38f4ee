//! A TCP proxy in front of a server, for faults a real network has: answers late, a server
//! that hangs, connections dropped. Runs on the runtime it is started on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    /// Answers arrive this late.
    Delay(Duration),
    /// Connections are dropped, new ones closed at once.
    Down,
    /// Connections stay open and requests reach the server, but no answer reaches the
    /// client: a server that hangs.
    Freeze,
}

/// Passes, delays, swallows or drops the traffic to `upstream`, as [`Proxy::set`] says.
#[derive(Debug)]
pub struct Proxy {
    local: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    last_answer: Arc<Mutex<Option<Instant>>>,
}

impl Proxy {
    /// Listens on a free loopback port, in [`ProxyMode::Pass`].
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(ProxyMode::Pass);
        let last_answer = Arc::new(Mutex::new(None));
        let last = last_answer.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if *rx.borrow() == ProxyMode::Down {
                    drop(sock);
                    continue;
                }
                let last = last.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = sock.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    let delay_rx = rx.clone();
                    let to_server = async move {
                        let _ = tokio::io::copy(&mut cr, &mut uw).await;
                        let _ = uw.shutdown().await;
                    };
                    let to_client = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match ur.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mode = *delay_rx.borrow();
                            if let ProxyMode::Delay(d) = mode {
                                tokio::time::sleep(d).await;
                            }
                            if *delay_rx.borrow() == ProxyMode::Freeze {
                                continue;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            *last.lock().unwrap() = Some(Instant::now());
                        }
                        let _ = cw.shutdown().await;
                    };
                    tokio::select! {
                        _ = async { tokio::join!(to_server, to_client) } => {}
                        _ = rx.wait_for(|m| *m == ProxyMode::Down) => {}
                    }
                });
            }
        });
        Self {
            local,
            mode,
            last_answer,
        }
    }

    /// When the proxy last passed an answer to the client.
    pub fn last_answer(&self) -> Option<Instant> {
        *self.last_answer.lock().unwrap()
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// `host:port` to connect to instead of the upstream.
    pub fn addr(&self) -> String {
        self.local.to_string()
    }
}
