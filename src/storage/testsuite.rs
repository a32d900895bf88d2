//! One suite of driver checks, run against every driver: the filesystem always, S3 when
//! `S3_ENDPOINT` (and `S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) name a server;
//! tests/s3/run.sh starts SeaweedFS and sets them. Each run uses a fresh key prefix.

use bytes::Bytes;
use futures::StreamExt;

use super::{Driver, DriverError, Precondition, StoragePath};

fn p(s: &str) -> StoragePath {
    StoragePath::from_validated(s.to_owned())
}

async fn read_all(d: &dyn Driver, path: &StoragePath, range: Option<(u64, u64)>) -> Vec<u8> {
    let mut s = d.reader(path, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn suite(d: &dyn Driver) {
    // small objects: absent, put, get, replace
    let a = p("dir/sub/a");
    assert!(d.get_content(&a).await.unwrap_err().is_not_found());
    assert!(d.stat(&a).await.unwrap_err().is_not_found());
    d.put_content(&a, Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(&d.get_content(&a).await.unwrap()[..], b"one");
    d.put_content(&a, Bytes::from_static(b"two!")).await.unwrap();
    assert_eq!(&d.get_content(&a).await.unwrap()[..], b"two!");
    let fi = d.stat(&a).await.unwrap();
    assert_eq!((fi.size, fi.is_dir), (4, false));
    // directories exist while something is below them
    assert!(d.stat(&p("dir/sub")).await.unwrap().is_dir);
    d.put_content(&p("dir/b"), Bytes::from_static(b"b")).await.unwrap();
    d.put_content(&p("dir/sub2/c"), Bytes::from_static(b"c")).await.unwrap();
    assert_eq!(d.list(&p("dir")).await.unwrap(), vec!["b", "sub", "sub2"]);
    assert!(d.list(&p("nothing")).await.unwrap_err().is_not_found());
    // ranges
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let obj = p("dir/big");
    d.put_content(&obj, Bytes::from(big.clone())).await.unwrap();
    assert_eq!(read_all(d, &obj, None).await, big);
    assert_eq!(read_all(d, &obj, Some((1000, 200_000))).await, &big[1000..200_000]);
    assert!(read_all(d, &obj, Some((5, 5))).await.is_empty());
    // recursive delete; deleting what is absent is fine
    d.delete(&p("dir/sub")).await.unwrap();
    assert!(d.get_content(&a).await.unwrap_err().is_not_found());
    // (an emptied directory may still be listed for a while on some S3 services)
    let listed = d.list(&p("dir")).await.unwrap();
    assert!(
        ["b", "big", "sub2"].iter().all(|n| listed.contains(&n.to_string())),
        "{listed:?}"
    );
    assert!(d.multipart().is_some() || listed.len() == 3, "{listed:?}");
    let mut deep = d.list_recursive(&p("dir")).await.unwrap();
    deep.sort();
    assert_eq!(deep, vec!["b", "big", "sub2/c"]);
    d.delete(&p("dir")).await.unwrap();
    d.delete(&p("dir")).await.unwrap();
    assert!(d.list_recursive(&p("dir")).await.unwrap().is_empty());
    // move
    d.put_content(&p("m/from"), Bytes::from_static(b"moved")).await.unwrap();
    d.move_(&p("m/from"), &p("m/x/to")).await.unwrap();
    assert_eq!(&d.get_content(&p("m/x/to")).await.unwrap()[..], b"moved");
    assert!(d.get_content(&p("m/from")).await.unwrap_err().is_not_found());
    d.delete(&p("m")).await.unwrap();
    // batched reads: in order, each its own result, more than one batch's worth
    let names: Vec<StoragePath> = (0..300).map(|i| p(&format!("many/{i}"))).collect();
    for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        d.put_content(n, Bytes::from(i.to_string())).await.unwrap();
    }
    let read = d.get_content_many(&names).await;
    let stats = d.stat_many(&names).await;
    assert_eq!((read.len(), stats.len()), (300, 300));
    for (i, (r, st)) in read.iter().zip(&stats).enumerate() {
        if i % 3 == 0 {
            assert!(r.as_ref().unwrap_err().is_not_found(), "{i}");
            assert!(st.as_ref().unwrap_err().is_not_found(), "{i}");
        } else {
            assert_eq!(r.as_ref().unwrap()[..], *i.to_string().as_bytes(), "{i}");
            assert_eq!(st.as_ref().unwrap().size, i.to_string().len() as u64, "{i}");
        }
    }
    assert!(d.get_content_many(&[]).await.is_empty());
    d.delete(&p("many")).await.unwrap();
    // several small objects made to hold their data at once: new, unchanged, changed
    let (e1, e2) = (p("ensure/a/link"), p("ensure/b/link"));
    d.ensure_contents(vec![
        (e1.clone(), Bytes::from_static(b"one")),
        (e2.clone(), Bytes::from_static(b"two")),
    ])
    .await
    .unwrap();
    d.ensure_contents(vec![
        (e1.clone(), Bytes::from_static(b"one")),
        (e2.clone(), Bytes::from_static(b"2")),
    ])
    .await
    .unwrap();
    assert_eq!(&d.get_content(&e1).await.unwrap()[..], b"one");
    assert_eq!(&d.get_content(&e2).await.unwrap()[..], b"2");
    d.put_content(&e1, Bytes::from_static(b"uno")).await.unwrap();
    d.ensure_contents(vec![(e1.clone(), Bytes::from_static(b"one"))])
        .await
        .unwrap();
    assert_eq!(&d.get_content(&e1).await.unwrap()[..], b"one");
    d.ensure_contents(Vec::new()).await.unwrap();
    d.delete(&p("ensure")).await.unwrap();
}

/// Conditional writes and multipart uploads: object stores only.
async fn object_store_suite(d: &dyn Driver) {
    let k = p("cond/state");
    let v1 = d
        .put_if(&k, Bytes::from_static(b"1"), Precondition::Absent)
        .await
        .unwrap();
    assert!(matches!(
        d.put_if(&k, Bytes::from_static(b"x"), Precondition::Absent).await,
        Err(DriverError::Conflict(_))
    ));
    let (b, v) = d.get_versioned(&k).await.unwrap();
    assert_eq!(&b[..], b"1");
    assert_eq!(v, v1);
    let v2 = d
        .put_if(&k, Bytes::from_static(b"2"), Precondition::Matches(v.clone().unwrap()))
        .await
        .unwrap();
    assert_ne!(v2, v);
    // a writer holding the old version loses
    assert!(matches!(
        d.put_if(&k, Bytes::from_static(b"3"), Precondition::Matches(v.unwrap()))
            .await,
        Err(DriverError::Conflict(_))
    ));
    assert_eq!(&d.get_content(&k).await.unwrap()[..], b"2");

    let mp = d.multipart().expect("multipart");
    let obj = p("mp/obj");
    let id = mp.create(&obj).await.unwrap();
    let part0 = Bytes::from(vec![7u8; 5 << 20]);
    let e0 = mp
        .put_part(&obj, &id, 0, vec![part0.slice(..1000), part0.slice(1000..)])
        .await
        .unwrap();
    let e1 = mp
        .put_part(&obj, &id, 1, vec![Bytes::from_static(b"end")])
        .await
        .unwrap();
    // not visible before completion
    assert!(d.stat(&obj).await.unwrap_err().is_not_found());
    mp.complete(&obj, &id, vec![e0, e1]).await.unwrap();
    assert_eq!(d.stat(&obj).await.unwrap().size, (5 << 20) + 3);
    assert_eq!(
        read_all(d, &obj, Some(((5 << 20) - 1, (5 << 20) + 3))).await,
        b"\x07end"
    );
    mp.copy(&obj, &p("mp/copy"), (5 << 20) + 3).await.unwrap();
    assert_eq!(d.stat(&p("mp/copy")).await.unwrap().size, (5 << 20) + 3);
    // an aborted upload leaves nothing
    let gone = p("mp/aborted");
    let id = mp.create(&gone).await.unwrap();
    mp.put_part(&gone, &id, 0, vec![Bytes::from_static(b"x")])
        .await
        .unwrap();
    mp.abort(&gone, &id).await.unwrap();
    assert!(d.stat(&gone).await.unwrap_err().is_not_found());
    d.delete(&p("mp")).await.unwrap();
    d.delete(&p("cond")).await.unwrap();
}

#[tokio::test]
async fn filesystem_driver() {
    let dir = tempfile::tempdir().unwrap();
    let d = super::fs::FsDriver::new(dir.path(), true).unwrap();
    suite(&d).await;
    assert!(d.multipart().is_none());
}

/// The object-store driver on object_store's in-memory store (`storage.inmemory`): the same
/// driver code as S3, on every `cargo test`.
#[tokio::test]
async fn inmemory_driver() {
    let d = super::s3::S3Driver::in_memory();
    suite(&d).await;
    object_store_suite(&d).await;
    assert!(
        d.redirect_url(&p("a")).await.unwrap().is_none(),
        "no presigned URLs in memory"
    );
}

#[tokio::test]
async fn inmemory_driver_copies_large_objects_by_streaming() {
    let mut d = super::s3::S3Driver::in_memory();
    d.set_copy_limit(1 << 20);
    copies_large_objects_by_streaming(&d).await;
}

/// The S3 tests are `#[ignore]`d: tests/s3/run.sh starts SeaweedFS, sets S3_ENDPOINT and runs
/// them with `--include-ignored`.
const NEEDS_S3: &str =
    "S3_ENDPOINT is not set: the S3 tests need an S3 server (tests/s3/run.sh starts SeaweedFS and sets it)";

/// The S3 driver against a real server (S3_ENDPOINT); panics without one.
pub(crate) fn s3_config(prefix: &str) -> crate::config::S3Config {
    let endpoint = std::env::var("S3_ENDPOINT").expect(NEEDS_S3);
    crate::config::S3Config {
        bucket: std::env::var("S3_BUCKET").unwrap_or_else(|_| "wharf-ci".into()),
        regionendpoint: endpoint,
        forcepathstyle: true,
        rootdirectory: prefix.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback: tests/s3/run.sh)"]
async fn s3_driver() {
    let prefix = format!("driver-{}", uuid::Uuid::new_v4().simple());
    let c = s3_config(&prefix);
    let d = super::s3::S3Driver::new(&c).unwrap();
    suite(&d).await;
    object_store_suite(&d).await;
    let url = d.redirect_url(&p("mp/obj")).await.unwrap().expect("a presigned URL");
    assert!(url.contains("X-Amz-Signature"), "{url}");
}

/// Copies above CopyObject's 5 GiB limit stream through a multipart upload; exercised here with
/// the limit lowered to 1 MiB.
#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback: tests/s3/run.sh)"]
async fn s3_driver_copies_large_objects_by_streaming() {
    let prefix = format!("driver-copy-{}", uuid::Uuid::new_v4().simple());
    let mut c = s3_config(&prefix);
    c.chunksize = 5 << 20;
    let mut d = super::s3::S3Driver::new(&c).unwrap();
    d.set_copy_limit(1 << 20);
    copies_large_objects_by_streaming(&d).await;
}

async fn copies_large_objects_by_streaming(d: &super::s3::S3Driver) {
    let data: Vec<u8> = (0..(12u32 << 20) + 12345).map(|i| (i % 253) as u8).collect();
    let (from, to) = (p("big/from"), p("big/to"));
    d.put_content(&from, Bytes::from(data.clone())).await.unwrap();
    d.multipart()
        .unwrap()
        .copy(&from, &to, data.len() as u64)
        .await
        .unwrap();
    assert!(read_all(d, &to, None).await == data);
    d.delete(&p("big")).await.unwrap();
}
