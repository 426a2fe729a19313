"""The policy pack: `pulumi preview|up --policy-pack policies`.

Only this file builds the PolicyPack (constructing one starts serving and blocks); the rules live in
validators.py and their CrossGuard wrappers in pack.py. Every policy is a stack policy because each
needs more than one resource (where the objects live, which cluster a Deployment is on).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from policies.pack import policies

PolicyPack(name="metal3-pivot", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
