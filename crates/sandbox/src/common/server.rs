//! Serving a simulator's router on a socket, with a handle that stops it.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running simulator server. Dropping the handle does not stop it; call [`Self::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    join: JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// `http://127.0.0.1:PORT` — no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, finish open requests, and wait for the server task.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.cancel.cancel();
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// A token that stops the server when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Serve `router` on `listener` until the returned handle is shut down.
pub fn serve(listener: TcpListener, router: Router) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let join = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    });
    Ok(ServerHandle { addr, cancel, join })
}
