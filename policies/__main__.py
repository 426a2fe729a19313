"""The policy pack: `pulumi preview|up --policy-pack policies`.

Only this file builds the PolicyPack (constructing one starts serving and blocks); the rules live in
validators.py. Every policy is a stack policy because each needs more than one resource (where the
objects live, which cluster a Deployment is on).

Unknown values: CrossGuard turns a policy that touches a value unknown at preview time into an
advisory "can't run during preview", so a mandatory policy could pass silently in a pull request. Ours
fail closed instead: an unknown value is a violation that says which value could not be checked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationArgs, StackValidationPolicy
from pulumi_policy.proxy import UnknownValueError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from policies.validators import POLICIES, Res

DESCRIPTIONS = {name: (fn.__doc__ or name).strip().splitlines()[0] for name, fn in POLICIES.items()}


def _res(r: Any) -> Res:
    cluster = None
    if r.provider is not None:
        try:
            cluster = r.provider.props.get("clusterIdentifier")
        except UnknownValueError:
            cluster = None
    return Res(type=r.resource_type, name=r.name, props=r.props, cluster=cluster, protect=bool(r.opts.protect),
               urn=r.urn)


def _stack_policy(name: str) -> StackValidationPolicy:
    rule = POLICIES[name]

    def validate(args: StackValidationArgs, report_violation: Any) -> None:
        try:
            for message in rule([_res(r) for r in args.resources]):
                report_violation(message)
        except UnknownValueError as err:
            report_violation(f"cannot be verified during preview: a value it needs is not known yet ({err}); "
                             "mandatory metal3-pivot policies fail closed")

    return StackValidationPolicy(name=name, description=DESCRIPTIONS[name], validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY)


PolicyPack(name="metal3-pivot", enforcement_level=EnforcementLevel.MANDATORY,
           policies=[_stack_policy(n) for n in POLICIES])
