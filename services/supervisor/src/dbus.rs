//! The real [`Systemd`]: the systemd manager on the system bus, through zbus proxies
//! declared here (`org.freedesktop.systemd1.Manager` and `.Unit`).

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::error::{Result, SupervisorError};
use crate::seams::{Systemd, UnitEvent, UnitState};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn description(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
}

/// systemd over the system bus.
#[derive(Clone)]
pub struct DbusSystemd {
    conn: zbus::Connection,
}

fn err(op: &'static str, unit: &str) -> impl FnOnce(zbus::Error) -> SupervisorError {
    let unit = unit.to_string();
    move |e| SupervisorError::Systemd {
        op,
        unit,
        reason: e.to_string(),
    }
}

impl DbusSystemd {
    /// Connects to the system bus.
    pub async fn system() -> Result<DbusSystemd> {
        let conn = zbus::Connection::system()
            .await
            .map_err(err("connect", "system bus"))?;
        Ok(DbusSystemd { conn })
    }

    async fn manager(&self) -> Result<ManagerProxy<'static>> {
        ManagerProxy::new(&self.conn)
            .await
            .map_err(err("proxy", "org.freedesktop.systemd1"))
    }

    async fn unit(&self, name: &str, cache: CacheProperties) -> Result<UnitProxy<'static>> {
        let path = self
            .manager()
            .await?
            .load_unit(name)
            .await
            .map_err(err("LoadUnit", name))?;
        UnitProxy::builder(&self.conn)
            .path(path)
            .map_err(err("path", name))?
            .cache_properties(cache)
            .build()
            .await
            .map_err(err("proxy", name))
    }
}

#[async_trait]
impl Systemd for DbusSystemd {
    async fn start_unit(&self, name: &str) -> Result<()> {
        let job = self
            .manager()
            .await?
            .start_unit(name, "replace")
            .await
            .map_err(err("StartUnit", name))?;
        tracing::info!(unit = name, job = %job.as_str(), "start job queued");
        Ok(())
    }

    async fn unit_state(&self, name: &str) -> Result<UnitState> {
        let u = self.unit(name, CacheProperties::No).await?;
        Ok(UnitState {
            id: name.to_string(),
            description: u
                .description()
                .await
                .map_err(err("Get Description", name))?,
            load_state: u.load_state().await.map_err(err("Get LoadState", name))?,
            active_state: u
                .active_state()
                .await
                .map_err(err("Get ActiveState", name))?,
            sub_state: u.sub_state().await.map_err(err("Get SubState", name))?,
        })
    }

    async fn follow(&self, units: &[String]) -> Result<BoxStream<'static, UnitEvent>> {
        let manager = self.manager().await?;
        manager
            .subscribe()
            .await
            .map_err(err("Subscribe", "manager"))?;
        let wanted: std::collections::BTreeSet<String> = units.iter().cloned().collect();
        let jobs = manager
            .receive_job_removed()
            .await
            .map_err(err("AddMatch JobRemoved", "manager"))?;
        let jobs = jobs
            .filter_map(move |sig| {
                let wanted = wanted.clone();
                async move {
                    let a = sig.args().ok()?;
                    wanted.contains(a.unit).then(|| UnitEvent::JobRemoved {
                        unit: a.unit.to_string(),
                        result: a.result.to_string(),
                    })
                }
            })
            .boxed();
        let mut streams: Vec<BoxStream<'static, UnitEvent>> = vec![jobs];
        for name in units {
            let u = self.unit(name, CacheProperties::Yes).await?;
            let changes = u.receive_active_state_changed().await;
            let name = name.clone();
            streams.push(
                changes
                    .filter_map(move |c| {
                        let unit = name.clone();
                        async move {
                            let state = c.get().await.ok()?;
                            Some(UnitEvent::ActiveState { unit, state })
                        }
                    })
                    .boxed(),
            );
        }
        Ok(futures::stream::select_all(streams).boxed())
    }
}
