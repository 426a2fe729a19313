"""The pack's policies as CrossGuard objects, without starting the pack (see __main__.py).

Unknown values: CrossGuard turns a policy that touches a value unknown at preview time into an
advisory "can't run during preview", so a mandatory policy could pass silently in a pull request. Ours
fail closed instead: an unknown value is a violation that says which value could not be checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policies.validators import RESOURCE_POLICIES, STACK_POLICIES, Res

UNKNOWN_MESSAGE = ("cannot be verified during preview: a value it needs is not known yet ({}); mandatory "
                   "metal3-pivot policies fail closed")


def res(r: Any) -> Res:
    """CrossGuard's PolicyResource as the validators' Res."""
    cluster = None
    if r.provider is not None:
        try:
            cluster = r.provider.props.get("clusterIdentifier")
        except UnknownValueError:
            cluster = None
    return Res(type=r.resource_type, name=r.name, props=r.props, cluster=cluster, protect=bool(r.opts.protect),
               urn=r.urn)


def validator(rule: Callable[[list[Res]], list[str]]) -> Callable[[StackValidationArgs, Any], None]:
    def validate(args: StackValidationArgs, report_violation: Any) -> None:
        try:
            for message in rule([res(r) for r in args.resources]):
                report_violation(message)
        except UnknownValueError as err:
            report_violation(UNKNOWN_MESSAGE.format(err))
    return validate


def resource_validator(rule: Callable[[Res], list[str]]) -> Callable[[ResourceValidationArgs, Any], None]:
    def validate(args: ResourceValidationArgs, report_violation: Any) -> None:
        try:
            for message in rule(res(args)):
                report_violation(message)
        except UnknownValueError as err:
            report_violation(UNKNOWN_MESSAGE.format(err))
    return validate


def _description(rule: Callable[..., list[str]], name: str) -> str:
    return (rule.__doc__ or name).strip().splitlines()[0]


def policies() -> list[Policy]:
    stack: list[Policy] = [
        StackValidationPolicy(name=name, description=_description(rule, name), validate=validator(rule),
                              enforcement_level=EnforcementLevel.MANDATORY)
        for name, rule in STACK_POLICIES.items()]
    return stack + [
        ResourceValidationPolicy(name=name, description=_description(rule, name), validate=resource_validator(rule),
                                 enforcement_level=EnforcementLevel.MANDATORY)
        for name, rule in RESOURCE_POLICIES.items()]
