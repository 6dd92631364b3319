"""infkit explain / python src/explain.py: ask a running TorchServe to explain an image and write image +
attribution overlay as a PNG.

    infkit explain --model digits_resnet18_onnx --image tests/resources/digits/0_6.png [--target 3]
"""

import argparse
import io
import sys
from pathlib import Path

import requests
from PIL import Image

from infkit.cli._common import guarded
from infkit.serve.core.auth import auth_header, inference_token
from infkit.serve.core.overlay import render


@guarded
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080", help="inference API address")
    p.add_argument("--model", required=True, help="model name on the server")
    p.add_argument("--image", required=True, type=Path, help="image file to explain")
    p.add_argument("--target", default=None, help="class index or label to explain (default: the predicted one)")
    p.add_argument("--key-file", default="logs/serve/key_file.json", help="TorchServe's key file (token auth)")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default: <image>.explain.png)")
    args = p.parse_args(argv)
    if not args.image.is_file():
        print(f"error: --image {str(args.image)!r} does not exist", file=sys.stderr)
        return 2
    headers = auth_header(inference_token(Path(args.key_file)))
    files = {"data": args.image.read_bytes()}
    if args.target is not None:
        files["target"] = (None, str(args.target))
    try:
        r = requests.post(f"{args.url}/explanations/{args.model}", files=files, headers=headers, timeout=300)
    except requests.ConnectionError:
        print(f"error: no server at {args.url}; start one with: infkit serve start", file=sys.stderr)
        return 2
    if r.status_code != 200:
        print(f"error: the server answered {r.status_code}: {r.text.strip()[:300]}", file=sys.stderr)
        return 2
    out = r.json()
    path = args.out or args.image.with_suffix(".explain.png")
    image = Image.open(io.BytesIO(args.image.read_bytes()))
    render(
        image,
        out["attributions"],
        path,
        title=f"{args.model}: explaining '{out['label']}' (predicted index {out['predicted']})",
    )
    print(f"explained class {out['label']!r}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
