//! The shared adapter conformance suite against anvil.

use isthmus_adapter_evm::anvil::{AnvilFixture, FixtureOptions};
use isthmus_adapter_testkit::conformance::{self, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_adapter_passes_the_conformance_suite_against_anvil() {
    let factory = || -> futures::future::BoxFuture<'static, Result<Box<dyn Fixture>, String>> {
        Box::pin(async {
            let f = AnvilFixture::start(FixtureOptions::default()).await?;
            Ok(Box::new(f) as Box<dyn Fixture>)
        })
    };
    let report = conformance::run(&factory).await;
    report.assert_passed();
    assert_eq!(report.results.len(), conformance::CHECKS.len());
}
