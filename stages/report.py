"""report: every metrics/ and results/ output of the run -> reports/ (docs/design.md section 6).

-> reports/index.html (offline, one section per claim of the paper), reports/report.md (the same, for
   GitHub), reports/figures/*.png, reports/summary.json (headline numbers as DVC metrics).
"""

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from fli2moe.datasets.enrico import image_path
from fli2moe.features import FeatureSetError
from fli2moe.params import ParamsError, load_params
from fli2moe.report.build import build_report
from fli2moe.report.outputs import RunOutputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params(args.params)
        run = RunOutputs(Path("."), tuple(params.datasets), tuple(params.models), tuple(params.moe_plain_datasets))
        run.manifests  # every dataset's feature set must be there before any drawing starts
    except (ParamsError, FeatureSetError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    # The datasets whose modalities are all pictures on disk get their maps drawn over the real images.
    image_files = {"enrico": partial(image_path, params.data["enrico"].root)} if "enrico" in params.datasets else {}
    summary = build_report(run, args.out, image_files)
    logging.info("report: %s in %s/index.html", ", ".join(f"{n} {s}" for s, n in summary["claims"].items()),
                 args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
