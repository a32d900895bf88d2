"""ORAS (Python SDK 0.2.43) against a registry: an artifact with a custom artifactType, a
second artifact whose subject is an image, the referrers API (with and without an artifactType
filter), pulls of both compared byte for byte, and a chunked upload.

usage: oras_flow.py REGISTRY SUBJECT_REPO SUBJECT_TAG   (the image must already be in SUBJECT_REPO)
Set E2E_SKIP_REFERRERS=1 for registries without the referrers API (Distribution 2.8.2).
"""
import atexit, hashlib, json, os, shutil, sys, tempfile, urllib.request

import oras.client

R, REPO, TAG = sys.argv[1], sys.argv[2], sys.argv[3]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
# oras-py validates paths under the cwd: work in a directory of our own (under $TMPDIR, which
# clients.sh sets to its own), removed on exit, failed or not
WORKDIR = tempfile.mkdtemp(prefix="wharf-e2e-oras.")
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
os.chdir(WORKDIR)
client = oras.client.OrasClient(hostname=R, insecure=True)


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def http(method, path, headers=None):
    req = urllib.request.Request(f"http://{R}{path}", method=method, headers=headers or {})
    with urllib.request.urlopen(req) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def write(name, data):
    with open(name, "wb") as f:
        f.write(data)


def push_artifact(tag, artifact_type, filename, data, media_type, subject=None):
    container = client.get_container(f"{R}/{REPO}:{tag}")
    write(filename, data)
    layer = {"mediaType": media_type, "digest": digest(data), "size": len(data),
             "annotations": {"org.opencontainers.image.title": filename}}
    r = client.upload_blob(filename, container, layer)
    assert r.status_code in (200, 201), (r.status_code, r.text)  # 200: oras found it already there
    write("empty.json", b"{}")
    config = {"mediaType": EMPTY, "digest": digest(b"{}"), "size": 2}
    r = client.upload_blob("empty.json", container, config)
    assert r.status_code in (200, 201), (r.status_code, r.text)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": config, "layers": [layer], "annotations": {"org.example.e2e": tag}}
    if subject:
        manifest["subject"] = subject
    r = client.upload_manifest(manifest, container)
    assert r.status_code == 201, (r.status_code, r.text)
    if subject and not os.environ.get("E2E_SKIP_REFERRERS"):
        assert r.headers.get("OCI-Subject") == subject["digest"], r.headers
    return r.headers["Docker-Content-Digest"]


# 1. an artifact with a custom artifactType
doc = os.urandom(2048)
doc_digest = push_artifact("doc", "application/vnd.wharf.e2e.doc", "doc.bin", doc, "application/vnd.wharf.e2e.doc.layer")
print("pushed artifact", doc_digest)

# 2. a second artifact whose subject is the image (descriptor from a HEAD, not re-serialised JSON)
_, h, _ = http("HEAD", f"/v2/{REPO}/manifests/{TAG}", {"Accept": OCI_MANIFEST})
subject = {"mediaType": h["content-type"], "digest": h["docker-content-digest"], "size": int(h["content-length"])}
sig = os.urandom(512)
sig_digest = push_artifact("sig", "application/vnd.wharf.e2e.signature", "sig.bin", sig,
                           "application/vnd.wharf.e2e.signature.layer", subject)
print("attached", sig_digest, "to", subject["digest"])

# 3. the referrers API
if not os.environ.get("E2E_SKIP_REFERRERS"):
    status, h, body = http("GET", f"/v2/{REPO}/referrers/{subject['digest']}")
    assert status == 200 and h["content-type"] == "application/vnd.oci.image.index.v1+json", (status, h)
    index = json.loads(body)
    found = [m for m in index["manifests"] if m["digest"] == sig_digest]
    assert found and found[0]["artifactType"] == "application/vnd.wharf.e2e.signature", index
    assert found[0]["annotations"]["org.example.e2e"] == "sig", found
    t = "application/vnd.wharf.e2e.signature"
    status, h, body = http("GET", f"/v2/{REPO}/referrers/{subject['digest']}?artifactType={t}")
    assert h.get("oci-filters-applied") == "artifactType", h
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [sig_digest], body
    status, h, body = http("GET", f"/v2/{REPO}/referrers/{subject['digest']}?artifactType=application/x-none")
    assert json.loads(body)["manifests"] == [], body
    print("referrers ok")

# 4. pull both artifacts back, byte for byte
for tag, name, data in (("doc", "doc.bin", doc), ("sig", "sig.bin", sig)):
    files = client.pull(target=f"{R}/{REPO}:{tag}", outdir=f"out-{tag}")
    got = [f for f in files if os.path.basename(f) == name]
    assert got, files
    with open(got[0], "rb") as f:
        assert f.read() == data, f"{tag}: pulled bytes differ"
print("pulled both artifacts back")

# 5. a chunked upload (POST, several PATCHes, PUT) through `oras push`
big = os.urandom(5 * 1024 * 1024 + 123)
write("big.bin", big)
client.push(files=["big.bin"], target=f"{R}/{REPO}:chunked", do_chunked=True, chunk_size=1024 * 1024, quiet=True)
files = client.pull(target=f"{R}/{REPO}:chunked", outdir="out-chunked")
with open([f for f in files if f.endswith("big.bin")][0], "rb") as f:
    assert f.read() == big, "chunked upload: pulled bytes differ"
print("chunked upload ok")
