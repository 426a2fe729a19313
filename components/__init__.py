"""The Pulumi layer: stack config, cluster and provider components, the ObjectLocation resource.

Thin on purpose: the move itself lives in the engine (metal3_pivot), which never imports Pulumi.
"""
