use crate::node::LtcFixture;
use isthmus_adapter_testkit::conformance::{self, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_litecoind() {
    let factory = || -> futures::future::BoxFuture<'static, Result<Box<dyn Fixture>, String>> {
        Box::pin(async { Ok(Box::new(LtcFixture::new().await) as Box<dyn Fixture>) })
    };
    let report = conformance::run(&factory).await;
    assert_eq!(report.results.len(), conformance::CHECKS.len());
    report.assert_passed();
}
