use crate::host::RemoteFixture;
use futures::FutureExt;
use isthmus_adapter_testkit::conformance::{self, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_adapter_host_process() {
    let factory =
        || async { Ok(Box::new(RemoteFixture::start(41).await) as Box<dyn Fixture>) }.boxed();
    let report = conformance::run(&factory).await;
    assert_eq!(report.results.len(), conformance::CHECKS.len());
    report.assert_passed();
}
