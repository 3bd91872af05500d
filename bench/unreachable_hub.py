"""How long a missing model takes to fail when the Hugging Face Hub cannot be reached.

Each case points HF_ENDPOINT at something that does not answer, with an empty cache:
  refused   a closed port on 127.0.0.1 (the connection is refused at once)
  reset     a socket on 127.0.0.1 that accepts and closes without a word
  silent    a socket on 127.0.0.1 that accepts and never answers (a dead network)
  no name   the real endpoint where no name server answers for it (skipped with network)
and times, from the call to the error, huggingface_hub's hf_hub_download alone (what
hub.py did before it asked first) and hub.resolve_model, counting the connections the
local socket accepted. Run: python bench/unreachable_hub.py [--skip-silent-baseline]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager

import huggingface_hub
from common import machine_line
from huggingface_hub import hf_hub_download

from comfyui_dwpose import hub

REPO, FILE = "yzd-v/DWPose", "dw-ll_ucoco_384.onnx"


@contextmanager
def endpoint(case: str):
    """HF_ENDPOINT for the case; yields the list of accepted connections (None: not counted)."""
    if case == "no name":
        os.environ.pop("HF_ENDPOINT", None)
        yield None
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()
    if case != "refused":
        listener.listen()
        listener.settimeout(0.05)

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            if case == "reset":
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    if case != "refused":
        thread.start()
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        yield None if case == "refused" else accepted
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def timed(call) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        call()
        outcome = "downloaded?"
    except Exception as exc:
        outcome = type(exc).__name__
    return time.perf_counter() - start, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-silent-baseline",
        action="store_true",
        help="do not time huggingface_hub alone on the silent socket (about 80 s)",
    )
    args = parser.parse_args()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    os.environ["NO_PROXY"] = "127.0.0.1"
    print(machine_line(huggingface_hub=huggingface_hub.__version__))
    print()
    print("| case | contender | seconds to the error | error | connections accepted |")
    print("|---|---|---:|---|---:|")
    for case in ("refused", "reset", "silent", "no name"):
        if case == "no name" and socket_resolves("huggingface.co"):
            print("| no name | (skipped: huggingface.co resolves here) | | | |")
            continue
        contenders = {
            "hf_hub_download alone (before)": lambda cache: hf_hub_download(
                REPO, FILE, cache_dir=cache, endpoint=os.environ.get("HF_ENDPOINT")
            ),
            "hub.resolve_model (now)": lambda cache: hub.resolve_model(
                FILE, cache_dir=cache, local_files_only=False, progress=False
            ),
        }
        for name, fetch in contenders.items():
            if case == "silent" and "before" in name and args.skip_silent_baseline:
                continue
            with tempfile.TemporaryDirectory() as cache, endpoint(case) as accepted:
                seconds, outcome = timed(lambda fetch=fetch, cache=cache: fetch(cache))
                count = "-" if accepted is None else str(len(accepted))
            print(f"| {case} | {name} | {seconds:.1f} | {outcome} | {count} |")
            sys.stdout.flush()
    return 0


def socket_resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
