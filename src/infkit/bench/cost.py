"""Dollars per million inferences from measured throughput and an hourly price.

    cost per million = price_per_hour / (3600 x successful inferences per second) x 10^6

The price comes from `--price-per-hour X`, or `--instance NAME` looked up in the dated table shipped with infkit
(configs/pricing/aws-us-east-1.yaml) and in the user's own `--pricing FILE` (same shape; its entries add to and
override the shipped ones). Only successful inferences count: a server answering errors fast is not cheap."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from infkit.errors import InfkitError

DEFAULT_TABLE = "aws-us-east-1"
EXAMPLE = "instances: {my.instance: 0.25}  (USD per hour)"


@dataclass(frozen=True)
class Price:
    per_hour: float
    instance: str | None = None
    #: where the price comes from: the table (file, its source and dates) or the command line
    source: str = "--price-per-hour"

    def per_million(self, per_second: float | None) -> float | None:
        """USD per million inferences at `per_second` successful inferences per second (None without any)."""
        if per_second is None or math.isnan(per_second) or per_second <= 0:
            return None
        return self.per_hour / (3600.0 * per_second) * 1e6

    def describe(self) -> str:
        name = f"{self.instance} at " if self.instance else ""
        return f"{name}${self.per_hour:g}/hour ({self.source})"

    def as_dict(self) -> dict:
        return asdict(self) | {"formula": "price_per_hour / (3600 x successful inferences/s) x 1e6"}


def table_path(name: str = DEFAULT_TABLE) -> Path:
    from infkit.resources import config_dir

    return config_dir() / "pricing" / f"{name}.yaml"


def read_table(path: Path) -> tuple[dict[str, float], str]:
    """A price table's instances (name -> USD per hour) and a line saying where its prices come from."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InfkitError(
            f"--pricing {str(path)!r} cannot be read ({exc.strerror}); give a YAML file like: {EXAMPLE}"
        ) from None
    except yaml.YAMLError as exc:
        raise InfkitError(f"--pricing {str(path)!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, dict) or not instances:
        raise InfkitError(f"{str(path)!r} has no `instances:` mapping of name to USD per hour; e.g. {EXAMPLE}")
    prices = {}
    for name, value in instances.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InfkitError(f"{str(path)!r}: instances.{name} = {value!r} is not a price; give USD per hour > 0")
        prices[str(name)] = float(value)
    about = [str(doc[k]) for k in ("source", "checked") if doc.get(k)]
    if doc.get("written"):
        about.append(f"written {doc['written']}")
    return prices, f"{Path(path).name}: {'; '.join(about) or 'no source given'}"


def lookup(instance: str, pricing: Path | None = None) -> Price:
    """The instance's price from the shipped table, overridden or extended by the user's file."""
    prices, sources = {}, {}
    for path in [table_path(), *([pricing] if pricing else [])]:
        found, about = read_table(path)
        prices |= found
        sources |= dict.fromkeys(found, about)
    if instance not in prices:
        raise InfkitError(
            f"--instance {instance!r} is not in the price table; known: {', '.join(sorted(prices))}. Give its price "
            f"with --price-per-hour X, or add it in a file passed as --pricing FILE holding {EXAMPLE}"
        )
    return Price(prices[instance], instance, sources[instance])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--instance NAME | --price-per-hour X, and --pricing FILE."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--instance",
        metavar="NAME",
        default=None,
        help=f"report USD per million inferences at this instance's on-demand price (table: configs/pricing/"
        f"{DEFAULT_TABLE}.yaml, e.g. c7i.xlarge, inf2.xlarge)",
    )
    group.add_argument(
        "--price-per-hour",
        type=float,
        metavar="USD",
        default=None,
        help="report USD per million inferences at this hourly price",
    )
    p.add_argument(
        "--pricing",
        type=Path,
        metavar="FILE",
        default=None,
        help="a YAML price table (instances: {name: USD per hour}) adding to and overriding the shipped one",
    )


def from_args(args: argparse.Namespace) -> Price | None:
    """The price the flags ask for, or None; bad values are InfkitErrors naming the flag and the fix."""
    if args.price_per_hour is not None:
        if not args.price_per_hour > 0:
            raise InfkitError(f"--price-per-hour {args.price_per_hour:g}: give the instance's USD per hour, > 0")
        return Price(float(args.price_per_hour))
    if args.instance:
        return lookup(args.instance, args.pricing)
    if args.pricing:
        read_table(args.pricing)  # a bad file is named even when unused
        raise InfkitError("--pricing gives prices by instance: pass --instance NAME too")
    return None
