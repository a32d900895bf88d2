#!/usr/bin/env python3
"""Write a registry store in Distribution's on-disk layout (which Wharf uses too), so both
registries' garbage collectors can run on byte-identical copies.

make_store.py ROOT [--repos 1000] [--manifests 10] [--layers 9] [--deleted 0.2]

Each repository gets `--manifests` image manifests (tagged), each with a config and `--layers`
layers of its own: repos * manifests * (layers + 1) blobs. A fraction `--deleted` of the
manifests is deleted the way the API deletes them (revision link and tags removed), so their
blobs are garbage.
"""
import argparse, hashlib, json, os, random

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--repos", type=int, default=1000)
ap.add_argument("--manifests", type=int, default=10)
ap.add_argument("--layers", type=int, default=9)
ap.add_argument("--deleted", type=float, default=0.2)
a = ap.parse_args()
v2 = os.path.join(a.root, "docker/registry/v2")
rng = random.Random(42)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def blob(data):
    h = hashlib.sha256(data).hexdigest()
    write(f"{v2}/blobs/sha256/{h[:2]}/{h}/data", data)
    return "sha256:" + h


def link(path, digest):
    write(path, digest.encode())


blobs = manifests = deleted = 0
for r in range(a.repos):
    repo = f"team{r % 50}/app{r}"
    rdir = f"{v2}/repositories/{repo}"
    for m in range(a.manifests):
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo, "m": m}).encode()
        cd = blob(cfg)
        link(f"{rdir}/_layers/sha256/{cd[7:]}/link", cd)
        layers = []
        for l in range(a.layers):
            data = f"{repo}/{m}/{l}/{rng.random()}".encode()
            ld = blob(data)
            link(f"{rdir}/_layers/sha256/{ld[7:]}/link", ld)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(data)})
        man = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
            "layers": layers,
        }).encode()
        md = blob(man)
        blobs += a.layers + 2
        manifests += 1
        if rng.random() < a.deleted:
            deleted += 1  # deleted through the API: bytes and layer links stay, no revision, no tag
            continue
        link(f"{rdir}/_manifests/revisions/sha256/{md[7:]}/link", md)
        tag = f"v{m}"
        link(f"{rdir}/_manifests/tags/{tag}/current/link", md)
        link(f"{rdir}/_manifests/tags/{tag}/index/sha256/{md[7:]}/link", md)
print(f"{a.repos} repositories, {manifests} manifests ({deleted} deleted), {blobs} blobs")
