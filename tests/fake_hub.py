"""A local imitation of the Hugging Face Hub's HTTP routes, for the `streamdiff pull` tests.

    python3 tests/fake_hub.py        # prints the port it listens on (127.0.0.1), then serves

Routes (as huggingface_hub uses them):
  GET  /api/models/{org}/{name}/revision/{rev}?blobs=true  -> {"sha", "siblings": [{"rfilename",
       "size", "blobId", "lfs": {"sha256", "size", "pointerSize"}}]}
  HEAD|GET /{org}/{name}/resolve/{rev}/{path}  -> small files: 200 with ETag (git blob id) and
       X-Repo-Commit; LFS files (*.safetensors, *.bin): 302 to /storage/{sha256} with
       X-Linked-Etag (the sha256), X-Linked-Size and X-Repo-Commit
  HEAD|GET /storage/{sha256}  -> the bytes; honours "Range: bytes=N-" (206)
  GET  /stats/{session}  -> what the session's requests were (counts, Range starts, whether an
       Authorization header came), for the tests' assertions

An endpoint may start with /s/{session}/{mode}/ (HF_ENDPOINT=http://127.0.0.1:PORT/s/x/cut):
requests are counted per session, and the mode changes the storage's behaviour:
  normal  as the Hub
  cut     the first transfer of each file closes the connection after half of its bytes
  badsha  every LFS file's bytes differ from its sha256 (the first byte is flipped)
  slow    LFS bytes come in 64 KiB pieces 20 ms apart

Repositories, built from the committed fixtures (tests/fixtures) plus a few generated files:
  test-org/tiny-sd     diffusers: model_index.json, unet/ (config, f32 weights, an fp16 variant
                       made here, .fp32 and .bin copies that must not be fetched), text_encoder/,
                       tokenizer/ (sd15), scheduler/, safety_checker/ (not fetched), and at the
                       top a README and a single-file copy (not fetched)
  test-org/tiny-taesd  tests/fixtures/taesd/tiny (+ a .bin) - a component repository
  test-org/tiny-lora   pytorch_lora_weights.safetensors, a LoRA for tiny-sd made here
  test-org/two-files   two .safetensors at the top (--include chooses)
  test-org/gated       like tiny-lora; 401 GatedRepo unless "Authorization: Bearer hf_test_token"
  test-org/hostile-*   file lists that try to leave the cache: ../../etc/x, /etc/passwd,
                       a\\..\\..\\x; hostile-etag answers with the ETag ../../../escaped
Any other repository: 404 RepoNotFound. Python standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TOKEN = "hf_test_token"


def read(*parts: str) -> bytes:
    with open(os.path.join(FIXTURES, *parts), "rb") as f:
        return f.read()


def to_fp16_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its F32 tensors stored as F16."""
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    out_header, chunks, offset = {}, [], 0
    for name, entry in header.items():
        if name == "__metadata__":
            out_header[name] = entry
            continue
        begin, end = entry["data_offsets"]
        raw = body[begin:end]
        if entry["dtype"] == "F32":
            n = len(raw) // 4
            raw = struct.pack(f"<{n}e", *struct.unpack(f"<{n}f", raw))
            entry = dict(entry, dtype="F16")
        chunks.append(raw)
        out_header[name] = dict(entry, data_offsets=[offset, offset + len(raw)])
        offset += len(raw)
    text = json.dumps(out_header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def tiny_sd_lora(unet: bytes) -> bytes:
    """A kohya-format LoRA (rank 2, alpha 1) on every attention q/k/v/out of the tiny UNet, with
    small deterministic values: a LoRA that fits test-org/tiny-sd."""
    (header_len,) = struct.unpack("<Q", unet[:8])
    header = json.loads(unet[8 : 8 + header_len])
    state = 12345
    tensors: dict[str, tuple[list[int], bytes]] = {}

    def values(n: int) -> bytes:
        nonlocal state
        out = []
        for _ in range(n):
            state = (state * 1103515245 + 12345) % (1 << 31)
            out.append((state / (1 << 31) - 0.5) * 0.2)
        return struct.pack(f"<{n}f", *out)

    for name in sorted(header):
        if not name.endswith((".to_q.weight", ".to_k.weight", ".to_v.weight",
                              ".to_out.0.weight")):
            continue
        rows, cols = header[name]["shape"]
        key = "lora_unet_" + name[: -len(".weight")].replace(".", "_")
        tensors[key + ".lora_down.weight"] = ([2, cols], values(2 * cols))
        tensors[key + ".lora_up.weight"] = ([rows, 2], values(rows * 2))
        tensors[key + ".alpha"] = ([], struct.pack("<f", 1.0))
    out_header, chunks, offset = {}, [], 0
    for key, (shape, raw) in tensors.items():
        out_header[key] = {"dtype": "F32", "shape": shape,
                           "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(out_header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def is_lfs(path: str) -> bool:
    return path.endswith((".safetensors", ".bin"))


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id: str, files: dict[str, bytes], listed: list[str] | None = None,
                 gated: bool = False, etag: str | None = None) -> None:
        self.repo_id = repo_id
        self.files = files
        self.listed = listed if listed is not None else sorted(files)
        self.gated = gated
        self.etag = etag  # a fixed (hostile) ETag for every file
        h = hashlib.sha1(repo_id.encode())
        for p in self.listed:
            h.update(p.encode() + hashlib.sha256(files.get(p, b"")).digest())
        self.commit = h.hexdigest()

    def sibling(self, path: str) -> dict:
        data = self.files.get(path, b"")
        s = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if is_lfs(path):
            s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "pointerSize": 134}
        return s


def build_repos() -> dict[str, Repo]:
    unet = read("stream", "unet", "diffusion_pytorch_model.safetensors")
    index = json.loads(read("tiny_sd", "model_index.json"))
    index.update({"tokenizer": ["transformers", "CLIPTokenizer"],
                  "scheduler": ["diffusers", "LCMScheduler"],
                  "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                  "feature_extractor": [None, None]})
    tiny_sd = {
        "model_index.json": json.dumps(index, indent=2).encode(),
        "unet/config.json": read("stream", "unet", "config.json"),
        "unet/diffusion_pytorch_model.safetensors": unet,
        "unet/diffusion_pytorch_model.fp16.safetensors": to_fp16_safetensors(unet),
        "unet/diffusion_pytorch_model.fp32.safetensors": unet,
        "unet/diffusion_pytorch_model.bin": b"PK\x03\x04 not a pickle, never fetched",
        "text_encoder/config.json": read("tiny_sd", "text_encoder", "config.json"),
        "text_encoder/model.safetensors": read("tiny_sd", "text_encoder", "model.safetensors"),
        "scheduler/scheduler_config.json": b'{"_class_name": "LCMScheduler"}\n',
        "safety_checker/config.json": b"{}\n",
        "safety_checker/model.safetensors": b"never fetched: streamdiff has no safety checker",
        "tiny-sd-single-file.safetensors": b"never fetched: a single-file copy at the top",
        "README.md": b"# tiny-sd\n",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }
    for name in ("merges.txt", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        tiny_sd["tokenizer/" + name] = read("tokenizer", "sd15", name)
    taesd = {name: read("taesd", "tiny", name)
             for name in sorted(os.listdir(os.path.join(FIXTURES, "taesd", "tiny")))}
    taesd["diffusion_pytorch_model.bin"] = b"never fetched"
    lora = {"pytorch_lora_weights.safetensors": tiny_sd_lora(unet), "README.md": b"# a LoRA\n"}
    repos = [
        Repo("test-org/tiny-sd", tiny_sd),
        Repo("test-org/tiny-taesd", taesd),
        Repo("test-org/tiny-lora", lora),
        Repo("test-org/two-files", {"a.safetensors": lora["pytorch_lora_weights.safetensors"],
                                    "b.safetensors": b"the other one"}),
        Repo("test-org/gated", lora, gated=True),
        Repo("test-org/hostile-dotdot", lora, listed=["README.md", "../../etc/x"]),
        Repo("test-org/hostile-absolute", lora, listed=["/etc/passwd"]),
        Repo("test-org/hostile-backslash", lora, listed=["a\\..\\..\\x"]),
        Repo("test-org/hostile-etag", lora, etag="../../../escaped"),
    ]
    return {r.repo_id: r for r in repos}


REPOS = build_repos()
BLOBS = {hashlib.sha256(d).hexdigest(): d for r in REPOS.values() for d in r.files.values()}


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict] = {}
        self.cut_done: set[tuple[str, str]] = set()

    def session(self, name: str) -> dict:
        return self.sessions.setdefault(name, {"api": 0, "head": 0, "resolve_get": 0,
                                               "storage_get": 0, "ranges": [], "auth": False})

    def record(self, name: str, key: str, auth: bool, range_start: int | None = None) -> None:
        with self.lock:
            s = self.session(name)
            s[key] += 1
            s["auth"] = s["auth"] or auth
            if range_start is not None:
                s["ranges"].append(range_start)


STATS = Stats()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:  # the client went away (a cancelled or cut transfer)
            pass

    def do_HEAD(self) -> None:
        self.route(head=True)

    def do_GET(self) -> None:
        self.route(head=False)

    # ---- helpers ----

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str, head: bool) -> None:
        body = json.dumps({"error": message}).encode()
        self.reply(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                  "X-Error-Message": message}, head)

    def authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

    # ---- routes ----

    def route(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        session, mode = "default", "normal"
        if len(parts) >= 3 and parts[0] == "s":
            session, mode, parts = parts[1], parts[2], parts[3:]
        self.prefix = f"http://127.0.0.1:{self.server.server_port}" + (
            f"/s/{session}/{mode}" if session != "default" else "")
        auth = "Authorization" in self.headers
        if parts[:1] == ["stats"] and len(parts) == 2:
            with STATS.lock:
                body = json.dumps(STATS.session(parts[1])).encode()
            return self.reply(200, body, {"Content-Type": "application/json"}, head)
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
            STATS.record(session, "api", auth)
            return self.api(parts[2] + "/" + parts[3], parts[5], head)
        if len(parts) >= 5 and parts[2] == "resolve":
            STATS.record(session, "head" if head else "resolve_get", auth)
            return self.resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), head)
        if len(parts) == 2 and parts[0] == "storage":
            return self.storage(parts[1], session, mode, head, auth)
        self.reply(404, b"no such route", {}, head)

    def find_repo(self, repo_id: str, revision: str, head: bool) -> Repo | None:
        repo = REPOS.get(repo_id)
        if repo is None:
            self.error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.", head)
            return None
        if repo.gated and not self.authorized():
            self.error(401, "GatedRepo",
                       f"Access to model {repo_id} is restricted. You must have access to it "
                       "and be authenticated to access it. Please log in.", head)
            return None
        if revision not in ("main", repo.commit):
            self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return None
        return repo

    def api(self, repo_id: str, revision: str, head: bool) -> None:
        repo = self.find_repo(repo_id, revision, head)
        if repo is None:
            return
        body = {"_id": "0" * 24, "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
                "siblings": [repo.sibling(p) for p in repo.listed]}
        self.reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)

    def resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self.find_repo(repo_id, revision, head)
        if repo is None:
            return
        if path not in repo.files or path not in repo.listed:
            return self.error(404, "EntryNotFound", f"Entry not found: {path}", head)
        data = repo.files[path]
        headers = {"X-Repo-Commit": repo.commit}
        if is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"Location": f"{self.prefix}/storage/{sha}",
                            "X-Linked-Etag": f'"{repo.etag or sha}"',
                            "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_id(b"ptr")}"'})
            return self.reply(302, b"", headers, head)
        headers["ETag"] = f'"{repo.etag or git_blob_id(data)}"'
        self.reply(200, data, headers, head)

    def storage(self, sha: str, session: str, mode: str, head: bool, auth: bool) -> None:
        data = BLOBS.get(sha)
        if data is None:
            return self.reply(404, b"no such object", {}, head)
        if mode == "badsha":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        range_header = self.headers.get("Range")
        if range_header:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
        if head:
            return self.reply(200, b"", {"Content-Length": str(len(data))}, head=True)
        STATS.record(session, "storage_get", auth, start if range_header else None)
        if start >= len(data) and range_header:
            return self.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if range_header else 200)
        if range_header:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with STATS.lock:
            cut = mode == "cut" and (session, sha) not in STATS.cut_done
            if cut:
                STATS.cut_done.add((session, sha))
        if cut:  # half of it, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "slow":
            for i in range(0, len(body), 64 << 10):
                self.wfile.write(body[i : i + (64 << 10)])
                self.wfile.flush()
                time.sleep(0.02)
            return
        self.wfile.write(body)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
