"""``rtf-synth``: write a synthetic ZTF-like or LSST-like survey to parquet or Avro alerts.

rtf-synth --survey ztf --n 1000 --seed 1 --stamps --out synth.parquet
rtf-synth --survey lsst --n 500 --out alerts/ --format avro
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from encoder.taxonomy import FINE_CLASSES

from .survey import DEFAULT_CLASS_WEIGHTS, SurveyConfig, generate_survey, write_parquet


def parse_weights(text: str) -> dict[str, float]:
    """'SNIa=0.5,AGN=0.2' -> {'SNIa': 0.5, 'AGN': 0.2}; a bare name gets weight 1."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = item.partition("=")
        if name not in FINE_CLASSES:
            raise argparse.ArgumentTypeError(f"unknown class {name!r}; expected one of {', '.join(FINE_CLASSES)}")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight {w!r} for {name}") from None
    if not out:
        raise argparse.ArgumentTypeError("no classes given")
    return out


def write_avro(lcs: list, survey: str, dest: Path) -> None:
    if survey == "ztf":
        from encoder.readers.ztf_avro import write_ztf_avro

        write_ztf_avro(lcs, dest)
    else:
        from encoder.readers.lsst_avro import write_lsst_avro

        write_lsst_avro(lcs, dest)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rtf-synth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--survey", choices=("ztf", "lsst"), default="ztf")
    ap.add_argument("--n", type=int, default=1000, help="number of light curves (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stamps", action="store_true", help="simulate the 63x63 science/template/difference cutouts")
    ap.add_argument("--no-metadata", action="store_true", help="no per-detection alert metadata")
    ap.add_argument(
        "--classes",
        type=parse_weights,
        default=None,
        help="class weights, e.g. 'SNIa=0.5,SNII=0.2,KN=0.01' (default: a realistic stream mix)",
    )
    ap.add_argument("--min-detections", type=int, default=1)
    ap.add_argument("--max-peak-mag", type=float, default=None, help="keep objects brighter than this (BTS-like: 18.8)")
    ap.add_argument("--duration-days", type=float, default=3 * 365.25)
    ap.add_argument("--start-jd", type=float, default=None)
    ap.add_argument("--out", type=Path, required=True, help="output .parquet file, or .avro / folder for --format avro")
    ap.add_argument("--format", choices=("parquet", "avro"), default=None, help="default: from the --out suffix")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fmt = args.format or ("avro" if args.out.suffix == ".avro" or args.out.suffix == "" else "parquet")
    try:
        config = SurveyConfig(
            survey=args.survey,
            n_objects=args.n,
            seed=args.seed,
            with_stamps=args.stamps,
            with_metadata=not args.no_metadata,
            class_weights=args.classes or dict(DEFAULT_CLASS_WEIGHTS),
            min_detections=args.min_detections,
            max_peak_mag=args.max_peak_mag,
            duration_days=args.duration_days,
            start_jd=args.start_jd,
        )
    except ValueError as exc:
        print(f"rtf-synth: error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    t = time.perf_counter()
    with tqdm(total=args.n, unit="lc", disable=args.quiet, desc=f"synthetic {args.survey}") as bar:
        lcs = generate_survey(config, progress=bar.update)
    dt = time.perf_counter() - t
    if args.out.parent and not args.out.parent.exists():
        args.out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        write_parquet(lcs, args.out, config)
    else:
        write_avro(lcs, args.survey, args.out)
    counts: dict[str, int] = {}
    for lc in lcs:
        counts[lc.label] = counts.get(lc.label, 0) + 1  # type: ignore[index]
    mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(
        f"wrote {len(lcs)} light curves to {args.out} ({len(lcs) / max(dt, 1e-9):.0f}/s generated): {mix}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
