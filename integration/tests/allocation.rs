//! Allocation end to end: weighted DRF between roles on a real cluster, operator
//! weights and quotas over HTTP, and `keel why` explaining a starved framework.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_actors::cli::master_upid;
use keel_actors::task::{CommandInfo, FrameworkInfo, TaskInfo, TaskState};
use keel_integration::cluster::{start_agent, start_master, Event, Op, TempDir, TestFramework};
use keel_integration::{http_get, http_send, wait_until, ChildNode};
use keel_kernel::{Node, NodeConfig};

fn framework_in(role: &str) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(format!("in-{role}"));
    info.roles = vec![role.to_string()];
    info
}

/// Accepts every offer with one long task using all of it; returns tasks launched.
async fn take_every_offer(fw: &mut TestFramework, prefix: &str, launched: &mut usize) {
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), fw.events.recv()).await {
        if let Event::Offers(offers) = event {
            for offer in offers {
                let id = format!("{prefix}-{launched}");
                let task =
                    TaskInfo::command(&id, &offer, offer.resources.clone(), CommandInfo::shell("sleep 10"));
                fw.op(Op::Launch(offer.id.clone(), vec![task]));
                *launched += 1;
            }
        }
    }
}

#[test]
fn roles_with_weights_one_and_three_share_cpus_about_one_to_three() {
    let master = start_master(&[]);
    let (status, body) = http_send(
        "PUT",
        &master.addr,
        "/weights",
        r#"[{"role":"light","weight":1},{"role":"heavy","weight":3}]"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, weights) = http_get(&master.addr, "/weights").unwrap();
    assert!(weights.contains("heavy") && weights.contains('3'), "{weights}");
    let master_upid = master_upid(&master.addr).unwrap();
    let dirs: Vec<TempDir> = (0..8).map(|i| TempDir::new(&format!("weights-{i}"))).collect();
    let mut agents: Vec<ChildNode> = Vec::new();
    let (mut light_tasks, mut heavy_tasks) = (0usize, 0usize);
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await.unwrap();
        let mut light = TestFramework::start(&node, "light", &master_upid, framework_in("light")).await;
        let mut heavy = TestFramework::start(&node, "heavy", &master_upid, framework_in("heavy")).await;
        // Agents join one by one; each goes whole to the role with the lower
        // weighted dominant share, and both frameworks want everything.
        for dir in &dirs {
            agents.push(start_agent(&master.addr, &dir.0, &["--resources", "cpus:1;mem:256"]));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while light_tasks + heavy_tasks < agents.len() && tokio::time::Instant::now() < deadline {
                take_every_offer(&mut light, "light", &mut light_tasks).await;
                take_every_offer(&mut heavy, "heavy", &mut heavy_tasks).await;
            }
        }
        // While both frameworks are subscribed, the allocator reports its roles.
        let addr = master.addr.clone();
        let body = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics/snapshot").unwrap().1)
            .await
            .unwrap();
        let metrics: BTreeMap<String, f64> = serde_json::from_str(&body).unwrap();
        assert!(metrics["allocator/allocation_runs"] > 0.0);
        assert!(metrics.contains_key("allocator/allocation_run_ms/p99"));
        assert_eq!(metrics["allocator/roles/heavy/weight"], 3.0);
        assert_eq!(metrics["allocator/roles/light/allocated/cpus"], light_tasks as f64);
    });
    assert_eq!(light_tasks + heavy_tasks, 8, "every agent was used");
    // 1:3 of 8 cpus is 2:6; the first agents can go either way, so allow one off.
    assert!((1..=3).contains(&light_tasks), "light got {light_tasks}, heavy {heavy_tasks}");
    println!("cpus: light {light_tasks}, heavy {heavy_tasks} (weights 1 and 3)");
    drop(agents);
}

#[test]
fn keel_why_explains_a_quota_limit_and_a_suppressed_framework() {
    let dir = TempDir::new("why");
    let master = start_master(&[]);
    let (status, body) =
        http_send("POST", &master.addr, "/quota", r#"{"role":"capped","guarantee":"","limit":"cpus:0.5"}"#)
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_send(
        "POST",
        &master.addr,
        "/quota",
        r#"{"role":"capped","guarantee":"cpus:2","limit":"cpus:1"}"#,
    )
    .unwrap();
    assert_eq!(status, 400, "a guarantee above the limit is refused: {body}");
    let (status, _) = http_send("PUT", &master.addr, "/weights", r#"[{"role":"x","weight":-1}]"#).unwrap();
    assert_eq!(status, 400);
    let (status, _) = http_send("PUT", &master.addr, "/weights", "not json").unwrap();
    assert_eq!(status, 400);
    let _agent = start_agent(&master.addr, &dir.0, &["--resources", "cpus:2;mem:1024"]);
    let master_upid = master_upid(&master.addr).unwrap();
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await.unwrap();
        let mut capped = TestFramework::start(&node, "capped", &master_upid, framework_in("capped")).await;
        let offer = capped.offer().await;
        assert!(offer.resources.cpus() <= 0.5, "the offer respects the limit: {}", offer.resources);
        let task = TaskInfo::command("c", &offer, offer.resources.clone(), CommandInfo::shell("sleep 10"));
        capped.op(Op::Launch(offer.id.clone(), vec![task]));
        capped.status("c", TaskState::Running).await;
        let capped_id = capped.id.clone().unwrap();

        let mut quiet = TestFramework::start(&node, "quiet", &master_upid, FrameworkInfo::new("quiet")).await;
        quiet.op(Op::Suppress);
        let quiet_id = quiet.id.clone().unwrap();
        // Ask why until the allocator has settled: an offer the quiet framework got
        // before its suppression landed holds the agent's rest until declined.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let (capped_text, quiet_text) = loop {
            while let Ok(event) = quiet.events.try_recv() {
                if let Event::Offers(offers) = event {
                    for offer in offers {
                        quiet.op(Op::Decline(offer.id, 3600.0));
                    }
                }
            }
            let (addr, capped_id, quiet_id) = (master.addr.clone(), capped_id.clone(), quiet_id.clone());
            let texts = tokio::task::spawn_blocking(move || {
                (
                    keel_actors::cli::why::run(&addr, capped_id.as_str()).unwrap(),
                    keel_actors::cli::why::run(&addr, quiet_id.as_str()).unwrap(),
                )
            })
            .await
            .unwrap();
            let settled =
                texts.0.to_lowercase().contains("limit") && texts.1.to_lowercase().contains("suppress");
            if settled || tokio::time::Instant::now() > deadline {
                break texts;
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // poll interval
        };
        assert!(capped_text.to_lowercase().contains("limit"), "{capped_text}");
        assert!(quiet_text.to_lowercase().contains("suppress"), "{quiet_text}");
        println!("--- keel why (quota-limited)\n{capped_text}\n--- keel why (suppressed)\n{quiet_text}");
    });
    let ok = wait_until(Duration::from_secs(1), || {
        http_get(&master.addr, "/quota").is_ok_and(|(_, b)| b.contains("capped"))
    });
    assert!(ok);
    let (status, _) = http_get(&master.addr, "/allocator/explain?framework=nope").unwrap();
    assert_eq!(status, 404);
    let (status, _) = http_get(&master.addr, "/allocator/explain").unwrap();
    assert_eq!(status, 400);
}

#[test]
fn statically_reserved_resources_are_offered_only_to_their_role() {
    let dir = TempDir::new("reserved");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &["--resources", "cpus(ads):2;cpus:1;mem:512"]);
    let master_upid = master_upid(&master.addr).unwrap();
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await.unwrap();
        let mut other = TestFramework::start(&node, "other", &master_upid, framework_in("other")).await;
        let offer = other.offer().await;
        assert_eq!(offer.resources.cpus(), 1.0, "only unreserved cpus for role other: {}", offer.resources);
        assert!(offer.resources.reserved("ads").is_empty());
        // Role ads (and only it) gets the reserved cpus, while other holds its offer.
        let mut ads = TestFramework::start(&node, "ads", &master_upid, framework_in("ads")).await;
        let offer = ads.offer().await;
        assert_eq!(offer.resources.reserved("ads").cpus(), 2.0, "{}", offer.resources);
    });
}

/// Polls a file without blocking the test's actors (they share this thread).
async fn file_eventually(path: &std::path::Path, check: impl Fn(&str) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|text| check(&text)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[test]
fn a_framework_reserves_and_unreserves_resources_through_offers() {
    use keel_actors::messages::scheduler::Operation;
    let dir = TempDir::new("dynamic");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &["--resources", "cpus:2;mem:512"]);
    let master_upid = master_upid(&master.addr).unwrap();
    let checkpoint = dir.0.join("meta/resources.json");
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await.unwrap();
        let mut ads = TestFramework::start(&node, "ads", &master_upid, framework_in("ads")).await;
        let offer = ads.offer().await;
        assert_eq!(offer.resources.cpus(), 2.0);
        let reserved: keel_actors::resources::Resources = "cpus(ads,dynamic):1".parse().unwrap();
        ads.op(Op::Accept(offer.id.clone(), vec![Operation::Reserve { resources: reserved.clone() }], 2.0));
        // The agent checkpoints its new total.
        let written = file_eventually(&checkpoint, |text| text.contains("ads")).await;
        assert!(written, "the reservation was not checkpointed on the agent");
        // Another role only ever sees the unreserved cpu.
        let mut other = TestFramework::start(&node, "other", &master_upid, framework_in("other")).await;
        let offer = other.offer().await;
        assert_eq!(offer.resources.cpus(), 1.0, "{}", offer.resources);
        assert!(offer.resources.reserved("ads").is_empty());
        // Role ads gets its reserved cpu back in a later offer, and gives it up.
        let offer = ads.offer().await;
        assert_eq!(offer.resources.reserved("ads"), reserved, "{}", offer.resources);
        ads.op(Op::Accept(offer.id.clone(), vec![Operation::Unreserve { resources: reserved.clone() }], 2.0));
        let released = file_eventually(&checkpoint, |text| !text.contains("ads")).await;
        assert!(released, "the unreservation was not checkpointed");
        // A reservation for a role the framework does not have is refused.
        let offer = other.offer().await;
        let foreign: keel_actors::resources::Resources = "cpus(ads,dynamic):1".parse().unwrap();
        other.op(Op::Accept(offer.id.clone(), vec![Operation::Reserve { resources: foreign }], 0.1));
        let addr = master.addr.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut refused = false;
        while !refused && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let addr = addr.clone();
            let body = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics/snapshot").unwrap().1)
                .await
                .unwrap();
            let metrics: BTreeMap<String, f64> = serde_json::from_str(&body).unwrap();
            refused = metrics["master/invalid_operations"] == 1.0;
        }
        assert!(refused, "the foreign reservation was not refused");
    });
    assert!(!std::fs::read_to_string(&checkpoint).unwrap().contains("ads"));
}

#[test]
fn an_operator_reserves_free_resources_for_a_role() {
    let dir = TempDir::new("operator-reserve");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &["--resources", "cpus:2;mem:512"]);
    let agent_id = {
        let mut id = String::new();
        assert!(wait_until(Duration::from_secs(10), || {
            let (_, body) = http_get(&master.addr, "/state").unwrap();
            let state: serde_json::Value = serde_json::from_str(&body).unwrap();
            id = state["slaves"][0]["id"].as_str().unwrap_or_default().to_string();
            !id.is_empty()
        }));
        id
    };
    let reserve = |body: &str| http_send("POST", &master.addr, "/reserve", body).unwrap();
    let (status, body) =
        reserve(&format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(ads,dynamic):1"}}"#));
    assert_eq!(status, 200, "{body}");
    // Bad requests change nothing.
    assert_eq!(reserve(&format!(r#"{{"agent_id":"{agent_id}","resources":"cpus:1"}}"#)).0, 400);
    assert_eq!(reserve(r#"{"agent_id":"nope","resources":"cpus(ads,dynamic):1"}"#).0, 404);
    assert_eq!(reserve(&format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(ads,dynamic):5"}}"#)).0, 409);
    assert_eq!(reserve("{").0, 400);
    let checkpoint = dir.0.join("meta/resources.json");
    assert!(wait_until(Duration::from_secs(5), || std::fs::read_to_string(&checkpoint)
        .is_ok_and(|t| t.contains("ads"))));
    let master_upid = master_upid(&master.addr).unwrap();
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await.unwrap();
        let mut ads = TestFramework::start(&node, "ads", &master_upid, framework_in("ads")).await;
        let offer = ads.offer().await;
        assert_eq!(offer.resources.reserved("ads").cpus(), 1.0, "{}", offer.resources);
        assert_eq!(offer.resources.cpus(), 2.0);
    });
    // Once the framework is gone its offer returns, and the reservation can be undone.
    let body = format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(ads,dynamic):1"}}"#);
    let unreserved = wait_until(Duration::from_secs(5), || {
        http_send("POST", &master.addr, "/unreserve", &body).is_ok_and(|(s, _)| s == 200)
    });
    assert!(unreserved);
    assert!(wait_until(Duration::from_secs(5), || std::fs::read_to_string(&checkpoint)
        .is_ok_and(|t| !t.contains("ads"))));
}
