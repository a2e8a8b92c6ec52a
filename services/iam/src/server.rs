//! Running the service: bootstrap the first superuser, bind, serve.

use crate::config::{IamConfig, SeedCredential};
use crate::http::{Iam, IamInitError, router};
use crate::jwt::{TokenSigner, now_unix};
use crate::model::UserRecord;
use crate::store::{IamError, IamStore};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Building the state failed.
    #[error(transparent)]
    Init(#[from] IamInitError),
    /// Creating the first superuser failed.
    #[error("creating the first superuser {uid:?}: {source}")]
    Bootstrap {
        /// `auth.superuser_uid`.
        uid: String,
        /// The error.
        #[source]
        source: IamError,
    },
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Creates the configured first superuser if absent and grants it `dcos:superuser full`.
/// Idempotent and safe when several masters run it at once. Returns whether this call
/// created the account.
pub async fn bootstrap_superuser<S: IamStore>(iam: &Iam<S>) -> Result<Option<bool>, ServeError> {
    let Some(seed) = &iam.config.superuser else {
        return Ok(None);
    };
    let (password_hash, public_key) = match &seed.credential {
        SeedCredential::PasswordHash(h) => (Some(h.clone()), None),
        SeedCredential::PublicKey(k) => (None, Some(k.clone())),
    };
    let user = UserRecord {
        uid: seed.uid.clone(),
        description: "first superuser (genconf auth.superuser_uid)".to_owned(),
        password_hash,
        public_key,
        created: now_unix(),
    };
    let created =
        iam.store
            .ensure_superuser(&user)
            .await
            .map_err(|source| ServeError::Bootstrap {
                uid: seed.uid.clone(),
                source,
            })?;
    iam.audit.record(
        "superuser_bootstrap",
        &seed.uid,
        "",
        if created {
            "created"
        } else {
            "already present"
        },
    );
    Ok(Some(created))
}

/// A running IAM service.
#[derive(Debug)]
pub struct IamServer<S> {
    addr: SocketAddr,
    iam: Arc<Iam<S>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl<S> std::fmt::Debug for Iam<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iam")
            .field("listen", &self.config.listen)
            .finish()
    }
}

impl<S: IamStore> IamServer<S> {
    /// Bootstraps the first superuser, binds `config.listen` (port 0: any free port) and
    /// serves until [`IamServer::shutdown`] or drop.
    pub async fn start(
        store: S,
        signer: TokenSigner,
        config: IamConfig,
    ) -> Result<IamServer<S>, ServeError> {
        let iam = Arc::new(Iam::new(store, signer, config)?);
        bootstrap_superuser(&iam).await?;
        let listen = iam.config.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(iam.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!(%addr, "IAM listening");
        Ok(IamServer {
            addr,
            iam,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (audit log, metrics, authorizer, verifier).
    pub fn iam(&self) -> &Arc<Iam<S>> {
        &self.iam
    }

    /// Stops accepting and waits for the server task.
    pub async fn shutdown(mut self) -> Result<(), std::io::Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Serves until the server task ends (errors or shutdown).
    pub async fn wait(mut self) -> Result<(), std::io::Error> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

impl<S> Drop for IamServer<S> {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
