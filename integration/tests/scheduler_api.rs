//! The scheduler driver's own timers and its subscription timeout.

use std::time::Duration;

use keel_actors::ids::FrameworkId;
use keel_actors::local::{LocalCluster, LocalConfig};
use keel_actors::scheduler::{
    start_scheduler, DriverStatus, Scheduler, SchedulerConfig, SchedulerDriver, SchedulerProcess,
};
use keel_actors::task::{FrameworkInfo, Offer};
use keel_kernel::{Handle, Handlers, ProcessContext, Upid};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
struct Tock {
    n: u32,
}
keel_kernel::message!(Tock, "keel.test.Tock");

struct Ticking(mpsc::UnboundedSender<u32>);

impl Scheduler for Ticking {
    fn subscribed(&mut self, driver: &mut SchedulerDriver, _framework_id: &FrameworkId) {
        driver.delay(Duration::from_millis(30), Tock { n: 1 });
    }

    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
        for offer in offers {
            driver.decline(offer.id, Some(60.0));
        }
    }

    fn install(handlers: &mut Handlers<SchedulerProcess<Self>>) {
        handlers.install::<Tock>();
    }
}

impl Handle<Tock> for SchedulerProcess<Ticking> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, tock: Tock) {
        assert_eq!(&from, ctx.upid(), "timers come from the scheduler itself");
        let (scheduler, driver) = self.split();
        let _ = scheduler.0.send(tock.n);
        if tock.n < 3 {
            driver.delay(Duration::from_millis(30), Tock { n: tock.n + 1 });
        } else {
            driver.stop(false);
        }
        self.flush(ctx);
    }
}

#[test]
fn a_scheduler_can_set_its_own_timers() {
    actix_rt::System::new().block_on(async {
        let cluster = LocalCluster::start(LocalConfig {
            agent_resources: Some("cpus:1;mem:256".into()),
            ..LocalConfig::default()
        })
        .await
        .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let config = SchedulerConfig::new(cluster.master_upid().clone(), FrameworkInfo::new("ticking"));
        let handle = start_scheduler(cluster.node(), "ticking", config, Ticking(tx)).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), handle.wait()).await.unwrap();
        assert_eq!(status, DriverStatus::Stopped);
        let mut ticks = Vec::new();
        while let Ok(n) = rx.try_recv() {
            ticks.push(n);
        }
        assert_eq!(ticks, [1, 2, 3]);
        cluster.shutdown().await;
    });
}

struct Idle;

impl Scheduler for Idle {
    fn offers(&mut self, _driver: &mut SchedulerDriver, _offers: Vec<Offer>) {}
}

#[test]
fn a_driver_with_a_subscribe_timeout_gives_up_on_a_missing_master() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    actix_rt::System::new().block_on(async move {
        let node = keel_kernel::Node::start(keel_kernel::NodeConfig::default()).await.unwrap();
        let master: Upid = format!("master@127.0.0.1:{port}").parse().unwrap();
        let mut config = SchedulerConfig::new(master, FrameworkInfo::new("lonely"));
        config.subscribe_timeout = Some(Duration::from_millis(500));
        let handle = start_scheduler(&node, "lonely", config, Idle).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), handle.wait()).await.unwrap();
        assert!(
            matches!(status, DriverStatus::Aborted(ref m) if m.contains("no master answered")),
            "{status:?}"
        );
    });
}
