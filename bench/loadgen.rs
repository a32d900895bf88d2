//! The benchmark's own client: the workloads that curl and wrk cannot drive without measuring
//! their own process start-up instead of the registry. Speaks only the distribution spec, so it
//! runs the same against Wharf and Distribution.
//!
//!   cargo build --release --example loadgen
//!   loadgen small-blobs URL REPO COUNT SIZE CONCURRENCY     blobs/s (POST + PUT ?digest= each)
//!   loadgen chunked URL REPO FILE CHUNK_MIB                  MB/s (PATCH with Content-Range, PUT)
//!   loadgen tag-puts URL REPO TAGS CONCURRENCY               tags/s: one small image, then its manifest
//!                                                            PUT under TAGS new tags (alias: seed-tags)
//!   loadgen big-manifest URL REPO LAYERS PUTS CONCURRENCY    ms per PUT of a manifest of LAYERS tiny
//!                                                            layers (median of PUTS, each new content),
//!                                                            and of one re-PUT of the first
//!   loadgen push-flood URL REPO CONNECTIONS PUSHERS SECONDS  pushes/s (a 4 KiB layer, POST + PUT, and a
//!                                                            manifest PUT each) by PUSHERS clients while
//!                                                            CONNECTIONS GET a manifest; GET req/s too
//!   loadgen seed-repos URL PREFIX REPOS CONCURRENCY          one small image in each of REPOS repos
//!   loadgen pages URL PATH N                                 ms per page, following Link (or last)
//!   loadgen load METHOD URL CONNECTIONS SECONDS [ACCEPT]     req/s, p50 and p99 latency (ms)
//!
//! `load` exists because wrk cannot drive HEAD: it waits for the body that Content-Length announces.
//! `push-flood` runs its GET load in the same process so that both loads share one clock.
//!
//! Every figure is printed as `name value unit` on one line, for bench/run.sh to collect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use sha2::{Digest as _, Sha256};

type Res<T> = Result<T, String>;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

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

/// An OCI image manifest of a config and layers, each given as (digest, size).
fn image_manifest(config: &(String, usize), layers: &[(String, usize)], annotations: serde_json::Value) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, n)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}))
        .collect();
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers,
    });
    if !annotations.is_null() {
        m["annotations"] = annotations;
    }
    serde_json::to_vec(&m).unwrap()
}

/// `data` pushed to `repo`; returns its (digest, size).
async fn push_sized(c: &Client, base: &str, repo: &str, data: Vec<u8>) -> Res<(String, usize)> {
    let n = data.len();
    Ok((push_blob(c, base, repo, data).await?, n))
}

/// A config and one layer pushed to `repo`; returns the manifest bytes (not pushed).
async fn small_image(c: &Client, base: &str, repo: &str, seed: usize) -> Res<Vec<u8>> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = format!("layer of image {seed}").into_bytes();
    let config = push_sized(c, base, repo, config).await?;
    let layer = push_sized(c, base, repo, layer).await?;
    Ok(image_manifest(&config, &[layer], serde_json::Value::Null))
}

async fn put_manifest(c: &Client, base: &str, repo: &str, reference: &str, m: &[u8]) -> Res<()> {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI_MANIFEST)
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

/// A salt that differs per run, so that generated blobs are new to the registry.
fn salt() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The `p` quantile of sorted values (0 when there are none).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn sort(v: &mut [f64]) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
}

/// One keep-alive connection's requests, back to back until `deadline`; their latencies in ms.
fn load_connection(
    method: reqwest::Method,
    url: String,
    accept: Option<String>,
    deadline: Instant,
) -> Res<tokio::task::JoinHandle<Res<Vec<f64>>>> {
    // a client of its own: each keeps its own keep-alive connection
    let c = Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
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
        Ok(lat)
    }))
}

/// Every latency the connections measured, sorted.
async fn join_latencies(workers: Vec<tokio::task::JoinHandle<Res<Vec<f64>>>>) -> Res<Vec<f64>> {
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.map_err(|e| e.to_string())??);
    }
    sort(&mut all);
    Ok(all)
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
            let salt = salt();
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
        "tag-puts" | "seed-tags" => {
            let (base, repo, tags, conc) = (a(1)?, a(2)?, num(3)?, num(4)?);
            let m = Arc::new(small_image(&c, &base, &repo, 0).await?);
            let (c2, b2, r2) = (c.clone(), base.clone(), repo.clone());
            let t = Instant::now();
            parallel(tags, conc, move |i| {
                let (c, base, repo, m) = (c2.clone(), b2.clone(), r2.clone(), m.clone());
                async move { put_manifest(&c, &base, &repo, &format!("t{i:05}"), &m).await }
            })
            .await?;
            println!("tag_puts_per_s {:.1} req/s", tags as f64 / t.elapsed().as_secs_f64());
        }
        "big-manifest" => {
            let (base, repo, layers, puts, conc) = (a(1)?, a(2)?, num(3)?, num(4)?, num(5)?);
            if puts == 0 {
                return Err("PUTS must be at least 1".into());
            }
            let salt = salt();
            let blobs: Arc<Vec<Vec<u8>>> = Arc::new((0..layers).map(|i| noise(64, salt ^ i as u64)).collect());
            let (c2, b2, r2, blobs2) = (c.clone(), base.clone(), repo.clone(), blobs.clone());
            parallel(layers, conc, move |i| {
                let (c, base, repo, blobs) = (c2.clone(), b2.clone(), r2.clone(), blobs2.clone());
                async move { push_blob(&c, &base, &repo, blobs[i].clone()).await.map(|_| ()) }
            })
            .await?;
            let layers: Vec<(String, usize)> = blobs.iter().map(|b| (sha256(b), b.len())).collect();
            let config = format!(r#"{{"architecture":"amd64","os":"linux","salt":{salt}}}"#).into_bytes();
            let config = push_sized(&c, &base, &repo, config).await?;
            // each PUT is new content (its own annotation) under a tag of its own
            let manifest = |k: usize| {
                image_manifest(
                    &config,
                    &layers,
                    serde_json::json!({"org.example.bench.seq": k.to_string()}),
                )
            };
            let mut times = Vec::new();
            for k in 0..puts {
                let m = manifest(k);
                let t = Instant::now();
                put_manifest(&c, &base, &repo, &format!("m{k}"), &m).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let m = manifest(0);
            let t = Instant::now();
            put_manifest(&c, &base, &repo, "m0", &m).await?;
            let again = t.elapsed().as_secs_f64() * 1000.0;
            sort(&mut times);
            println!("big_manifest_bytes {} bytes", m.len());
            println!("big_manifest_put_ms {:.2} ms", quantile(&times, 0.5));
            println!("big_manifest_reput_ms {again:.2} ms");
        }
        "push-flood" => {
            let (base, repo, conns, pushers, secs) = (a(1)?, a(2)?, num(3)?, num(4)?, num(5)?);
            // the manifest the flood GETs, and the config every pushed image shares
            let m = small_image(&c, &base, &repo, 0).await?;
            put_manifest(&c, &base, &repo, "pulled", &m).await?;
            let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
            let config = Arc::new(push_sized(&c, &base, &repo, config).await?);
            let salt = salt();
            let t0 = Instant::now();
            let deadline = t0 + Duration::from_secs(secs as u64);
            let url = format!("{base}/v2/{repo}/manifests/pulled");
            let gets = (0..conns)
                .map(|_| load_connection(reqwest::Method::GET, url.clone(), Some(OCI_MANIFEST.into()), deadline))
                .collect::<Res<Vec<_>>>()?;
            let mut workers = Vec::new();
            for w in 0..pushers {
                let (c, base, repo, config) = (c.clone(), base.clone(), repo.clone(), config.clone());
                workers.push(tokio::spawn(async move {
                    // the latencies of the pushes that completed before the deadline
                    let mut lat = Vec::new();
                    for n in 0u64.. {
                        let t = Instant::now();
                        if t >= deadline {
                            break;
                        }
                        let layer = noise(4096, salt ^ (((w as u64) << 40) | n));
                        let layer = push_sized(&c, &base, &repo, layer).await?;
                        let m = image_manifest(&config, &[layer], serde_json::Value::Null);
                        put_manifest(&c, &base, &repo, &format!("p{w}-{n}"), &m).await?;
                        let done = Instant::now();
                        if done <= deadline {
                            lat.push((done - t).as_secs_f64() * 1000.0);
                        }
                    }
                    Ok::<Vec<f64>, String>(lat)
                }));
            }
            let pushes = join_latencies(workers).await?;
            let gets = join_latencies(gets).await?;
            let elapsed = t0.elapsed().as_secs_f64().max(secs as f64);
            println!("flood_pushes_per_s {:.1} pushes/s", pushes.len() as f64 / secs as f64);
            println!("flood_push_p50 {:.2} ms", quantile(&pushes, 0.50));
            println!("flood_push_p99 {:.2} ms", quantile(&pushes, 0.99));
            println!("flood_get_rps {:.1} req/s", gets.len() as f64 / elapsed);
            println!("flood_get_p99 {:.2} ms", quantile(&gets, 0.99));
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
            sort(&mut times);
            let total: f64 = times.iter().sum();
            println!("pages {pages} pages");
            println!("items {items} items");
            println!("ms_per_page {:.2} ms", quantile(&times, 0.5));
            println!("ms_all_pages {total:.1} ms");
        }
        "load" => {
            let (method, url, conns, secs) = (a(1)?, a(2)?, num(3)?, num(4)?);
            let accept = args.get(5).cloned();
            let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(secs as u64);
            let workers = (0..conns)
                .map(|_| load_connection(method.clone(), url.clone(), accept.clone(), deadline))
                .collect::<Res<Vec<_>>>()?;
            let t0 = Instant::now();
            let all = join_latencies(workers).await?;
            let elapsed = t0.elapsed().as_secs_f64();
            println!("rps {:.1} req/s", all.len() as f64 / elapsed);
            println!("p50 {:.2} ms", quantile(&all, 0.50));
            println!("p99 {:.2} ms", quantile(&all, 0.99));
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
