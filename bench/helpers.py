#!/usr/bin/env python3
"""Small helpers for bench/run.sh (standard library only).

  helpers.py startup URL -- CMD...        start CMD, poll URL, print "startup_ms N ms", then print the
                                          server's pid on the last line and leave it running
  helpers.py oci-image DIR MB LAYERS      write an OCI image layout with LAYERS random layers, MB in all
  helpers.py wrk FILE NAME                turn wrk --latency output into "NAME_rps / NAME_p50 / NAME_p99" lines
  helpers.py table RESULTS OUT MACHINE    medians per (registry, figure), ratios, Markdown table to OUT
                                          (and stdout; OUT "-": stdout only)
"""
import hashlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request


def startup(url, cmd):
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.environ.get("SERVER_LOG", os.devnull), "ab"))
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode} before answering")
        if time.monotonic() - t0 > 30:
            sys.exit("server did not answer within 30 s")
        time.sleep(0.001)
    print(f"startup_ms {(time.monotonic() - t0) * 1000:.1f} ms")
    print(proc.pid)


def blob(d, data):
    h = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(d, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


def oci_image(d, mb, layers):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    per = mb * 1_000_000 // layers
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo(f"layer{i}.bin")
            info.size = per
            t.addfile(info, io.BytesIO(os.urandom(per)))
        dg, size = blob(d, buf.getvalue())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg, "size": size})
        diff_ids.append(dg)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {}}).encode()
    cd, cs = blob(d, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                           "layers": descs}).encode()
    md, ms = blob(d, manifest)
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)


def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(path, name):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not (rps and p50 and p99):
        sys.exit("cannot parse wrk output:\n" + text)
    if non2xx:
        sys.exit(f"wrk saw {non2xx.group(1)} error responses:\n" + text)
    print(f"{name}_rps {rps.group(1)} req/s")
    print(f"{name}_p50 {ms(*p50.groups()):.2f} ms")
    print(f"{name}_p99 {ms(*p99.groups()):.2f} ms")


# figure -> (label, unit, higher is better; None: a count, no ratio)
FIGURES = [
    ("push_mono", "push 1 GiB, monolithic", "MB/s", True),
    ("push_chunked", "push 1 GiB, 16 MiB chunks", "MB/s", True),
    ("pull", "pull 1 GiB", "MB/s", True),
    ("pull_range", "Range GET of a quarter of it", "MB/s", True),
    ("small_blobs", "1,000 × 4 KiB blobs, 16 clients", "blobs/s", True),
    ("tag_puts_per_s", "tag PUTs of one manifest, 16 parallel clients (2,000 new tags)", "req/s", True),
    ("big_manifest_put_ms", "manifest PUT with 1,000 layers (median of 5, each new)", "ms", False),
    ("big_manifest_reput_ms", "re-PUT of the same 1,000-layer manifest", "ms", False),
    ("manifest_get_rps", "manifest GET by tag, 64 conns", "req/s", True),
    ("manifest_get_p50", "manifest GET p50", "ms", False),
    ("manifest_get_p99", "manifest GET p99", "ms", False),
    ("blob_head_rps", "blob HEAD, 64 conns", "req/s", True),
    ("blob_head_p50", "blob HEAD p50", "ms", False),
    ("blob_head_p99", "blob HEAD p99", "ms", False),
    ("flood_pushes_per_s", "pushes under a pull flood (4 KiB image, 4 clients, 64 GET conns)", "pushes/s", True),
    ("flood_push_p99", "push p99 under the pull flood", "ms", False),
    ("flood_get_rps", "manifest GET during the push flood, 64 conns", "req/s", True),
    ("threads", "server threads after the load (largest reading)", "threads", None),
    ("tags_page_ms", "tags list page (10,000 tags, n=100)", "ms/page", False),
    ("tags_all_ms", "all tags pages, summed", "ms", False),
    ("tags_pages", "tags list pages returned for n=100 (Distribution 2.8.2 ignores n)", "pages", None),
    ("catalog_page_ms", "catalog page (1,000 repos, n=100)", "ms/page", False),
    ("catalog_all_ms", "all catalog pages, summed", "ms", False),
    ("catalog_pages", "catalog pages returned for n=100", "pages", None),
    ("skopeo_push_s", "skopeo push, 50 MB in 4 layers", "s", False),
    ("skopeo_pull_s", "skopeo pull, 50 MB in 4 layers", "s", False),
    ("startup_ms", "start-up to first 200 on /v2/", "ms", False),
    ("idle_rss_mib", "idle RSS after start", "MiB", False),
    ("peak_rss_mib", "peak RSS over the run", "MiB", False),
]


def table(results, out, machine):
    vals = {}
    for line in open(results):
        parts = line.split()
        if len(parts) >= 3:
            vals.setdefault((parts[0], parts[1]), []).append(float(parts[2]))
    med = {k: statistics.median(v) for k, v in vals.items()}
    runs = len(vals.get(("wharf", "startup_ms"), []))
    lines = [
        "# Benchmark results",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine}.",
        f"Medians of {runs} alternating runs each (A/B), same machine, same run, loopback, fsync on for both.",
        "Ratio = Wharf / Distribution for rates; Distribution / Wharf for times, latencies and memory (so > 1 means Wharf is better).",
        "",
        "Ceiling: nginx serving the same file for downloads; for pushes, `dd conv=fdatasync` of the same",
        "bytes to the same disk, measured just before each registry's pushes (the disk of this VM varies).",
        "",
        "| figure | unit | Wharf | Distribution 2.8.2 | ratio | ceiling | Wharf / ceiling |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, label, unit, higher in FIGURES:
        w, d = med.get(("wharf", key)), med.get(("dist", key))
        n = med.get(("nginx", key), med.get(("disk", key)))
        if w is None and d is None:
            continue
        ratio = ""
        if w and d and higher is not None:
            ratio = f"{(w / d) if higher else (d / w):.2f}×"
        of_ceiling = f"{w / n:.2f}×" if w and n else ""
        fmt = lambda v: "" if v is None else (f"{v:.0f}" if v >= 100 or (higher is None and v == int(v)) else f"{v:.2f}")
        lines.append(f"| {label} | {unit} | {fmt(w)} | {fmt(d)} | {ratio} | {fmt(n)} | {of_ceiling} |")
    text = "\n".join(lines) + "\n"
    if out != "-":
        open(out, "w").write(text)
    print(text)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "startup":
        sep = sys.argv.index("--")
        startup(sys.argv[2], sys.argv[sep + 1:])
    elif cmd == "oci-image":
        oci_image(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "wrk":
        wrk(sys.argv[2], sys.argv[3])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
