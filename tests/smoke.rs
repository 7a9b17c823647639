mod common;
use common::*;

#[tokio::test]
async fn harness_starts_and_stops() {
    let h = Harness::start(|_, _| {}).await;
    let m = h.metrics().await;
    assert!(m.contains("switchboard_queue_depth"), "{m}");
    h.stop().await;
}
