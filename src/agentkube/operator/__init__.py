"""The agentkube operator: reconciles ``Agent`` and ``Model`` objects into plain Kubernetes objects.

Layers, each depending only on the ones above it:

- :mod:`config` — the operator's configuration (pool profiles, images, peers), a typed value.
- :mod:`naming`, :mod:`placement`, :mod:`networking`, :mod:`rendering`, :mod:`serving`,
  :mod:`status` — pure functions from a spec (and the config) to Kubernetes objects as JSON.
- :mod:`drift` — pure comparison of a desired object with the live one.
- :mod:`applying` — the thin server-side-apply layer over an injected lightkube client.
- :mod:`cache` — the latest known objects, from watch events and apply responses.
- :mod:`reconciling` — one level-triggered reconcile of one object, using the cache;
  :mod:`scheduling` — when reconciles run (one per object at a time, coalesced, retried).
- :mod:`handlers` — the kopf wiring (watches, indexes) and :mod:`running` — process start-up.
"""
