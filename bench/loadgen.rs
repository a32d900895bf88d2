//! The benchmark's own client: the workloads that curl and wrk cannot drive without measuring
//! their own process start-up instead of the registry. Speaks only the distribution spec, so it
//! runs the same against Wharf and Distribution.
//!
//!   cargo build --release --example loadgen
//!   loadgen small-blobs URL REPO COUNT SIZE CONCURRENCY     blobs/s (POST + PUT ?digest= each)
//!   loadgen chunked URL REPO FILE CHUNK_MIB                  MB/s (PATCH with Content-Range, PUT)
//!   loadgen seed-tags URL REPO TAGS CONCURRENCY              one manifest under TAGS tags
//!   loadgen seed-repos URL PREFIX REPOS CONCURRENCY          one small image in each of REPOS repos
//!   loadgen pages URL PATH N                                 ms per page, following Link (or last)
//!   loadgen load METHOD URL CONNECTIONS SECONDS [ACCEPT]     req/s, p50 and p99 latency (ms)
//!
//! `load` exists because wrk cannot drive HEAD: it waits for the body that Content-Length announces.
//!
//! Every figure is printed as `name value unit` on one line, for bench/run.sh to collect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reqwest::{Client, StatusCode};
use sha2::{Digest as _, Sha256};

type Res<T> = Result<T, String>;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    }
}

fn with_query(loc: &str, q: &str) -> String {
    if loc.contains('?') {
        format!("{loc}&{q}")
    } else {
        format!("{loc}?{q}")
    }
}

async fn start_upload(c: &Client, base: &str, repo: &str) -> Res<String> {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != StatusCode::ACCEPTED {
        return Err(format!("POST upload: {}", r.status()));
    }
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Location")?;
    Ok(absolute(base, loc))
}

async fn push_blob(c: &Client, base: &str, repo: &str, data: Vec<u8>) -> Res<String> {
    let d = sha256(&data);
    let loc = start_upload(c, base, repo).await?;
    let r = c
        .put(with_query(&loc, &format!("digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != StatusCode::CREATED {
        return Err(format!("PUT blob: {}", r.status()));
    }
    Ok(d)
}

/// A config and one layer pushed to `repo`; returns the manifest bytes (not pushed).
async fn small_image(c: &Client, base: &str, repo: &str, seed: usize) -> Res<Vec<u8>> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = format!("layer of image {seed}").into_bytes();
    let (cl, ll) = (config.len(), layer.len());
    let cd = push_blob(c, base, repo, config).await?;
    let ld = push_blob(c, base, repo, layer).await?;
    Ok(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ll}],
    }))
    .unwrap())
}

async fn put_manifest(c: &Client, base: &str, repo: &str, reference: &str, m: &[u8]) -> Res<()> {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != StatusCode::CREATED {
        return Err(format!("PUT manifest {repo}:{reference}: {}", r.status()));
    }
    Ok(())
}

/// Run `count` jobs with `concurrency` workers; `job(i)` does one.
async fn parallel<F, Fut>(count: usize, concurrency: usize, job: F) -> Res<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers: Vec<tokio::task::JoinHandle<Res<()>>> = Vec::new();
    for _ in 0..concurrency {
        let (next, job) = (next.clone(), job.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                job(i).await?;
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn run(args: Vec<String>) -> Res<()> {
    let c = Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| e.to_string())?;
    let a = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing argument {i}; see the header of bench/loadgen.rs"))
    };
    let num = |i: usize| a(i).and_then(|s| s.parse::<usize>().map_err(|e| format!("argument {i}: {e}")));
    match a(0)?.as_str() {
        "small-blobs" => {
            let (base, repo, count, size, conc) = (a(1)?, a(2)?, num(3)?, num(4)?, num(5)?);
            // distinct content per run, so no blob exists already
            let salt = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            let t = Instant::now();
            let (c2, b2, r2) = (c.clone(), base.clone(), repo.clone());
            parallel(count, conc, move |i| {
                let (c, base, repo) = (c2.clone(), b2.clone(), r2.clone());
                async move {
                    push_blob(&c, &base, &repo, noise(size, salt ^ i as u64))
                        .await
                        .map(|_| ())
                }
            })
            .await?;
            println!(
                "small_blobs_per_s {:.1} blobs/s",
                count as f64 / t.elapsed().as_secs_f64()
            );
        }
        "chunked" => {
            let (base, repo, file, chunk_mib) = (a(1)?, a(2)?, a(3)?, num(4)?);
            let chunk = chunk_mib << 20;
            // Clients know a layer's digest before they upload it (it is in the manifest they
            // are about to push), so hashing the file is not part of the timed transfer.
            let digest = {
                let mut f = std::fs::File::open(&file).map_err(|e| e.to_string())?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                format!("sha256:{}", hex::encode(hasher.finalize()))
            };
            let t = Instant::now();
            let mut f = std::fs::File::open(&file).map_err(|e| e.to_string())?;
            let mut loc = start_upload(&c, &base, &repo).await?;
            let mut offset = 0usize;
            loop {
                let mut buf = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    let n = std::io::Read::read(&mut f, &mut buf[filled..]).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                buf.truncate(filled);
                let r = c
                    .patch(&loc)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{offset}-{}", offset + filled - 1))
                    .body(buf)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status() != StatusCode::ACCEPTED {
                    return Err(format!("PATCH at {offset}: {}", r.status()));
                }
                loc = absolute(
                    &base,
                    r.headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .ok_or("no Location")?,
                );
                offset += filled;
            }
            let r = c
                .put(with_query(&loc, &format!("digest={digest}")))
                .header("content-length", "0")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != StatusCode::CREATED {
                return Err(format!("closing PUT: {}", r.status()));
            }
            println!(
                "chunked_push {:.1} MB/s",
                offset as f64 / 1e6 / t.elapsed().as_secs_f64()
            );
        }
        "seed-tags" => {
            let (base, repo, tags, conc) = (a(1)?, a(2)?, num(3)?, num(4)?);
            let m = Arc::new(small_image(&c, &base, &repo, 0).await?);
            let (c2, b2, r2) = (c.clone(), base.clone(), repo.clone());
            parallel(tags, conc, move |i| {
                let (c, base, repo, m) = (c2.clone(), b2.clone(), r2.clone(), m.clone());
                async move { put_manifest(&c, &base, &repo, &format!("t{i:05}"), &m).await }
            })
            .await?;
        }
        "seed-repos" => {
            let (base, prefix, repos, conc) = (a(1)?, a(2)?, num(3)?, num(4)?);
            let (c2, b2) = (c.clone(), base.clone());
            parallel(repos, conc, move |i| {
                let (c, base, prefix) = (c2.clone(), b2.clone(), prefix.clone());
                async move {
                    let repo = format!("{prefix}/r{i:04}");
                    let m = small_image(&c, &base, &repo, i).await?;
                    put_manifest(&c, &base, &repo, "v1", &m).await
                }
            })
            .await?;
        }
        "pages" => {
            let (base, path, n) = (a(1)?, a(2)?, num(3)?);
            let key = if path.contains("_catalog") {
                "repositories"
            } else {
                "tags"
            };
            let mut next = Some(format!("{base}{path}?n={n}"));
            let (mut pages, mut items, mut times) = (0usize, 0usize, Vec::new());
            while let Some(url) = next.take() {
                let t = Instant::now();
                let r = c.get(&url).send().await.map_err(|e| e.to_string())?;
                if r.status() != StatusCode::OK {
                    return Err(format!("{url}: {}", r.status()));
                }
                let link = r.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                let got = v[key].as_array().map(|a| a.len()).unwrap_or(0);
                pages += 1;
                items += got;
                next = link.and_then(|l| {
                    let (s, e) = (l.find('<')?, l.find('>')?);
                    Some(absolute(&base, &l[s + 1..e]))
                });
                if pages > 100_000 {
                    return Err("too many pages".into());
                }
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let total: f64 = times.iter().sum();
            println!("pages {pages} pages");
            println!("items {items} items");
            println!("ms_per_page {:.2} ms", times[times.len() / 2]);
            println!("ms_all_pages {total:.1} ms");
        }
        "load" => {
            let (method, url, conns, secs) = (a(1)?, a(2)?, num(3)?, num(4)?);
            let accept = args.get(5).cloned();
            let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + std::time::Duration::from_secs(secs as u64);
            let mut workers = Vec::new();
            for _ in 0..conns {
                // one client per connection: each keeps its own keep-alive connection
                let c = Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .map_err(|e| e.to_string())?;
                let (method, url, accept) = (method.clone(), url.clone(), accept.clone());
                workers.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let mut rb = c.request(method.clone(), &url);
                        if let Some(a) = &accept {
                            rb = rb.header("accept", a);
                        }
                        let r = rb.send().await.map_err(|e| e.to_string())?;
                        if !r.status().is_success() {
                            return Err(format!("{url}: {}", r.status()));
                        }
                        r.bytes().await.map_err(|e| e.to_string())?;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok::<Vec<f64>, String>(lat)
                }));
            }
            let t0 = Instant::now();
            let mut all = Vec::new();
            for w in workers {
                all.extend(w.await.map_err(|e| e.to_string())??);
            }
            let elapsed = t0.elapsed().as_secs_f64();
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
            println!("rps {:.1} req/s", all.len() as f64 / elapsed);
            println!("p50 {:.2} ms", pct(0.50));
            println!("p99 {:.2} ms", pct(0.99));
        }
        other => {
            return Err(format!(
                "unknown workload {other:?}; see the header of bench/loadgen.rs"
            ));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(args).await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
