"""The container's health check: GET /ping on TorchServe's inference port; exit 0 when it answers 200.

    python3 /opt/infkit-tools/healthcheck.py [PORT]      (default 8080)

With token authorization on, TorchServe 0.12 wants the inference key on /ping as on every inference path, so the
key is read from key_file.json in the working directory when TorchServe wrote one (k8s/ runs it with its own
token check off and no key file)."""

import json
import sys
import urllib.request


def main(argv: list[str]) -> int:
    port = int(argv[0]) if argv else 8080
    headers = {}
    try:
        with open("key_file.json") as f:
            headers["Authorization"] = "Bearer " + json.load(f)["inference"]["key"]
    except (OSError, ValueError, KeyError):
        pass
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ping", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError and HTTPError (500 "Unhealthy", 400 without a valid key) included
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
