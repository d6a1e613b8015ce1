"""Schemathesis hooks for tests/schemathesis/run.sh.

The run acts with one admin key (KEYGATE_SCHEMATHESIS_ADMIN_ID names its
id). No request may name that id in its path: the run must not revoke,
rotate, delete or narrow the key it authenticates with, or every later
request would be a 401 and the run would test nothing. Stateful runs
learn the id from listings and audit records, so every call is checked
just before it is sent (all phases), and the id is swapped for one that
names no key.
"""

import os

import schemathesis

ADMIN_ID = os.environ["KEYGATE_SCHEMATHESIS_ADMIN_ID"]
# Well-formed, and no key has it (ids are random: 16 base62 characters).
NO_SUCH_KEY = "0000000000000000"


@schemathesis.hook
def before_call(context, case, kwargs):
    """Keep the admin key's id out of every request path."""
    parameters = case.path_parameters or {}
    for name, value in list(parameters.items()):
        if isinstance(value, str) and ADMIN_ID in value:
            parameters[name] = value.replace(ADMIN_ID, NO_SUCH_KEY)
