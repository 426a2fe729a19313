"""The policy pack: `pulumi preview|up --policy-pack policies`.

Only this file builds the PolicyPack (constructing one starts serving and blocks); the rules live in
validators.py and their CrossGuard wrappers in pack.py. Most are stack policies, since each needs more
than one resource (where the objects live, which cluster a Deployment is on); owner-chain and
bmh-status-annotation read one resource (MovePreflight's findings) and are resource policies, so they
run before any change (policies/validators.py says why).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from policies.pack import policies

PolicyPack(name="metal3-pivot", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
