"""python -m models NAME [--classes N] [--push SET]: print a model's parameter layout as JSON."""
import argparse
import json
import sys

import models
from helpers import argtypes

parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m models", description=__doc__)
parser.add_argument("name", help=f"one of: {', '.join(models.NAMES)}")
parser.add_argument("--classes", type=argtypes.int_at_least(2), default=10, help="classifier width (10 or 100)")
parser.add_argument("--push", default="front", help=models.PUSH_HELP)
args = parser.parse_args()
try:
    model = models.get(args.name, args.classes, push=args.push)
except ValueError as e:
    sys.exit(f"error: {e}")
json.dump(model.layout.describe(), sys.stdout, indent=1)
print()
