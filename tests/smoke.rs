mod common;
use common::*;

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let s = Server::start();
    let r = client().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
}
